"""Defaults (bias) analysis on synthetic H-space differences with a planted gender mixture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scalex.analysis.defaults import BIAS_COLUMNS, correlate_with_reference, default_bias

D, T, P = 48, 3, 6
TEMPLATES = np.repeat(np.arange(3), 2)  # 3 templates x 2 terms
WEIGHTS = {"nurse": 0.9, "secretary": 0.75, "teacher": 0.6, "lawyer": 0.4, "ceo": 0.1}


def _truth(w: float) -> float:
    """score of unit(w u_a + (1 - w) u_b) for orthonormal u_a, u_b (noise-free)."""
    return (2 * w - 1) / np.hypot(w, 1 - w)


def _world(n_seeds: int, noise: float = 0.05, seed: int = 0) -> dict[str, np.ndarray]:
    """Concept diffs = planted mean + per-sample noise + a seed effect shared by all concepts."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((D, 3)))
    u_woman, u_man, u_other = basis.T
    seed_effect = 0.03 * rng.standard_normal((1, n_seeds, T, D))

    def concept(mean: np.ndarray) -> np.ndarray:
        mean = np.broadcast_to(mean, (T, D))
        x = mean[None, None] + seed_effect + noise * rng.standard_normal((P, n_seeds, T, D))
        return x.astype(np.float32)

    diffs = {"woman": concept(u_woman), "man": concept(u_man)}
    for name, w in WEIGHTS.items():
        diffs[name] = concept(w * u_woman + (1 - w) * u_man)
    # "flip" leans to woman at step 0 and to man at the last step; pooled it is balanced.
    w_step = np.array([0.9, 0.5, 0.1])[:, None]
    diffs["flip"] = concept(w_step * u_woman + (1 - w_step) * u_man + 0 * u_other)
    return diffs


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    diffs = _world(n_seeds=16)
    return default_bias(
        diffs,
        ("woman", "man"),
        templates={k: TEMPLATES for k in diffs},
        n_boot=400,
        level=0.99,
        seed=1,
    )


def test_columns_and_ranking(table):
    assert list(table.columns) == BIAS_COLUMNS
    pooled = table[table["step"] == "all"]
    ranked = [c for c in pooled["concept"] if c != "flip"]
    assert ranked == list(WEIGHTS)  # planted order, most woman-leaning first
    assert set(table["step"]) == {0, 1, 2, "all"}
    assert (table["n_prompts"] == P).all() and (table["n_seeds"] == 16).all()
    # rows of one concept are contiguous, pooled row first
    assert list(table["step"][:4]) == ["all", 0, 1, 2]


def test_scores_match_truth_and_cis_cover_it(table):
    pooled = table[table["step"] == "all"].set_index("concept")
    for name, w in WEIGHTS.items():
        row = pooled.loc[name]
        truth = _truth(w)
        assert np.sign(row["score"]) == np.sign(truth)
        assert row["score"] == pytest.approx(truth, abs=0.03)
        assert row["ci_low"] <= truth <= row["ci_high"]
        # u_woman is orthogonal to u_man, so |d_a - d_b| = sqrt(2).
        assert row["projection"] == pytest.approx(truth / np.sqrt(2), abs=0.03)
        assert row["projection_ci_low"] <= truth / np.sqrt(2) <= row["projection_ci_high"]
        assert row["ci_low"] <= row["score"] <= row["ci_high"]


def test_per_step_scores_follow_the_planted_schedule(table):
    flip = table[table["concept"] == "flip"].set_index("step")
    assert flip.loc[0, "score"] == pytest.approx(_truth(0.9), abs=0.03)
    assert flip.loc[1, "score"] == pytest.approx(0.0, abs=0.03)
    assert flip.loc[2, "score"] == pytest.approx(_truth(0.1), abs=0.03)
    assert flip.loc[0, "ci_low"] > 0 > flip.loc[2, "ci_high"]
    assert flip.loc["all", "ci_low"] < 0 < flip.loc["all", "ci_high"]


def test_cis_shrink_with_more_seeds():
    widths = []
    for n_seeds in (4, 32):
        diffs = _world(n_seeds=n_seeds, noise=0.15, seed=7)
        df = default_bias(diffs, ("woman", "man"), targets=list(WEIGHTS), n_boot=300, seed=0)
        pooled = df[df["step"] == "all"]
        widths.append(float((pooled["ci_high"] - pooled["ci_low"]).mean()))
    assert widths[1] < 0.6 * widths[0]


def test_reproducible_and_input_checks():
    diffs = _world(n_seeds=4)
    kw = dict(pair=("woman", "man"), targets=["nurse", "ceo"], n_boot=50, seed=3)
    a, b = default_bias(diffs, **kw), default_bias(diffs, **kw)
    pd.testing.assert_frame_equal(a, b)
    c = default_bias(diffs, **{**kw, "seed": 4})
    assert not np.allclose(a["ci_low"], c["ci_low"])
    np.testing.assert_allclose(a["score"], c["score"])  # point estimates do not depend on seed
    with pytest.raises(KeyError):
        default_bias(diffs, ("woman", "robot"))
    with pytest.raises(ValueError):
        default_bias(diffs, ("woman", "woman"))
    labelled = default_bias(diffs, step_names=[999, 500, 1], **kw)
    assert set(labelled["step"]) == {999, 500, 1, "all"}


def test_correlation_monotone_and_name_matching():
    x = np.linspace(-1, 1, 12)
    names = [f"job {i}" for i in range(12)]
    scores = pd.Series(x, index=names)
    ref = pd.Series(np.exp(3 * x), index=[n.upper().replace(" ", "-") for n in names])
    ref["extra occupation"] = 5.0  # only in the reference
    scores["not in reference"] = 0.3  # only in the scores
    ref["JOB-3"] = np.nan  # missing value: dropped
    out = correlate_with_reference(scores, ref, n_boot=200, seed=0)
    assert out["n"] == 11
    assert "job 3" not in out["concepts"] and "not in reference" not in out["concepts"]
    assert out["spearman_rho"] == pytest.approx(1.0)
    assert out["spearman_ci_low"] == pytest.approx(1.0)
    assert 0.7 < out["pearson_r"] < 0.99  # monotone but not linear
    assert out["pearson_ci_low"] <= out["pearson_r"] <= out["pearson_ci_high"]
    neg = correlate_with_reference(scores, -ref, n_boot=50, seed=0)
    assert neg["spearman_rho"] == pytest.approx(-1.0)


def test_correlation_noisy_reproducible_and_degenerate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(30)
    scores = pd.Series(x, index=[f"c{i}" for i in range(30)])
    ref = pd.Series(x + rng.standard_normal(30), index=[f"C{i}" for i in range(30)])
    a = correlate_with_reference(scores, ref, n_boot=300, seed=1)
    assert a == correlate_with_reference(scores, ref, n_boot=300, seed=1)
    assert a["pearson_ci_low"] < a["pearson_r"] < a["pearson_ci_high"]
    assert a["spearman_ci_low"] < a["spearman_rho"] < a["spearman_ci_high"]
    assert 0.4 < a["pearson_r"] < 0.95
    few = correlate_with_reference(scores[:2], ref, n_boot=10)
    assert few["n"] == 2 and np.isnan(few["pearson_r"])
    with pytest.raises(ValueError, match="coincide"):
        correlate_with_reference(pd.Series([1.0, 2.0], index=["Nurse", "nurse"]), ref)
