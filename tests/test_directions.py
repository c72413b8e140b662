"""Concept directions: seed-paired differences, unit norm, split-half stability."""

from __future__ import annotations

import numpy as np
import pytest
from scalex.directions import (
    concept_direction,
    flatten_features,
    paired_differences,
    split_half_stability,
)
from scalex.errors import DirectionError
from scalex.vectors import unit


def test_paired_differences_subtract_the_seed_matched_baseline_mean():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)  # (P, S, T, C)
    base = rng.normal(size=(4, 3, 4, 5)).astype(np.float32)  # (B, S, T, C)
    diffs = paired_differences(acts, base)
    assert diffs.shape == (2, 3, 4, 5)
    for p in range(2):
        for s in range(3):
            expected = acts[p, s] - base[:, s].mean(axis=0)
            np.testing.assert_allclose(diffs[p, s], expected, rtol=1e-6, atol=1e-6)
    # not paired with another seed's baseline
    assert not np.allclose(diffs[0, 0], acts[0, 0] - base[:, 1].mean(axis=0))


def test_paired_differences_of_full_maps_flatten_features():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(1, 2, 3, 4, 2, 2)).astype(np.float16)
    base = rng.normal(size=(2, 2, 3, 4, 2, 2)).astype(np.float16)
    diffs = paired_differences(acts, base)
    assert diffs.shape == (1, 2, 3, 16) and diffs.dtype == np.float32
    np.testing.assert_allclose(
        diffs, flatten_features(acts) - flatten_features(base).mean(axis=0, keepdims=True)
    )


def test_paired_differences_shape_mismatch():
    with pytest.raises(DirectionError, match="seeds, steps or features"):
        paired_differences(np.zeros((1, 3, 2, 4)), np.zeros((1, 2, 2, 4)))


def test_seed_noise_cancels():
    """A shared per-seed offset (the initial noise) drops out of the direction."""
    rng = np.random.default_rng(2)
    noise = 50 * rng.normal(size=(1, 6, 2, 16))
    concept_shift = np.zeros(16)
    concept_shift[3] = 1.0
    acts = noise + concept_shift + 0.01 * rng.normal(size=(3, 6, 2, 16))
    base = noise + 0.01 * rng.normal(size=(2, 6, 2, 16))
    d = concept_direction(paired_differences(acts, base), "c")
    assert d.aggregate[3] > 0.99
    assert d.per_step.shape == (2, 16) and d.mean_diff.shape == (2, 16)
    assert d.n_prompts == 3 and d.n_seeds == 6


def test_unit_norm():
    rng = np.random.default_rng(3)
    diffs = rng.normal(size=(3, 4, 5, 7)).astype(np.float32) + 2.0
    d = concept_direction(diffs, "c")
    np.testing.assert_allclose(np.linalg.norm(d.per_step, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d.aggregate), 1.0, rtol=1e-5)
    mean = diffs.mean(axis=(0, 1))
    np.testing.assert_allclose(d.mean_diff, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        d.per_step, mean / np.linalg.norm(mean, axis=-1, keepdims=True), rtol=1e-5
    )
    agg = mean.mean(axis=0)
    np.testing.assert_allclose(d.aggregate, agg / np.linalg.norm(agg), rtol=1e-5)
    assert d.per_step.dtype == np.float32 and d.aggregate.dtype == np.float32


def test_zero_difference_raises():
    acts = np.ones((2, 3, 2, 4), dtype=np.float32)
    diffs = paired_differences(acts, acts.copy())
    with pytest.raises(DirectionError, match="'same-as-baseline'"):
        concept_direction(diffs, "same-as-baseline")
    with pytest.raises(DirectionError, match="zero length"):
        unit(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_split_half_on_planted_data():
    rng = np.random.default_rng(4)
    signal = np.zeros(32)
    signal[0] = 1.0
    strong = signal + 0.05 * rng.normal(size=(2, 8, 3, 32))
    pure_noise = rng.normal(size=(2, 8, 3, 32))
    assert split_half_stability(strong) > 0.95
    assert abs(split_half_stability(pure_noise)) < 0.6
    # the halves are the even and the odd seeds
    halves = np.zeros((1, 4, 1, 2))
    halves[:, 0::2, :, 0] = 1.0
    halves[:, 1::2, :, 1] = 1.0
    assert split_half_stability(halves) == pytest.approx(0.0, abs=1e-9)
    halves[:, 1::2, :, 1] = 0.0
    halves[:, 1::2, :, 0] = -2.0
    assert split_half_stability(halves) == pytest.approx(-1.0)
    assert np.isnan(split_half_stability(strong[:, :1]))
    assert concept_direction(strong, "c").split_half == pytest.approx(split_half_stability(strong))
