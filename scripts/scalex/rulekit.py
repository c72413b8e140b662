"""What every rule script needs: logging to the rule's log file and error reporting.

A failing step writes its one-line reason to its log and to the terminal, then exits non-zero,
so ``snakemake`` shows the cause without a page of traceback.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalex.errors import ExtractionError, ScalexError

#: Errors whose message already says what is wrong and where.
EXPECTED = (ScalexError, KeyError, ValueError)

#: Threads of the running rule, set by :func:`run_rule` (None outside a rule).
_TORCH_THREADS: int | None = None


def run_rule(
    smk: Any,
    work: Callable[[], Any],
    memo: bool = True,
    scope: dict[str, Any] | None = None,
) -> Any:
    """Run ``work`` with logging to ``smk.log[0]`` (and stderr); exit 1 on a known error.

    With ``memo`` (every rule but those that reuse samples themselves), a job whose inputs,
    params and code are those of its last run gets that run's outputs back instead
    (:mod:`scalex.memo`); ``scope`` names the concepts it reads from which inputs. Never with
    ``extraction.reuse: false``, nor for a job Snakemake was told to force (its outputs are
    still kept for later runs).
    """
    log = logging.getLogger("scalex")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in (logging.FileHandler(smk.log[0], mode="w"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    _quiet_libraries()
    if int(getattr(smk, "resources", {}).get("gpu", 0) or 0) > 0:
        gpu = claim_gpu()
        if gpu is not None:
            log.info("running on GPU %s (CUDA_VISIBLE_DEVICES)", gpu)
    if getattr(smk, "threads", None):
        # Importing torch here would cost every light rule (directions, similarity, ...) seconds;
        # the thread count reaches torch through the environment when the work imports it, and
        # configure_torch() applies the rest once it is loaded.
        global _TORCH_THREADS
        _TORCH_THREADS = int(smk.threads)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(_TORCH_THREADS)
        if "torch" in sys.modules:
            configure_torch()
    start = time.perf_counter()
    started_up = _seconds_since_process_start()
    job_memo = _job_memo(smk, scope) if memo else None
    if job_memo is not None and may_reuse(smk) and job_memo.restore():
        log.info(
            "%s: inputs, params and code as at its last run: its outputs restored (%s), "
            "nothing computed, in %.2f s after %.2f s of process start-up",
            smk.rule,
            job_memo.record.parent,
            time.perf_counter() - start,
            started_up,
        )
        return None
    try:
        result = work()
    except EXPECTED as err:
        log.error("%s failed: %s%s", smk.rule, err, _removed_note(smk))
        raise SystemExit(1) from None
    if job_memo is not None:
        job_memo.keep()
    log.info(
        "%s done in %.2f s, after %.2f s of process start-up (interpreter, imports, job set-up)",
        smk.rule,
        time.perf_counter() - start,
        started_up,
    )
    return result


def _removed_note(smk: Any) -> str:
    """What Snakemake deleted before the job started: a failed job's earlier outputs are gone
    (the job memo under ``reuse/jobs/`` restores them once the input is fixed)."""
    outputs = [str(p) for p in getattr(smk, "output", [])]
    if not outputs:
        return ""
    shown = ", ".join(outputs[:4]) + (f" and {len(outputs) - 4} more" if len(outputs) > 4 else "")
    return (
        f" (Snakemake removed this job's earlier outputs before it started: {shown}; a rerun "
        "after the fix restores or recomputes them)"
    )


def may_reuse(smk: Any) -> bool:
    """Whether a job may take earlier work (kept samples, a job memo): ``extraction.reuse`` is
    on and Snakemake was not told to force the job."""
    from scalex.memo import is_forced

    reuse = (getattr(smk, "config", None) or {}).get("extraction", {}).get("reuse", True)
    return bool(reuse) and not is_forced(smk.rule, [str(p) for p in smk.output])


def _job_memo(smk: Any, scope: dict[str, Any] | None):
    from scalex.memo import JobMemo

    try:
        return JobMemo.of(smk, scope)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        logging.getLogger("scalex").warning("no job memo (%s)", err)
        return None


def _seconds_since_process_start() -> float:
    """Wall time since this process was created: the job's fixed cost before its work.

    From ``/proc`` (10 ms ticks); psutil's ``create_time`` adds the whole-second rounding of
    the boot time, so it is only the fallback where there is no ``/proc``.
    """
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, IndexError, ValueError):
        import psutil  # a Snakemake dependency

        return time.time() - psutil.Process().create_time()


#: lock files of the GPUs this process holds (kept open for its lifetime)
_HELD_GPUS: list[int] = []


def _visible_gpus() -> list[str]:
    """GPU ids this job may use: CUDA_VISIBLE_DEVICES, else every GPU the driver lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    driver = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(driver.iterdir())))] if driver.is_dir() else []


def claim_gpu(lock_dir: str | Path | None = None) -> str | None:
    """Give this job a GPU that no other scalex job on the machine holds.

    Snakemake counts GPUs (``--resources gpu=N``) but never says which one a job should use, so
    N concurrent jobs would all land on the first. Each GPU job takes an exclusive lock on one
    GPU's lock file and narrows ``CUDA_VISIBLE_DEVICES`` to it, before CUDA starts. With one
    visible GPU (a workstation, or a SLURM job given its own) nothing changes.
    """
    gpus = _visible_gpus()
    if len(gpus) <= 1:
        return None
    folder = Path(lock_dir or tempfile.gettempdir())
    for gpu in gpus:
        fd = os.open(folder / f"scalex-gpu-{gpu}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _HELD_GPUS.append(fd)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        return gpu
    raise ExtractionError(
        f"all {len(gpus)} GPUs are held by other scalex jobs; run with --resources gpu="
        f"{len(gpus)} at most"
    )


def configure_torch() -> None:
    """In a rule job: apply its thread count (and flush denormals) to torch and silence
    diffusers once it is imported (the model loader calls this again after importing it, so
    that the job's start-up never pays for diffusers). A no-op outside a rule."""
    if _TORCH_THREADS is None:
        return
    import torch

    torch.set_num_threads(_TORCH_THREADS)
    torch.set_flush_denormal(True)
    if "diffusers" in sys.modules:
        quiet_diffusers()


def _quiet_libraries() -> None:
    """Silence library progress bars and advisory warnings that drown the job's own output.

    Through environment variables, so that rules that never load a model do not pay for
    importing diffusers and transformers; libraries already imported are set directly.
    """
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "diffusers" in sys.modules:
        quiet_diffusers()
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def quiet_diffusers() -> None:
    """diffusers' own progress bars ignore the environment: turn them off in a rule job."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
