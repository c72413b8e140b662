"""The cost estimate of the shipped configs (bench/estimate.py) is consistent and in the docs.

The estimator runs without torch, on the configs and concept sheets alone; its counts must be
the workflow's (samples from the concept sheets and seeds, jobs from the hash buckets), its
forwards per sample those of the extraction loop, its FLOP formula the flop counter's figure
measured on the GPU, and README.md / BENCHMARKS.md must hold exactly what it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import estimate  # noqa: E402
from scalex.concepts import (  # noqa: E402
    BASELINE_ID,
    baseline_concept,
    bucket_count,
    bucket_of,
    load_concepts,
)
from scalex.config import seeds  # noqa: E402

#: configs in config/models/ that are not ready-made public-model configs
NOT_SHIPPED_MODELS = {"common-sd.yaml", "stereotyped-dit.yaml"}


@pytest.fixture(scope="module")
def rows():
    return {r["config"]: r for r in estimate.rows_for()}


def test_every_shipped_model_config_is_estimated(rows):
    shipped = {p.name for p in (ROOT / "config/models").glob("*.yaml")} - NOT_SHIPPED_MODELS
    assert set(estimate.CONFIGS) == shipped == set(rows)
    readme = (ROOT / "README.md").read_text()
    for name in shipped:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(estimate.CONFIGS))
def test_samples_and_jobs_are_the_workflows(rows, name):
    r = rows[name]
    cfg = estimate.load_config(estimate.CONFIGS[name].files)
    assert cfg["model"]["id"] and r["files"][0] == estimate.COMMON
    concepts = load_concepts(cfg, base=ROOT)
    n_seeds = len(seeds(cfg))
    prompts = sum(len(c.prompts) for c in concepts.values())
    baseline = len(baseline_concept(cfg).prompts)
    assert (r["concepts"], r["prompts"], r["baseline_prompts"], r["seeds"]) == (
        len(concepts),
        prompts,
        baseline,
        n_seeds,
    )
    assert r["samples"] == (prompts + baseline) * n_seeds + r["vocabulary_samples"]
    assert r["vocabulary_samples"] == 0  # common-sd.yaml turns discovery off
    # one job per bucket with concepts and the baseline's (rules/common.smk)
    n = bucket_count(cfg["extraction"]["buckets"], n_seeds * prompts)
    used = {bucket_of(c, n) for c in concepts}
    assert r["jobs"] == (1 if used == {"b0000"} and n == 1 else len(used) + 1)
    # the check's job (check.enabled): check.seeds seeds of the voted concepts' prompts
    check = cfg.get("check") or {}
    targets = {c.derived["concept"] for c in concepts.values() if c.derived}
    if check.get("enabled"):
        voted = sum(len(concepts[c].prompts) for c in targets)
        assert r["check"]["samples"] == voted * min(check["seeds"], n_seeds) > 0
        assert r["all_jobs"] == r["jobs"] + 1
        assert r["gpu_hours"] > r["extraction_gpu_hours"]
    else:
        assert not r["check"] and r["all_jobs"] == r["jobs"]
    assert r["padded_samples"] >= r["samples"]
    assert r["padded_samples"] < r["samples"] + r["jobs"] * r["batch_size"]
    assert BASELINE_ID not in concepts


def test_forwards_per_sample_follow_the_extraction_loop(rows):
    """Steps before the last kept one: whole forwards (x2 under CFG); the last kept step up
    to the tap (x2 under CFG); the content readout one forward up to the tap per kept step
    above 0 (sd15.yaml: steps 0-3 of 10 kept; LCM and Flux: 4 of 4 kept, no CFG)."""
    expected = {
        "sd15.yaml": (6, 5, True),
        "sd21.yaml": (6, 5, True),
        "sdxl.yaml": (6, 5, True),
        "sd15-lcm.yaml": (3, 4, False),
        "sd35-medium.yaml": (6, 5, True),
        "flux-schnell.yaml": (3, 4, False),
        "pixart-sigma.yaml": (6, 5, True),
    }
    for name, (whole, to_tap, cfg) in expected.items():
        r = rows[name]
        assert (r["whole_forwards"], r["to_tap_forwards"], r["cfg"]) == (whole, to_tap, cfg)
        assert 0 < r["to_tap_flops"] < r["forward_flops"]
        assert r["denoiser_flops_per_sample"] == (
            whole * r["forward_flops"] + to_tap * r["to_tap_flops"]
        )
        assert r["flops"] > r["padded_samples"] * r["denoiser_flops_per_sample"] > 0
        assert r["gpu_hours"] > 0 and r["peak_bytes"] > r["param_bytes"] > 0


def test_forwards_of_other_readouts():
    w = estimate.Workload("x", 1, 1, 1, 2, 0, steps=10, kept=(0, 1, 2, 3), cfg=True)
    for readouts, forwards in {
        ("text",): (0, 0),
        ("prompt",): (6, 2),
        ("content",): (6, 3),  # the trajectory steps on to step 3, read there without CFG
        ("prompt", "content", "text"): (6, 5),
    }.items():
        w.readouts = readouts
        per = estimate.forwards_per_sample(w)
        assert (per.whole, per.to_tap) == forwards, readouts
    w.kept, w.readouts = (0,), ("prompt",)
    per = estimate.forwards_per_sample(w)
    assert (per.whole, per.to_tap) == (0, 2)


def test_the_unet_formula_is_the_measured_flop_count():
    """bench/gpu.py counted the SD 1.5 UNet's forward on the H200 with torch's flop counter
    (16 text tokens); the formula gives that figure to the FLOP."""
    run = json.loads((ROOT / "bench/gpu-runs/run2.json").read_text())
    unet = estimate.ARCHITECTURES["unet-sd15"].spec
    assert estimate.unet_forward(unet, 512, 16).whole == run["unet_flops_per_sample_forward"]


def test_vocabulary_samples_and_jobs_are_counted():
    """The demo config turns discovery on: its vocabulary chunks are jobs of their own."""
    from scalex.io import read_vocabulary

    cfg = estimate.load_config(("config/config.yaml",))
    w = estimate.workload("demo", cfg)
    spec = cfg["analysis"]["discovery"]["vocabularies"]["reference"]
    terms = read_vocabulary(ROOT / spec["file"])
    assert w.vocabulary_samples == len(terms) * min(spec["seeds"], w.seeds) > 0
    assert any(j.startswith("vocabulary:reference:") for j in w.jobs)
    assert w.samples == (w.prompts + w.baseline_prompts) * w.seeds + w.vocabulary_samples


def test_the_check_costs_more_than_the_extraction_per_sample(rows):
    sd15 = rows["sd15.yaml"]
    check = estimate.check_cost(sd15, steps=50)
    assert check["per_checked_sample"] > check["render"] > 100 * check["unet_forward"]
    assert check["share_per_sample"] > 1
    shares = check["share_of_extraction"]
    assert shares[16] == pytest.approx(16 * shares[1])
    own = estimate.check_cost(sd15, steps=sd15["steps"])
    assert own["per_checked_sample"] < check["render"]
    if sd15["check"]:  # the check's job renders with the config's own schedule
        assert own["per_checked_sample"] == sd15["check"]["flops_per_sample"]


def test_the_docs_hold_the_estimators_output(rows):
    """README.md's table and BENCHMARKS.md's section are the estimator's output, verbatim."""
    ordered = [rows[n] for n in estimate.CONFIGS]
    assert estimate.readme_table(ordered) in (ROOT / "README.md").read_text()
    checks = [estimate.check_cost(ordered[0], s) for s in (50, ordered[0]["steps"])]
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    assert "## Shipped configs: estimated cost" in benchmarks
    assert estimate.full_tables(ordered, checks) in benchmarks


def test_the_estimator_runs_without_torch():
    code = (
        "import runpy, sys; sys.argv = ['estimate.py']; "
        "runpy.run_path('bench/estimate.py', run_name='__main__'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in (ROOT / "README.md").read_text()
