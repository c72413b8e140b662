"""The workflow on a real SLURM cluster, through the shipped profile, equals a local run.

Needs a running SLURM (``tests/slurm/start_cluster.sh`` starts a one-node cluster on loopback
with accounting and a fake GPU; ``.ci/run`` does so) and ``snakemake-executor-plugin-slurm``.
Without them the test is skipped, except under ``SCALEX_REQUIRE_SLURM=1`` (CI), where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, result_digests, workflow_config, write_sheet

pytestmark = pytest.mark.slow

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
#: the test cluster is one small node: site settings as a user would give them
SITE = {"SCALEX_SLURM_CPU_CPUS": "1", "SCALEX_SLURM_GPU_CPUS": "1",
        "SCALEX_SLURM_CPU_MEM_MB": "1000", "SCALEX_SLURM_GPU_MEM_MB": "2000",
        "SCALEX_SLURM_CPU_RUNTIME": "10", "SCALEX_SLURM_GPU_RUNTIME": "10"}  # fmt: skip


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
    assert trees["local"] and trees["cluster"] == trees["local"]
    assert any(name.endswith("similarity.h5") for name in trees["local"])
