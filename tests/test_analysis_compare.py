"""The statistics of a two-model comparison: paired share differences, BH q-values, flags and
cluster changes, on votes whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scalex.analysis.compare import (
    benjamini_hochberg,
    bootstrap_p_value,
    cluster_changes,
    pair_samples,
    share_differences,
)

AXES = {"gender": ["female", "male"]}


def votes(shares: dict[str, float], n_seeds: int = 32, n_prompts: int = 2, seed: int = 0):
    """sample_votes rows: each concept's samples vote ``female`` with the given probability,
    drawn per (prompt, seed) from ``seed``."""
    rng = np.random.default_rng(seed)
    rows = []
    for concept, p in shares.items():
        for i in range(n_prompts):
            for s in range(n_seeds):
                rows.append(
                    {
                        "concept": concept,
                        "axis": "gender",
                        "prompt": f"a photo {i} of a {concept}",
                        "seed": s,
                        "prompt_index": i,
                        "template_index": i,
                        "seed_index": s,
                        "vote": "female" if rng.random() < p else "male",
                    }
                )
    return pd.DataFrame(rows)


def test_benjamini_hochberg_by_hand():
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(q, [0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([0.9, 0.95]).tolist() == [0.95, 0.95]
    assert benjamini_hochberg([]).size == 0


def test_bootstrap_p_value_counts_the_far_side():
    reps = np.array([0.1, 0.2, -0.1, 0.3])
    assert bootstrap_p_value(reps, 0.2) == pytest.approx(2 * (1 + 1) / 5)
    assert bootstrap_p_value(-reps, -0.2) == pytest.approx(2 * (1 + 1) / 5)
    assert bootstrap_p_value(reps, 0.0) == 1.0
    assert bootstrap_p_value(np.full(999, 0.5), 0.5) == pytest.approx(2 / 1000)


def test_a_real_change_is_flagged_and_an_unchanged_model_is_not():
    base = votes({"nurse": 0.95, "carpenter": 0.05, "chef": 0.3, "lawyer": 0.5})
    new = base.copy()
    # the fine-tune moves nurse to 0.5: half of its female votes turn male
    nurse = new.index[(new["concept"] == "nurse") & (new["vote"] == "female")]
    new.loc[nurse[::2], "vote"] = "male"
    table = share_differences(base, new, AXES, n_boot=500).set_index("concept")
    assert table.loc["nurse", "flagged"] and table.loc["nurse", "difference"] < -0.4
    assert table.loc["nurse", "ci_high"] < 0
    assert not table.drop("nurse")["flagged"].any()
    assert (table.drop("nurse")["difference"] == 0).all()
    same = share_differences(base, base.copy(), AXES, n_boot=200)
    assert not same["flagged"].any() and (same["p_value"] == 1).all()


def test_a_small_paired_change_is_resolved():
    """A small change on top of large seed-to-seed variation: the paired CI excludes 0."""
    base = votes({"baker": 0.5}, n_seeds=64)
    new = base.copy()
    rows = new.index[new["vote"] == "male"][:12]  # 12 of 128 samples turn female
    new.loc[rows, "vote"] = "female"
    row = share_differences(base, new, AXES, n_boot=1000).iloc[0]
    assert row["difference"] == pytest.approx(12 / 128)
    assert row["ci_low"] > 0 and row["flagged"]


def test_unpaired_samples_are_refused_by_name():
    base = votes({"nurse": 0.9})
    new = base[base["seed"] != 3]
    with pytest.raises(ValueError, match=r"seed position 3, only in the base model"):
        share_differences(base, new, AXES)


def test_cluster_changes_ignore_label_names_and_name_the_movers():
    base = pd.Series({"a": 1, "b": 1, "c": 2, "d": 2, "e": 3, "f": 3})
    relabelled = base.map({1: 7, 2: 5, 3: 9})
    assert cluster_changes(base, relabelled) == (1.0, [])
    moved = relabelled.copy()
    moved["c"] = 7
    ari, movers = cluster_changes(base, moved)
    assert ari < 1 and movers == ["c"]
    with pytest.raises(ValueError, match="different concepts"):
        cluster_changes(base, base.drop("a"))


def described(rng, n_prompts=2, n_seeds=16, dim=12, lean=None):
    """Paired differences of concepts and their described variants (P, S, 1, D): each concept
    lies near its ``lean`` variant ("female-nurse") and far from the other."""
    lean = lean or {}
    axis = rng.normal(size=dim)
    diffs, templates = {}, {}
    for concept, value in lean.items():
        shared = rng.normal(size=(n_prompts, n_seeds, 1, dim))
        female = shared + axis + 0.3 * rng.normal(size=shared.shape)
        male = shared - axis + 0.3 * rng.normal(size=shared.shape)
        near = female if value == "female" else male
        diffs[concept] = near + 0.3 * rng.normal(size=shared.shape)
        diffs[f"female-{concept}"], diffs[f"male-{concept}"] = female, male
    for name in diffs:
        templates[name] = np.arange(n_prompts)
    return diffs, templates


def test_a_flipped_descriptor_ranking_is_flagged_and_an_unchanged_one_is_not():
    from scalex.analysis.compare import margin_differences
    from scalex.analysis.stats import as_concepts

    diffs, templates = described(np.random.default_rng(0), lean={"nurse": "female", "chef": "male"})
    flipped = dict(diffs)
    # the new model draws nurses as men: the plain concept moves next to "male nurse"
    flipped["nurse"] = diffs["male-nurse"] + 0.3 * np.random.default_rng(1).normal(
        size=diffs["nurse"].shape
    )
    axes = {"gender": ["female", "male"]}
    table = margin_differences(
        as_concepts(diffs, templates), as_concepts(flipped, templates), ["nurse", "chef"], axes
    ).set_index("concept")
    nurse, chef = table.loc["nurse"], table.loc["chef"]
    assert (nurse["top_base"], nurse["top_new"]) == ("female", "male")
    assert nurse["base"] > 0 > nurse["new"] and nurse["ci_high"] < 0 and nurse["flagged"]
    assert chef["top_base"] == chef["top_new"] == "male"
    assert chef["difference"] == 0 and chef["p_value"] == 1 and not chef["flagged"]


def test_samples_pair_by_seed_position_for_a_null_check_under_other_seeds():
    """compare.seeds: the same model under other seeds pairs sample i with sample i."""
    base = votes({"nurse": 0.9}, seed=0)
    other = votes({"nurse": 0.9}, seed=1)
    other["seed"] = other["seed"] + 16
    paired = pair_samples(base, other)
    assert len(paired) == len(base)
    assert (paired["seed_new"] - paired["seed_base"] == 16).all()
