"""The workflow runs from a non-editable install: the package (its schemas, the reference-world
loader behind its entry point) comes from a built wheel, not from the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd[:4])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc.stdout + proc.stderr


def test_a_non_editable_install_runs_the_demo(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
         ROOT, env)  # fmt: skip
    (wheel,) = wheels.glob("scalex-*.whl")
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], ROOT, env)
    # the workflow's own files, without the package sources next to them
    work.mkdir()
    for name in ("Snakefile", "rules", "config", "resources", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "scripts").mkdir()
    for script in (ROOT / "scripts").glob("*.py"):
        shutil.copy(script, work / "scripts" / script.name)
    env = env | {"PYTHONPATH": str(site)}
    where = _run([sys.executable, "-c", "import scalex, scalex_refworld; "
                  "print(scalex.__file__, scalex_refworld.__file__)"], work, env)  # fmt: skip
    assert all(path.startswith(str(site)) for path in where.split()), where

    # every rule of the demo, on four seeds instead of sixteen: the install is under test, not
    # the scale (the demo itself runs in tests/test_worlds_validation.py)
    small = work / "small.yaml"
    small.write_text(
        "sampling: {seeds: {start: 0, count: 4}}\n"
        "analysis: {discovery: {vocabularies: {reference: {seeds: 4}}}}\n"
    )
    demo = ["--configfile", "config/config.yaml", str(small)]
    _run([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "rules", *demo], work, env)
    results = next((work / "results").iterdir())
    summary = pd.read_csv(results / "validation" / "summary.tsv", sep="\t")
    assert len(summary) > 0
    assert (results / "prompt" / "analysis" / "clusters" / "raw" / "concept_map.png").is_file()
    # every job imported the installed package: no log names the source tree's package
    logs = "".join(p.read_text() for p in (results / "logs").rglob("*.log"))
    assert str(ROOT / "scripts" / "scalex") not in logs
