"""The benchmarks compare like with like: every side yields the same activations.

A speed ratio between two sides means something only if both compute the same thing, so each
side of ``bench/extraction.py`` (the stock pipeline per sample, batched, stopped by a callback;
scalex batched and stopped early) is run on the tiny random models and held to the stock
per-sample activations. ``bench/gpu.py --smoke`` runs every GPU phase's code on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import extraction as bench  # noqa: E402


@pytest.mark.parametrize(
    ("family", "guidance"), [("sd1", 1.0), ("sd1", 7.5), ("sdxl", 7.5), ("lcm", 1.0)]
)
def test_every_side_yields_the_stock_activations(tiny_pipes, family, guidance):
    pipe = tiny_pipes(family)
    samples = bench.samples_for(3, 2)
    table = bench.sides(pipe, steps=3, guidance=guidance, size=16, dtype="float32",
                        device="cpu", batches=[1, 4], keep=[1, 2])  # fmt: skip
    assert {"stock-per-sample", "stock-batched-b4", "stock-batched-b4-stop1", "scalex-b4",
            "scalex-b4-keep2"} <= set(table)  # fmt: skip
    times = {name: [1.0] for name in table}
    outputs = {name: fn(samples) for name, (fn, _) in table.items()}
    rows = bench.compare(table, times, outputs, len(samples))
    ref = outputs["stock-per-sample"]
    assert ref.shape[:2] == (len(samples), 3)
    assert np.abs(ref).max() > 0.1
    for row in rows:
        assert row["max_abs_diff_vs_stock"] < 1e-4, row["method"]


def test_a_side_with_other_steps_is_not_equal(tiny_pipes):
    """The comparison fails when a side yields fewer steps than it claims."""
    pipe = tiny_pipes("sd1")
    samples = bench.samples_for(2, 1)
    table = bench.sides(pipe, steps=3, guidance=1.0, size=16, dtype="float32", device="cpu",
                        batches=[2], keep=[1])  # fmt: skip
    fn, _ = table["scalex-b2-keep1"]
    table["scalex-b2-keep1"] = (fn, 3)  # claims all three steps, yields one
    outputs = {name: f(samples) for name, (f, _) in table.items()}
    rows = bench.compare(table, {n: [1.0] for n in table}, outputs, len(samples))
    bad = next(r for r in rows if r["method"] == "scalex-b2-keep1")
    assert bad["max_abs_diff_vs_stock"] == float("inf")


def test_gpu_script_runs_every_phase_in_smoke_mode(tmp_path):
    out = tmp_path / "gpu"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--device", "cpu",
           "--repeats", "1", "--out", str(out), "--tmp", str(tmp_path / "models"),
           "--phases", "correctness", "sides", "mfu", "oom_backoff", "largest_batch"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    result = json.loads((out / "gpu.json").read_text())
    phases = result["phases"]
    assert all("error" not in phases[p] for p in phases), phases
    correctness = phases["correctness"]["result"]
    assert correctness["batch32_vs_batch1_float32"]["within_storage_precision"]
    for block in phases["sides"]["result"]:
        for row in block["methods"]:
            assert row["within_float16_spacing"], (block["dtype"], row["method"])
    assert phases["largest_batch"]["result"]["largest_fitting"] >= 4
    report = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--report",
                             str(out / "gpu.json")], check=True, capture_output=True,
                            text=True).stdout  # fmt: skip
    assert "stock-batched-b8" in report


def test_whole_run_sides_produce_the_same_activations(tmp_path):
    """bench/whole_run.py's three whole processes (the workflow, the per-sample script, the
    batched script) yield the same activations within float16 storage, and the check inside it
    can tell when they do not."""
    out = tmp_path / "whole.json"
    cmd = [sys.executable, str(ROOT / "bench" / "whole_run.py"), "--models", "tiny-sd1",
           "--concepts", "3", "--repeats", "1", "--batch", "4", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    (result,) = json.loads(out.read_text())["results"]
    assert result["samples"] == 4 * 8
    assert result["equal_within_float16_storage"] == {
        "script-per-sample": True,
        "script-batched": True,
    }, result["max_abs_diff_vs_workflow"]
    import whole_run

    stored = np.float16([1.0, -3.0, 0.5]).astype(np.float32)
    assert whole_run.within_storage(stored + 1e-4, stored)
    assert not whole_run.within_storage(stored + np.float32([0.0, 0.01, 0.0]), stored)
