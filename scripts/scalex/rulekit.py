"""What every rule script needs: logging to the rule's log file and error reporting.

A failing step writes its one-line reason to its log and to the terminal, then exits non-zero,
so ``snakemake`` shows the cause without a page of traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from scalex.errors import ScalexError

#: Errors whose message already says what is wrong and where.
EXPECTED = (ScalexError, KeyError, ValueError)


def run_rule(smk: Any, work: Callable[[], Any]) -> Any:
    """Run ``work`` with logging to ``smk.log[0]`` (and stderr); exit 1 on a known error."""
    log = logging.getLogger("scalex")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in (logging.FileHandler(smk.log[0], mode="w"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        log.addHandler(handler)
    _quiet_libraries()
    if getattr(smk, "threads", None):
        import torch

        torch.set_num_threads(int(smk.threads))
        torch.set_flush_denormal(True)
    start = time.perf_counter()
    try:
        result = work()
    except EXPECTED as err:
        log.error("%s failed: %s", smk.rule, err)
        raise SystemExit(1) from None
    log.info("%s done in %.2f s", smk.rule, time.perf_counter() - start)
    return result


def _quiet_libraries() -> None:
    """Silence library progress bars and advisory warnings that drown the job's own output."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
