"""Directions, cosines and the paired bootstrap, checked against a slow, literal reference."""

from __future__ import annotations

import numpy as np
import pytest
from scalex.analysis.stats import (
    ConceptData,
    PairedBootstrap,
    as_concepts,
    bootstrap_directions,
    bootstrap_dots,
    cosine_from_dots,
    direction,
    percentile_ci,
    template_groups,
)
from scalex.vectors import cosine


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _slow_replicate(
    boot: PairedBootstrap, key: str, diffs: np.ndarray, templates, b: int, steps=None
) -> np.ndarray:
    """Literal bootstrap: gather the resampled prompts and seeds, average, normalise."""
    groups = template_groups(templates, diffs.shape[0])
    drawn_groups = boot.template_indices(key, int(groups.max()) + 1)[b]
    prompts = np.concatenate([np.flatnonzero(groups == g) for g in drawn_groups])
    seeds = boot.seed_indices[b]
    sample = diffs[prompts][:, seeds]
    if steps is not None:
        sample = sample[:, :, steps]
    per_step = [_unit(sample[:, :, t].mean(axis=(0, 1))) for t in range(sample.shape[2])]
    return np.stack([*per_step, _unit(sample.mean(axis=(0, 1, 2)))])


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    diffs = {
        "x": rng.standard_normal((5, 4, 3, 7)).astype(np.float32) + 0.5,
        "y": rng.standard_normal((4, 4, 3, 7)).astype(np.float32) - 0.2,
        "z": rng.standard_normal((3, 4, 3, 7)).astype(np.float32),
    }
    templates = {"x": np.array([0, 0, 1, 2, 2]), "y": np.array([7, 7, 7, 7])}  # z: none
    return diffs, templates


def test_direction_definition_and_steps():
    rng = np.random.default_rng(0)
    diffs = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    d = direction(diffs)
    assert d.dtype == np.float32 and d.shape == (6,)
    np.testing.assert_allclose(np.linalg.norm(d), 1, atol=1e-6)
    np.testing.assert_allclose(d, _unit(diffs.mean(axis=(0, 1, 2))), atol=1e-6)
    np.testing.assert_allclose(direction(diffs, 2), _unit(diffs[:, :, 2].mean(axis=(0, 1))), 1e-5)
    np.testing.assert_allclose(
        direction(diffs, [1, 3]), _unit(diffs[:, :, [1, 3]].mean(axis=(0, 1, 2))), atol=1e-6
    )
    with pytest.raises(ValueError, match="zero vector"):
        direction(np.zeros((2, 2, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        direction(np.ones((2, 3)))
    with pytest.raises(ValueError, match="out of range"):
        direction(diffs, 5)


def test_cosine():
    assert cosine(np.array([1.0, 0]), np.array([2.0, 0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0]), np.array([0, -3.0])) == pytest.approx(0.0)
    out = cosine(np.array([[1.0, 0], [0, 1]]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(out, [2**-0.5, 2**-0.5])
    with pytest.raises(ValueError):
        cosine(np.zeros(3), np.ones(3))


def test_percentile_ci():
    lo, hi = percentile_ci(np.arange(101.0), level=0.9)
    assert (lo, hi) == pytest.approx((5.0, 95.0))
    with pytest.raises(ValueError):
        percentile_ci(np.arange(3.0), level=1.0)


def test_template_groups():
    np.testing.assert_array_equal(template_groups(np.array([4, 4, 9]), 3), [0, 0, 1])
    np.testing.assert_array_equal(template_groups(np.array([2, 2, 2]), 3), [0, 1, 2])
    np.testing.assert_array_equal(template_groups(None, 2), [0, 1])
    with pytest.raises(ValueError):
        template_groups(np.array([0, 1]), 3)


def test_vectorised_directions_equal_slow_loop(small):
    diffs, templates = small
    boot = PairedBootstrap(n_seeds=4, n_boot=25, seed=11)
    for key in diffs:
        concept = ConceptData(diffs[key], templates.get(key))
        point, reps = bootstrap_directions(boot, key, concept)
        assert reps.shape == (25, 4, 7)
        full = np.concatenate(
            [[direction(diffs[key], t) for t in range(3)], [direction(diffs[key])]]
        )
        np.testing.assert_allclose(point, full, atol=1e-6)
        for b in range(25):
            slow = _slow_replicate(boot, key, diffs[key], templates.get(key), b)
            np.testing.assert_allclose(reps[b], slow, atol=2e-6)


def test_bootstrap_dots_equal_slow_loop_chunked_and_step_subset(small):
    diffs, templates = small
    concepts = as_concepts(diffs, templates)
    boot = PairedBootstrap(n_seeds=4, n_boot=30, seed=5)
    for max_bytes, steps in [(10**9, None), (1, None), (300, [0, 2])]:
        dots = bootstrap_dots(boot, concepts, [("x", "y"), ("z", "x")], steps, max_bytes)
        for x, y in [("x", "y"), ("x", "z")]:
            got = cosine_from_dots(dots, x, y)
            sx = [_slow_replicate(boot, x, diffs[x], templates.get(x), b, steps) for b in range(30)]
            sy = [_slow_replicate(boot, y, diffs[y], templates.get(y), b, steps) for b in range(30)]
            want = np.einsum("btd,btd->bt", np.stack(sx), np.stack(sy))
            np.testing.assert_allclose(got[1:], want, atol=1e-5)
            stp = range(3) if steps is None else steps
            d_x = [direction(diffs[x], t) for t in stp] + [direction(diffs[x], steps)]
            d_y = [direction(diffs[y], t) for t in stp] + [direction(diffs[y], steps)]
            np.testing.assert_allclose(got[0], np.sum(np.multiply(d_x, d_y), axis=1), atol=1e-6)


def test_bootstrap_is_reproducible_and_paired_across_concepts():
    a = PairedBootstrap(n_seeds=6, n_boot=50, seed=1)
    b = PairedBootstrap(n_seeds=6, n_boot=50, seed=1)
    c = PairedBootstrap(n_seeds=6, n_boot=50, seed=2)
    np.testing.assert_array_equal(a.seed_indices, b.seed_indices)
    np.testing.assert_array_equal(a.template_indices("nurse", 6), b.template_indices("nurse", 6))
    assert not np.array_equal(a.seed_indices, c.seed_indices)
    assert not np.array_equal(a.template_indices("nurse", 6), c.template_indices("nurse", 6))
    # one template resample per replicate, shared by every concept (paired, like the seeds)
    np.testing.assert_array_equal(a.template_indices("nurse", 6), a.template_indices("doctor", 6))
    assert len({tuple(r) for r in a.template_indices("nurse", 6)}) > 1
    # fewer than five template groups: seeds only, and the tables say so
    np.testing.assert_array_equal(a.template_indices("nurse", 4), np.tile(np.arange(4), (50, 1)))
    assert PairedBootstrap.resampled(4) == "seeds"
    assert PairedBootstrap.resampled(5) == "seeds+templates"
    w = a.weights("nurse", np.array([0, 0, 1, 2, 3, 4, 5]))
    assert w.shape == (51, 6, 6)
    np.testing.assert_array_equal(w[0], 1)
    # Counts: every replicate draws G groups x S seeds, i.e. sum of counts = G * S.
    np.testing.assert_array_equal(w[1:].sum(axis=(1, 2)), 6 * 6)


def test_bootstrap_dots_checks_inputs(small):
    diffs, templates = small
    concepts = as_concepts(diffs, templates)
    with pytest.raises(ValueError, match="seeds"):
        bootstrap_dots(PairedBootstrap(n_seeds=3, n_boot=5), concepts, [("x", "y")])
    with pytest.raises(KeyError):
        bootstrap_dots(PairedBootstrap(n_seeds=4, n_boot=5), concepts, [("x", "nope")])
    bad = dict(diffs, w=np.zeros((2, 4, 3, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="share"):
        bootstrap_dots(PairedBootstrap(n_seeds=4, n_boot=5), as_concepts(bad), [("x", "w")])
