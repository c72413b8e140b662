"""The check on the audited model: the findings' votes against the images of the very samples that
cast them, read by an image reader; its tables, its pass rule, the shuffled control, and the
labels and corrected shares it gives the findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import workflow_config, write_sheet
from random_models import save_tiny_clip
from scalex.analysis.check import (
    FAILED,
    MIN_AGREEMENT,
    MIN_KAPPA,
    MIN_SAMPLES,
    NOT_CHECKED,
    PASSED,
    agreement_table,
    chance_agreement,
    checked_subsample,
    confusion_table,
    shuffled,
    wilson,
)
from scalex.readers import UNDETERMINED, resolve
from test_workflow import snakemake, tree_of

AXES = {"gender": ["female", "male"]}


def synthetic(shares: dict[str, float], n: int, accuracy: float, seed: int = 0) -> pd.DataFrame:
    """Checked samples: each concept's images show ``female`` at its share, and the vote names
    the image's value with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    rows = []
    for concept, share in shares.items():
        for i in range(n):
            image = "female" if rng.random() < share else "male"
            other = "male" if image == "female" else "female"
            vote = image if rng.random() < accuracy else other
            rows.append(
                {"concept": concept, "axis": "gender", "template_index": 0, "prompt": "p",
                 "seed": i, "vote": vote, "reading": image, "margin": 1.0}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_wilson_interval():
    low, high = wilson(20, 20)
    assert high == 1.0 and 0.83 < low < 0.84
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.0 < high < 0.35
    assert all(np.isnan(wilson(0, 0)))


def test_an_accurate_vote_passes_and_a_shuffled_reader_fails():
    """The declared rule: a vote right 97 % of the time passes; the same readings shuffled among
    each concept's samples keep every concept's image share, agree only by chance, and fail,
    even where chance is high (concepts drawn 90 % one way)."""
    checked = synthetic({"nurse": 0.9, "pilot": 0.1, "judge": 0.5}, 60, 0.97)
    table = agreement_table(checked, AXES).iloc[0]
    assert table["status"] == PASSED and table["agreement"] > 0.9 and table["kappa"] > 0.8
    control = shuffled(checked, seed=0)
    for _, block in checked.groupby("concept"):
        assert sorted(control.loc[block.index, "reading"]) == sorted(block["reading"])
    table = agreement_table(control, AXES).iloc[0]
    assert table["status"] == FAILED
    assert abs(table["agreement"] - table["chance"]) < 0.1 and table["kappa"] < MIN_KAPPA
    assert table["chance"] > 0.6  # chance alone is high here: the agreement alone could pass
    assert table["ci_low"] > 0.5


def test_too_few_readings_or_a_weak_vote_fail():
    assert (
        agreement_table(synthetic({"a": 0.5}, MIN_SAMPLES - 1, 1.0), AXES).iloc[0]["status"]
        == FAILED
    )
    assert agreement_table(synthetic({"a": 0.5}, 400, 0.7), AXES).iloc[0]["ci_low"] < MIN_AGREEMENT


def test_undetermined_readings_are_counted_apart():
    checked = synthetic({"nurse": 0.5}, 40, 1.0)
    checked.loc[:9, "reading"] = UNDETERMINED
    row = agreement_table(checked, AXES).iloc[0]
    assert row["samples"] == 40 and row["determined"] == 30
    assert row["undetermined_rate"] == pytest.approx(0.25) and row["agreement"] == 1.0
    confusion = confusion_table(checked, AXES)
    assert confusion["count"].sum() == 40
    assert confusion.query("image == @UNDETERMINED")["count"].sum() == 10


def test_chance_is_within_concepts():
    checked = synthetic({"nurse": 1.0, "pilot": 0.0}, 50, 1.0)
    assert chance_agreement(checked) == pytest.approx(1.0)  # each concept's shares say it all
    assert np.isnan(agreement_table(checked, AXES).iloc[0]["kappa"])


def test_the_subsample_takes_the_first_seeds_of_every_prompt():
    votes = pd.DataFrame(
        [{"concept": c, "axis": "gender", "prompt_index": p, "template_index": p,
          "seed_index": s, "prompt": f"{c}{p}", "seed": 10 + s, "vote": "female"}
         for c in ("a", "b") for p in range(3) for s in range(5)]
    )  # fmt: skip
    chosen = checked_subsample(votes, 2)
    assert len(chosen) == 2 * 3 * 2 and set(chosen["seed_index"]) == {0, 1}


def test_auto_reader_is_the_world_reader_on_a_reference_world():
    assert resolve({"reader": "auto"}, Path("world.tsv")) == "world"
    assert resolve({"reader": "auto"}, None) == "clip"
    assert resolve({"reader": "clip"}, Path("world.tsv")) == "clip"


def test_clip_reader_names_a_value_or_undetermined(tmp_path):
    from scalex.readers.clip import ClipReader

    folder = save_tiny_clip(tmp_path / "clip")
    images = np.random.default_rng(0).random((6, 32, 32, 3)).astype(np.float32)
    texts = [["a photo of a female nurse", "a photo of a male nurse"]] * 6
    sure = ClipReader.from_spec({"model": str(folder), "margin": 0.0}).read(
        images, "gender", ["female", "male"], texts
    )
    assert {r.value for r in sure} <= {"female", "male"}
    assert all(0 <= r.margin <= 1 for r in sure)
    never = ClipReader.from_spec({"model": str(folder), "margin": 1.0}).read(
        images, "gender", ["female", "male"], texts
    )
    assert {r.value for r in never} == {UNDETERMINED}
    swapped = ClipReader.from_spec({"model": str(folder), "margin": 0.0}).read(
        images, "gender", ["male", "female"], [t[::-1] for t in texts]
    )  # the same texts in the other order name the same value
    assert [r.value for r in swapped] == [r.value for r in sure]


@pytest.mark.slow
def test_the_workflow_checks_the_findings_and_labels_them(tiny_models, tmp_path):
    """A model config without `check:` says "not checked"; with the tiny CLIP reader, the check
    writes its per-sample table and agreement, and the findings carry the check's status, its
    agreement and the corrected shares."""
    clip = save_tiny_clip(tmp_path / "clip")
    rows = [
        ("nurse", "professions", "nurse"),
        ("pilot", "professions", "pilot"),
        ("woman", "genders", "woman"),
        ("man", "genders", "man"),
    ]
    work = tmp_path / "run"
    work.mkdir()
    sheet = write_sheet(work / "concepts.tsv", rows)
    cfg = workflow_config(
        tiny_models["sd1"],
        sheet.resolve(),
        sampling={"seeds": [0, 1, 2]},
        extraction={"readouts": ["content", "prompt", "text"]},
        concepts={"descriptors": {"targets": ["professions"], "axes": AXES}},
        analysis={"bootstrap": 50},
    )
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tree = work / tree_of(config)
    snakemake(work, config, targets=[f"{tree_of(config)}/findings/findings.tsv"], timeout=600)
    findings = pd.read_csv(tree / "findings/findings.tsv", sep="\t")
    assert (findings["check"] == NOT_CHECKED).all() and not findings["validated"].any()
    assert (
        findings["method_validated"].all() and findings["unvalidated_corrected_share"].isna().all()
    )
    assert not (tree / "check").exists()

    cfg["check"] = {"enabled": True, "model": str(clip), "seeds": 2, "margin": 0.0}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    snakemake(work, config, timeout=600)
    checked = pd.read_csv(tree / "check/samples.tsv", sep="\t")
    assert len(checked) == 2 * 1 * 2  # concepts x prompts x the first two seeds
    assert set(checked["seed"]) == {0, 1} and set(checked["reading"]) <= {"female", "male"}
    votes = pd.read_csv(tree / "content/analysis/descriptors/sample_votes.tsv", sep="\t")
    merged = checked.merge(votes, on=["concept", "axis", "prompt", "seed"])
    assert len(merged) == len(checked) and (merged["vote_x"] == merged["vote_y"]).all()
    table = pd.read_csv(tree / "check/agreement.tsv", sep="\t").iloc[0]
    assert table["determined"] == 4 and table["status"] == FAILED  # fewer than 20 readings
    assert (tree / "check/check.png").stat().st_size > 1000
    findings = pd.read_csv(tree / "findings/findings.tsv", sep="\t")
    assert (findings["check"] == FAILED).all() and not findings["validated"].any()
    assert (findings["check_samples"] == 4).all()
    assert np.allclose(findings["check_agreement"], table["agreement"])
    assert "unvalidated_corrected_share" in findings and "unvalidated_corrected_ci_low" in findings
