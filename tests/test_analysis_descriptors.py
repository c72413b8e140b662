"""Descriptor ranking on synthetic concepts whose default descriptor is planted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scalex.analysis.descriptors import DESCRIPTOR_COLUMNS, descriptor_alignment, top_descriptors

D, S, T, P = 40, 12, 2, 6  # 6 prompts: enough groups to resample
AXES = {"age": ["young", "old"], "mood": ["happy", "sad", "calm"]}
# How much of each descriptor the plain concept already carries: the planted default.
PLANTED = {
    "nurse": {"young": 0.8, "old": 0.1, "happy": 0.1, "sad": 0.7, "calm": 0.2},
    "judge": {"young": 0.0, "old": 0.9, "happy": 0.5, "sad": 0.0, "calm": 0.5},  # mood: a tie
}


def _world(seed: int = 0) -> dict[str, np.ndarray]:
    """plain c = u_c + sum_v m_v u_v;  described "v-c" = u_c + u_v (orthonormal u's) + noise."""
    rng = np.random.default_rng(seed)
    values = [v for vs in AXES.values() for v in vs]
    basis, _ = np.linalg.qr(rng.standard_normal((D, len(values) + len(PLANTED))))
    u = dict(zip(values + list(PLANTED), basis.T, strict=True))

    def concept(mean: np.ndarray) -> np.ndarray:
        noise = 0.04 * rng.standard_normal((P, S, T, D))
        return (mean[None, None, None] + noise).astype(np.float32)

    diffs = {}
    for c, mix in PLANTED.items():
        diffs[c] = concept(u[c] + sum(m * u[v] for v, m in mix.items()))
        for v in values:
            diffs[f"{v}-{c}"] = concept(u[c] + u[v])
    return diffs


def _truth(c: str, v: str) -> float:
    mix = PLANTED[c]
    return (1 + mix[v]) / (np.sqrt(1 + sum(m * m for m in mix.values())) * np.sqrt(2))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return descriptor_alignment(_world(), list(PLANTED), AXES, n_boot=300, seed=2)


def test_columns_and_order(table):
    assert list(table.columns) == DESCRIPTOR_COLUMNS
    assert len(table) == 2 * (2 + 3)
    blocks = list(dict.fromkeys(zip(table["concept"], table["axis"], strict=True)))
    assert blocks == [("nurse", "age"), ("nurse", "mood"), ("judge", "age"), ("judge", "mood")]
    for _, grp in table.groupby(["concept", "axis"]):
        assert list(grp["rank"]) == list(range(1, len(grp) + 1))
        assert grp["alignment"].is_monotonic_decreasing


def test_planted_default_recovered(table):
    top = top_descriptors(table).set_index(["concept", "axis"])
    assert top.loc[("nurse", "age"), "descriptor"] == "young"
    assert top.loc[("nurse", "mood"), "descriptor"] == "sad"
    assert top.loc[("judge", "age"), "descriptor"] == "old"
    for key in [("nurse", "age"), ("nurse", "mood"), ("judge", "age")]:
        assert top.loc[key, "clear"]
        assert top.loc[key, "p_top1"] > 0.95
    # judge's mood is a planted tie between happy and calm: no clear winner
    assert not top.loc[("judge", "mood"), "clear"]
    judge_mood = table[(table["concept"] == "judge") & (table["axis"] == "mood")]
    assert set(judge_mood[judge_mood["rank"] <= 2]["descriptor"]) == {"happy", "calm"}


def test_alignment_values_margins_and_cis(table):
    for row in table.itertuples():
        truth = _truth(row.concept, row.descriptor)
        assert row.alignment == pytest.approx(truth, abs=0.02)
        assert row.ci_low <= row.alignment <= row.ci_high
    nurse_age = table[(table["concept"] == "nurse") & (table["axis"] == "age")].set_index(
        "descriptor"
    )
    gap = nurse_age.loc["young", "alignment"] - nurse_age.loc["old", "alignment"]
    assert nurse_age.loc["young", "margin"] == pytest.approx(gap)
    assert nurse_age.loc["old", "margin"] == pytest.approx(-gap)
    assert nurse_age.loc["young", "margin_ci_low"] > 0 > nurse_age.loc["old", "margin_ci_high"]
    assert nurse_age["p_top1"].sum() == pytest.approx(1.0)


def test_name_format_steps_and_errors():
    diffs = _world(seed=1)
    renamed = {k.replace("-", " "): v for k, v in diffs.items()}
    a = descriptor_alignment(diffs, ["nurse"], {"age": AXES["age"]}, n_boot=20, steps=[1])
    b = descriptor_alignment(
        renamed,
        ["nurse"],
        {"age": AXES["age"]},
        name_format="{descriptor} {concept}",
        n_boot=20,
        steps=[1],
    )
    # Same point estimates; the CIs differ because template draws are keyed by concept name.
    cols = ["concept", "descriptor", "alignment", "rank"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    with pytest.raises(KeyError, match="old-judge"):
        descriptor_alignment(
            {k: v for k, v in diffs.items() if k != "old-judge"}, ["judge"], {"age": AXES["age"]}
        )
    single = descriptor_alignment(diffs, ["nurse"], {"age": ["young"]}, n_boot=20)
    assert single["rank"].tolist() == [1] and np.isnan(single["margin"].iloc[0])


def test_votes_count_the_samples_nearest_each_value():
    """Each sample votes for the described variant it lies nearest to at the same template and
    seed: a concept whose samples are copies of "female X" for 5 of 8 seeds and of "male X" for
    the rest has a female share of 5/8, whatever common offset (a look) all three share."""
    from scalex.analysis.descriptors import descriptor_votes

    rng = np.random.default_rng(0)
    shape = (2, 8, 3, 16)  # prompts, seeds, steps, features
    look = rng.normal(size=shape[-1]) * 10  # shared by the concept and its variants
    female = rng.normal(size=shape) + look
    male = rng.normal(size=shape) + look
    is_female = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
    concept = np.where(is_female[None, :, None, None], female, male)
    concept = concept + 0.05 * rng.normal(size=shape)
    diffs = {"nurse": concept, "female-nurse": female, "male-nurse": male}
    table = descriptor_votes(diffs, ["nurse"], {"gender": ["female", "male"]}, n_boot=200)
    share = table.set_index("descriptor")["share"]
    assert share["female"] == pytest.approx(5 / 8) and share["male"] == pytest.approx(3 / 8)
    row = table.set_index("descriptor").loc["female"]
    assert row["ci_low"] <= 5 / 8 <= row["ci_high"] and row["samples"] == 16
    with pytest.raises(ValueError, match="share the concept's templates and seeds"):
        descriptor_votes(
            diffs | {"male-nurse": male[:, :4]}, ["nurse"], {"gender": ["female", "male"]}
        )
    with pytest.raises(KeyError, match="old-nurse"):
        descriptor_votes(diffs, ["nurse"], {"age": ["old", "young"]})


def test_sample_votes_name_each_sample_and_shares_resample_templates_when_there_are_five():
    """Per-sample votes carry prompt, template and seed, so a sample can be checked against its
    own image; with six templates the share's CI resamples templates as well as seeds, and a
    template whose samples all vote one way widens it."""
    from scalex.analysis.descriptors import sample_votes, vote_shares

    rng = np.random.default_rng(1)
    shape = (6, 10, 2, 8)
    female, male = rng.normal(size=shape), rng.normal(size=shape)
    # templates 0-2: every sample female; 3-5: every sample male
    is_female = (np.arange(6) < 3)[:, None, None, None]
    concept = np.where(is_female, female, male) + 0.01 * rng.normal(size=shape)
    diffs = {"nurse": concept, "female-nurse": female, "male-nurse": male}
    templates = {"nurse": np.arange(6)}
    axes = {"gender": ["female", "male"]}
    samples = sample_votes(diffs, ["nurse"], axes, templates)
    assert len(samples) == 60
    row = samples[(samples["prompt_index"] == 4) & (samples["seed_index"] == 7)].iloc[0]
    assert row["vote"] == "male" and row["template_index"] == 4
    shares = vote_shares(samples, axes, n_boot=300).set_index("descriptor")
    assert shares.loc["female", "share"] == pytest.approx(0.5)
    assert shares.loc["female", "resampled"] == "seeds+templates"
    # seeds alone could not move a share that is the same for every seed
    assert shares.loc["female", "ci_high"] - shares.loc["female", "ci_low"] > 0.2
    two = vote_shares(samples[samples["template_index"] < 2], axes, n_boot=50)
    assert (two["resampled"] == "seeds").all()
