"""Comparing two models with the real workflow: one command builds both trees and the diff, a
finished tree is reused as it is, and changing the new model touches nothing of the base's.

The models are two committed reference worlds whose difference is known: ``opposed`` flips every
planted rate of ``stereotyped`` (nurse: 95 % women -> 5 %), and both share their text encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, workflow_config, write_sheet
from scalex.api import Results
from scalex.config import compared_config, results_tree, validate_config
from scalex_refworld import world as W
from test_workflow import snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(
            (W.world_model(w) / "model_index.json").is_file() for w in ("opposed", "scrambled")
        ),
        reason="the world models are not committed",
    ),
]

ROWS = [(p, "professions", p) for p in ("nurse", "carpenter", "chef", "baker")]
AXES = {"gender": ["female", "male"], "age": ["young", "old"]}


def comparison_config(work: Path, new_world: str) -> Path:
    sheet = write_sheet(work / "concepts.tsv", ROWS)
    cfg = workflow_config(
        W.world_model("stereotyped"),
        sheet.resolve(),
        sampling={"steps": 10, "seeds": {"start": 0, "count": 16}, "batch_size": 128},
        extraction={"readouts": ["content", "text"], "buckets": 1},
        directions={"readout": "content"},
        concepts={"descriptors": {"targets": ["professions"], "axes": AXES}},
        clustering={"sets": ["professions"], "k_min": 2, "k_max": 3},
        analysis={"bootstrap": 1000},
    )
    cfg["compare"] = {"model": {"id": str(W.world_model(new_world))}}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def trees(work: Path, config: Path) -> tuple[Path, Path]:
    cfg = validate_config(yaml.safe_load(config.read_text()), base=ROOT)
    return work / results_tree(cfg), work / results_tree(compared_config(cfg, base=ROOT))


def stamps(tree: Path) -> dict[str, int]:
    """Modification times of every result of a tree (the comparison's own folder and the job
    cache aside: the diff's job memo lives in the base tree's ``reuse/``)."""
    aside = {"compare", "logs", "benchmarks", "reuse"}
    return {
        str(p.relative_to(tree)): p.stat().st_mtime_ns
        for p in tree.rglob("*")
        if p.is_file() and not aside & set(p.relative_to(tree).parts)
    }


def test_a_comparison_flags_the_flipped_rates_and_reuses_the_base_tree(tmp_path):
    config = comparison_config(tmp_path, "opposed")
    base_tree, new_tree = trees(tmp_path, config)
    snakemake(tmp_path, config, "--cores", "2", timeout=900)
    folder = base_tree / "compare" / new_tree.name
    diff = pd.read_csv(folder / "diff.tsv", sep="\t").set_index(["concept", "axis"])
    assert len(diff) == len(ROWS) * len(AXES)
    # opposed flips nurse (95 % women) and carpenter (5 %): both flagged, in the right direction
    assert diff.loc[("nurse", "gender"), "difference"] < -0.5
    assert diff.loc[("carpenter", "gender"), "difference"] > 0.5
    assert diff.loc[[("nurse", "gender"), ("carpenter", "gender")], "flagged"].all()
    assert (diff["ci_low"] <= diff["difference"]).all() and (
        diff["difference"] <= diff["ci_high"]
    ).all()
    # the text encoder is the same in both models: its control cannot explain any change
    assert (diff["text_difference"] == 0).all()
    ranking = pd.read_csv(folder / "descriptors.tsv", sep="\t").set_index(["concept", "axis"])
    assert set(ranking.index) == set(diff.index)
    assert ranking.loc[("nurse", "gender"), "difference"] < 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["pairing"] == "same seeds"
    assert (
        summary["new"]["settings"]["model"]["content"]
        != summary["base"]["settings"]["model"]["content"]
    )
    assert 0 <= summary["shares"]["flagged"] <= summary["shares"]["tested"]
    for axis in AXES:
        assert (folder / f"{axis}.png").stat().st_size > 0
    # the API reads the same table
    api = Results(base_tree).comparison()
    assert len(api) == len(diff) and api["flagged"].sum() == diff["flagged"].sum()
    assert Results(base_tree).comparison_summary()["clusters"]["ari"] == summary["clusters"]["ari"]
    flagged = Results(base_tree).comparison(finding="flagged")
    assert len(flagged) == diff["flagged"].sum() + ranking["flagged"].sum()
    assert flagged["difference"].abs().is_monotonic_decreasing

    # a second new model: the base tree and the first new tree are reused as they are
    before_base, before_new = stamps(base_tree), stamps(new_tree)
    other = comparison_config(tmp_path, "scrambled")
    _, other_tree = trees(tmp_path, other)
    proc = snakemake(tmp_path, other, "--cores", "2", timeout=900)
    assert stamps(base_tree) == before_base and stamps(new_tree) == before_new
    ran = {
        line.split()[1].rstrip(":")
        for line in proc.stderr.splitlines()
        if line.startswith(("rule ", "localrule "))
    }
    assert ran and all(r.startswith("compared_") or r in {"diff", "all"} for r in ran), ran
    assert (base_tree / "compare" / other_tree.name / "diff.tsv").is_file()
