"""A killed run resumes with one documented command and ends byte-identical.

The whole run (Snakemake and every job it started) is killed with SIGKILL at ten random moments
during extraction; ``scalex resume`` must then succeed on its first try, and every result file
must equal, byte for byte, the files of a run that was never interrupted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, result_digests, workflow_config, write_sheet

pytestmark = pytest.mark.slow

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TRIALS = 10


def command(work: Path, entry: list[str], *extra: str) -> list[str]:
    # two cores, as the demo runs: two jobs side by side (also while killed), one thread each
    return [sys.executable, *entry, "--cores", "2", "--directory", str(work), "--snakefile",
            str(ROOT / "Snakefile"), *extra, "--configfile", str(work / "config.yaml")]  # fmt: skip


def prepare(work: Path, model: Path) -> None:
    sheet = write_sheet(work / "concepts.tsv")
    cfg = workflow_config(
        model, sheet.resolve(), extraction={"readouts": ["prompt"], "buckets": 2},
        analysis={"descriptors": {"enabled": False}, "bootstrap": 20},
    )  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def extraction_started(work: Path) -> bool:
    return any((work / "results").glob("*/logs/extract/*.log"))


def test_resume_after_sigkill_is_byte_identical(tiny_models, tmp_path):
    model = Path(tiny_models["sd1"])
    reference = tmp_path / "reference"
    reference.mkdir()
    prepare(reference, model)
    start = time.monotonic()
    proc = subprocess.Popen(
        command(reference, ["-m", "snakemake"]), cwd=reference, env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while proc.poll() is None and not extraction_started(reference):
        time.sleep(0.05)
    first_extract = time.monotonic() - start
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    window = time.monotonic() - start - first_extract
    want = result_digests(reference / "results")
    assert any(name.endswith(".h5") for name in want)

    rng = random.Random(2026)
    killed = 0
    for trial in range(TRIALS):
        work = tmp_path / f"trial{trial}"
        work.mkdir()
        prepare(work, model)
        run = subprocess.Popen(command(work, ["-m", "snakemake"]), cwd=work, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
        while run.poll() is None and not extraction_started(work):
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.6 * window))
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            killed += 1
        run.wait()
        resumed = subprocess.run(command(work, ["-m", "scalex.cli", "resume"]), cwd=work,
                                 env=ENV, capture_output=True, text=True,
                                 timeout=900)  # fmt: skip
        assert resumed.returncode == 0, f"trial {trial}: {resumed.stderr[-3000:]}"
        got = result_digests(work / "results")
        assert got == want, f"trial {trial}: {sorted(set(got.items()) ^ set(want.items()))[:6]}"
    assert killed == TRIALS  # every trial was cut short, none had finished


def test_resume_refuses_a_folder_a_running_snakemake_holds(tmp_path):
    from scalex.cli import running_snakemakes

    fake = tmp_path / "snakemake"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    holder = subprocess.Popen([str(fake), "--directory", str(tmp_path)], cwd=tmp_path)
    try:
        time.sleep(0.3)
        assert holder.pid in running_snakemakes(tmp_path.resolve())
        (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
        (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("x\n")
        out = subprocess.run([sys.executable, "-m", "scalex.cli", "resume", "--directory",
                              str(tmp_path)], capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 1 and "locked by running Snakemake" in out.stderr
    finally:
        holder.kill()
