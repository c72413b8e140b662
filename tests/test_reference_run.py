"""The default workflow on the committed reference model finds the biases planted in it.

Runs the real Snakemake workflow (the README's `make demo` configuration) in a temporary working
directory and fails when any ground-truth target of `scalex_refworld.validate` is missed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "resources" / "reference-model" / "scalex_reference.json"


@pytest.mark.slow
@pytest.mark.skipif(not MODEL.is_file(), reason="the reference model is not committed")
def test_default_run_meets_ground_truth_targets(tmp_path):
    for name in ("resources", "config"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "2",
        "--quiet",
        "all",
        "--",
        "results/validation/summary.tsv",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "results" / "validation" / "summary.tsv", sep="\t")
    targets = summary.dropna(subset=["target"])
    assert set(targets["metric"]) == {
        "spearman_realised",
        "spearman_planted",
        "ari_families",
        "top1",
    }
    missed = targets[targets["value"] < targets["target"]]
    assert missed.empty, f"ground-truth targets missed:\n{missed.to_string(index=False)}"
