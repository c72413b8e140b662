"""scalex finds what each committed world's model generates, and the worlds discriminate; a
comparison of two models finds the changes a known fine-tune made, and no more.

Runs the README's validation command (the real Snakemake workflow on every committed world, the
demo config, every readout) and fails when the rule of docs/validation.md does not hold: clusters
or descriptors miss a target on some world with their validated readouts, gender defaults do not
beat the text-encoder control clearly, or the control meets every target on a world built to
disagree with a text encoder.
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scalex.analysis.check import MIN_KAPPA
from scalex_refworld import world as W
from scalex_refworld.validate import TARGETS
from scalex_refworld.validate_comparisons import PAIRS
from scalex_refworld.validate_comparisons import TARGETS as CMP_TARGETS
from scalex_refworld.validate_worlds import (
    CHECK_AXES,
    CORRECTION_SLACK,
    DISCRIMINATING,
    GENDER_MARGIN,
    VALIDATED,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(len(W.committed_worlds()) < 10, reason="the world models are not committed")
def test_every_world_meets_its_targets_and_the_text_control_does_not(tmp_path):
    out = tmp_path / "worlds"
    cmd = [sys.executable, "-m", "scalex_refworld.validate_worlds", "--out", str(out), "--check"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    table = pd.read_csv(out / "summary.tsv", sep="\t")
    worlds = {"stereotyped", "opposed", "scrambled", "heldout", "heldout2", "heldout3", "heldout4"}
    worlds |= {"stereotyped-ft", "stereotyped-ft-seed1", "heldout2-ft"}
    assert set(table["world"]) == worlds == set(W.committed_worlds("unet"))
    dit_worlds = {"stereotyped-dit", "heldout5-dit", "heldout6-dit"}
    assert set(W.committed_worlds("dit")) == dit_worlds  # judged by name, not here
    assert set(table["readout"]) == {"content", "prompt", "text", "check"}
    # the check on each world's model (docs/validation.md, "The check"), what held of its rule:
    # with the readings shuffled within each concept it fails on every world and axis, and the
    # corrected shares lie no further from the images than the votes (by the declared slack)
    checks = table[table["readout"] == "check"].pivot_table(
        index="world", columns="metric", values="value"
    )
    assert set(checks.index) == worlds
    for axis in CHECK_AXES:
        assert (checks[f"check_shuffled_passed_{axis}"] == 0).all(), axis
        assert (checks[f"check_shuffled_kappa_{axis}"].fillna(0) < MIN_KAPPA).all(), axis
        gap = checks[f"share_mae_corrected_{axis}"] - checks[f"share_mae_vote_{axis}"]
        assert (gap.dropna() <= CORRECTION_SLACK).all(), gap.to_string()
    for metric, readouts in VALIDATED.items():
        rows = table[table["readout"].isin(readouts) & (table["metric"] == metric)]
        assert len(rows) == len(worlds) * len(readouts)
        missed = rows[rows["value"] < rows["target"]]
        assert missed.empty, missed.to_string(index=False)
    gender = table[table["metric"].str.startswith("spearman_realised")]
    for world in worlds:
        g = gender[gender["world"] == world]
        best = g[g["readout"] != "text"]["value"].max()
        assert best >= g[g["readout"] == "text"]["value"].max() + GENDER_MARGIN, world
    text = table[(table["readout"] == "text") & table["metric"].isin(TARGETS)]
    for world in set(DISCRIMINATING) & worlds:
        rows = text[text["world"] == world]
        assert (rows["value"] < rows["target"]).any(), f"text control passes on {world}"
    assert (out / "summary.md").read_text().startswith("| world | readout |")

    # the two-model comparison on world pairs whose changes are known, reusing the trees above
    cmd = [sys.executable, "-m", "scalex_refworld.validate_comparisons", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    pairs = pd.read_csv(out / "comparisons.tsv", sep="\t").set_index("pair")
    assert list(pairs.index) == [p.name for p in PAIRS]
    ft = pairs.loc["fine-tune"]
    assert ft["moved"] >= 3 and ft["still"] >= 10, "the fine-tune pair must have known changes"
    # the declared targets met with the demo config (docs/validation.md, "Comparing two models")
    assert ft["false_flags"] <= CMP_TARGETS["false_flags"] and ft["ari"] >= CMP_TARGETS["ari"]
    assert ft["text_max_change"] == 0  # one text encoder: no flag can come from it
    assert pairs.loc["opposed", "recall"] >= CMP_TARGETS["recall"]
    for null in ("null: seeds", "null: retrain"):
        assert pairs.loc[null, "flagged"] <= max(1, pairs.loc[null, "null_limit"]), null
    held_out = pairs.loc["held-out fine-tune"]
    assert held_out["moved"] >= 2 and held_out["false_flags"] <= CMP_TARGETS["false_flags"]
    assert held_out["ari"] >= CMP_TARGETS["ari"]
    # missed with the demo's 16 seeds, reported (not held): both fine-tunes' recall and rho
    for pair in (ft, held_out):
        assert 0 <= pair["recall"] <= 1 and -1 <= pair["rho"] <= 1
