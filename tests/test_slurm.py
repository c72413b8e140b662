"""The workflow on a real SLURM cluster, through the shipped profile, equals a local run.

Needs a running SLURM (``tests/slurm/start_cluster.sh`` starts a one-node cluster on loopback
with accounting and a fake GPU; ``.ci/run`` does so) and ``snakemake-executor-plugin-slurm``.
Without them the test is skipped, except under ``SCALEX_REQUIRE_SLURM=1`` (CI), where it fails.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, result_digests, workflow_config, write_sheet
from scalex.cli import running_snakemakes, slurm_jobs

pytestmark = pytest.mark.slow

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
#: the test cluster is one small node: site settings as a user would give them
SITE = {"SCALEX_SLURM_CPU_CPUS": "1", "SCALEX_SLURM_GPU_CPUS": "1",
        "SCALEX_SLURM_CPU_MEM_MB": "1000", "SCALEX_SLURM_GPU_MEM_MB": "2000",
        "SCALEX_SLURM_CPU_RUNTIME": "10", "SCALEX_SLURM_GPU_RUNTIME": "10",
        # no account: the workflow names the user's default one, the plugin guesses none
        "SCALEX_SLURM_ACCOUNT": ""}  # fmt: skip


def slurm_ready() -> str | None:
    """Why SLURM cannot be used here, or None when it can."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed"
    if shutil.which("sinfo") is None:
        return "no SLURM here (tests/slurm/start_cluster.sh starts one)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 or not ({"idle", "mixed", "allocated"} & set(out.stdout.split())):
        return f"SLURM does not answer: {out.stderr.strip() or out.stdout.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster():
    why = slurm_ready()
    if why:
        if os.environ.get("SCALEX_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)


def run(work: Path, *args: str, env=ENV) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "scalex.cli", "run", "--directory", str(work), "--snakefile",
           str(ROOT / "Snakefile"), *args, "--configfile", str(work / "config.yaml")]  # fmt: skip
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.parametrize("profile", ["slurm", "slurm-cpu"])
def test_slurm_profile_run_equals_local_run(cluster, tiny_models, tmp_path, profile):
    sheet = write_sheet(tmp_path / "concepts.tsv")
    cfg = workflow_config(
        # threads pinned: a thread count may move a stored float16 value by one step, and this
        # test holds the two runs to the same bytes
        tiny_models["sd1"], sheet.resolve(),
        extraction={"readouts": ["prompt", "text"], "threads": 2},
        analysis={"bootstrap": 20, "descriptors": {"enabled": False}},
    )  # fmt: skip
    trees = {}
    for where in ("local", "cluster"):
        work = tmp_path / where
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        if where == "local":
            proc = run(work, "--cores", "2")
        else:
            # the plugin waits 40 s before its first status check, tuned for real clusters
            proc = run(work, "--profile", str(ROOT / "profiles" / profile),
                       "--slurm-init-seconds-before-status-checks", "2",
                       env=ENV | SITE)  # fmt: skip
        assert proc.returncode == 0, f"{where}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        trees[where] = result_digests(work / "results")
        if where == "cluster":
            log = proc.stdout + proc.stderr
            assert "slurm" in log.lower() and "Job " in log  # jobs were submitted to SLURM
            # the plugin's account guess (sacct handed `| tail -1`) was not needed
            assert "sacct: invalid option" not in log and "trying to guess" not in log
    local, cluster = trees["local"], trees["cluster"]
    differ = sorted(k for k in local.keys() | cluster.keys() if local.get(k) != cluster.get(k))
    assert local and not differ, differ
    assert any(name.endswith("similarity.h5") for name in local)


#: a retried job and a job that runs while the file ``hold`` exists; each attempt of ``flaky``
#: records what SLURM granted it
TINY = """
rule all:
    input: "flaky.txt", "slow.txt"

rule flaky:
    output: "flaky.txt"
    shell:
        "if [ -e flaky.1.job ]; then scontrol show job $SLURM_JOB_ID > flaky.2.job; "
        "touch {output}; else scontrol show job $SLURM_JOB_ID > flaky.1.job; exit 1; fi"

rule slow:
    output: "slow.txt"
    shell: "while [ -e hold ]; do sleep 1; done; touch {output}"
"""


def granted(job: Path) -> tuple[int, str]:
    """Memory (MB) and time limit that ``scontrol show job`` says a job was given."""
    text = job.read_text()
    memory = re.search(r"MinMemoryNode=(\d+)M", text)[1]
    return int(memory), re.search(r"TimeLimit=(\S+)", text)[1]


def until(what, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting for {what.__doc__}"
        time.sleep(0.5)


def test_retry_cap_and_resume_after_the_head_dies(cluster, tmp_path):
    """A retried job asks SLURM for no more than the site caps; after the head process is
    killed, ``scalex resume`` names the SLURM jobs that still run and says to wait or scancel
    them, and after ``scancel`` it finishes the run."""
    work = (tmp_path / "work").resolve()
    work.mkdir()
    (work / "Snakefile").write_text(TINY)
    (work / "hold").touch()
    env = ENV | SITE | {
        "SCALEX_SLURM_ACCOUNT": "scalex", "SCALEX_SLURM_CPU_PARTITION": "cpu",
        "SCALEX_SLURM_GPU_PARTITION": "gpu",
        # caps below the doubled 1000 MB / 10 min
        "SCALEX_SLURM_MAX_MEM_MB": "1500", "SCALEX_SLURM_MAX_RUNTIME": "15",
    }  # fmt: skip
    args = ["--directory", str(work), "--profile", str(ROOT / "profiles" / "slurm"),
            "--slurm-init-seconds-before-status-checks", "2"]  # fmt: skip
    resume = [sys.executable, "-m", "scalex.cli", "resume", *args]

    def slow_runs() -> list[str]:
        """the flaky job done, the slow one running (its SLURM job id)"""
        out = subprocess.run(["squeue", "-h", "-o", "%i %k %T", "-u", getpass.getuser()],
                             capture_output=True, text=True).stdout  # fmt: skip
        flaky = re.findall(r"^\d+ rule_flaky ", out, re.M)
        running = re.findall(r"^(\d+) rule_slow RUNNING$", out, re.M)
        return running if (work / "flaky.txt").exists() and not flaky else []

    head = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        until(slow_runs)
        os.killpg(head.pid, signal.SIGKILL)  # the head dies, its SLURM job runs on
        head.wait()
        ids = slow_runs()
        assert granted(work / "flaky.1.job") == (1000, "00:10:00")
        assert granted(work / "flaky.2.job") == (1500, "00:15:00")  # not 2000 MB, 20 min

        refused = subprocess.run(resume, cwd=work, env=env, capture_output=True, text=True)
        assert refused.returncode == 1, refused.stderr
        assert f"{ids[0]}  slow  RUNNING" in refused.stderr
        assert "Wait until they end" in refused.stderr
        assert f"`scancel {ids[0]}`" in refused.stderr

        subprocess.run(["scancel", *ids], check=True)
        (work / "hold").unlink()
        # on this one-node cluster the job's processes end a moment after squeue drops it
        until(lambda: not slurm_jobs(work) and not running_snakemakes(work))
        resumed = subprocess.run(resume, cwd=work, env=env, capture_output=True, text=True,
                                 timeout=600)  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert (work / "slow.txt").exists()
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        left = [jobid for jobid, _, _ in slurm_jobs(work) or []]
        if left:  # nothing left running when the test went wrong
            subprocess.run(["scancel", *left])
