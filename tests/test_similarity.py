"""Cosine similarity matrices and unsupervised clusters of concept directions."""

from __future__ import annotations

import numpy as np
import pytest
from scalex.similarity import cluster_concepts, remove_axes
from scalex.vectors import cosine_matrix


def test_cosine_matrix_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 10))
    sim = cosine_matrix(x * rng.uniform(0.1, 10, size=(6, 1)))  # scale does not matter
    assert sim.shape == (6, 6) and sim.dtype == np.float32
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sim, sim.T, atol=1e-7)
    assert (sim <= 1.0).all() and (sim >= -1.0).all()
    assert np.linalg.eigvalsh(sim.astype(np.float64)).min() > -1e-5  # a Gram matrix
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(sim, unit @ unit.T, atol=1e-6)
    pair = cosine_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    np.testing.assert_allclose(pair, [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], atol=1e-7)


def test_cosine_matrix_stacks():
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(3, 5, 4))  # (T, N, D)
    sims = cosine_matrix(stack)
    assert sims.shape == (3, 5, 5)
    for t in range(3):
        np.testing.assert_allclose(sims[t], cosine_matrix(stack[t]), atol=1e-7)


def _planted(sizes, dim=64, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, len(sizes))))[0].T  # orthogonal centres
    points, labels = [], []
    for k, n in enumerate(sizes):
        points.append(centres[k] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim))
        labels += [k] * n
    order = rng.permutation(sum(sizes))
    return np.concatenate(points)[order], np.array(labels)[order]


def _same_partition(a, b):
    return all((a[i] == a[j]) == (b[i] == b[j]) for i in range(len(a)) for j in range(len(a)))


@pytest.mark.parametrize(("sizes", "seed"), [((4, 5, 3), 0), ((3, 3, 3, 3, 3), 1), ((6, 6), 2)])
def test_cluster_concepts_recovers_planted_clusters(sizes, seed):
    x, truth = _planted(sizes, seed=seed)
    result = cluster_concepts(cosine_matrix(x), k_min=2, k_max=8)
    assert result.k == len(sizes)
    assert sorted(np.unique(result.labels)) == list(range(1, len(sizes) + 1))
    assert _same_partition(result.labels, truth)
    assert max(result.silhouette, key=result.silhouette.get) == len(sizes)
    assert set(result.silhouette) == set(range(2, min(8, len(truth) - 1) + 1))
    assert result.linkage.shape == (len(truth) - 1, 4)


def test_cluster_k_range_is_respected():
    x, _ = _planted((3, 3, 3, 3), seed=3)
    result = cluster_concepts(cosine_matrix(x), k_min=2, k_max=3)
    assert result.k in (2, 3) and set(result.silhouette) == {2, 3}
    assert cluster_concepts(cosine_matrix(x), k_min=5, k_max=6).k in (5, 6)


@pytest.mark.parametrize("method", ["average", "complete", "single", "weighted"])
def test_cluster_linkages(method):
    x, truth = _planted((4, 4, 4), seed=4, spread=0.05)
    result = cluster_concepts(cosine_matrix(x), method=method)
    assert result.k == 3 and _same_partition(result.labels, truth)


def test_cluster_tiny_inputs():
    one = cluster_concepts(np.ones((2, 2), dtype=np.float32))
    assert one.k == 1 and one.labels.tolist() == [1, 1] and one.silhouette == {}


def test_remove_axes_projects_out_the_span():
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(2, 16))
    d = rng.normal(size=(5, 16))
    out = remove_axes(d, axes)
    np.testing.assert_allclose(out @ axes.T, 0.0, atol=1e-5)
    # what is orthogonal to the axes is kept
    q, _ = np.linalg.qr(axes.T)
    np.testing.assert_allclose(out, d - (d @ q) @ q.T, atol=1e-5)
    assert remove_axes(d, np.zeros((0, 16))) is d


def test_remove_axes_reveals_structure_hidden_by_a_shared_axis():
    """Two groups differ on a weak axis while a strong identity axis mixes them."""
    rng = np.random.default_rng(1)
    group = np.eye(8)[:2]  # two group directions
    identity = np.eye(8)[2]
    labels = np.repeat([0, 1], 6)
    weights = np.tile([3.0, -3.0, 3.0, -3.0, 3.0, -3.0], 2)  # identity leaning crosses groups
    d = group[labels] + weights[:, None] * identity + 0.05 * rng.normal(size=(12, 8))
    raw = cluster_concepts(cosine_matrix(d), k_min=2, k_max=2).labels
    cleaned = cluster_concepts(
        cosine_matrix(remove_axes(d, identity[None])), k_min=2, k_max=2
    ).labels
    same = lambda a, b: (a == b).all() or (a == 3 - b).all()  # noqa: E731
    assert not same(raw, labels + 1)
    assert same(cleaned, labels + 1)


def test_null_answers_one_cluster_without_structure():
    """Directions drawn from one isotropic cloud have no clusters: the null says k = 1."""
    from scalex.similarity import cluster_with_null

    rng = np.random.default_rng(0)
    cloud = rng.standard_normal((24, 32)) + 3.0  # a shared offset, no groups
    result = cluster_with_null(cloud, k_min=2, k_max=8, permutations=99, seed=1)
    assert result.k == 1 and set(result.labels) == {1}
    assert result.p_value > 0.05
    assert result.silhouette  # the best split is still reported


def test_null_keeps_real_clusters():
    from scalex.similarity import cluster_with_null

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 32)) * 3
    vectors = np.repeat(centres, 8, axis=0) + 0.5 * rng.standard_normal((24, 32))
    result = cluster_with_null(vectors, k_min=2, k_max=8, permutations=99, seed=1)
    assert result.k == 3 and result.p_value <= 0.01
    truth = np.repeat([0, 1, 2], 8)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_null_is_reproducible_and_optional():
    from scalex.similarity import cluster_with_null

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((12, 16))
    a = cluster_with_null(vectors, permutations=20, seed=5)
    b = cluster_with_null(vectors, permutations=20, seed=5)
    np.testing.assert_array_equal(a.null_silhouettes, b.null_silhouettes)
    skipped = cluster_with_null(vectors, permutations=0)
    assert skipped.p_value is None and skipped.k >= 2


def test_silhouettes_equal_sklearn():
    from scalex.similarity import silhouettes
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(3)
    for n in (4, 40, 200):
        d = rng.random((n, n))
        d = (d + d.T) / 2
        np.fill_diagonal(d, 0.0)
        labelings = [rng.integers(1, 4, size=n) for _ in range(3)]
        labelings.append(np.r_[np.ones(n - 1, dtype=int), 2])  # a singleton cluster
        want = [silhouette_score(d, lab, metric="precomputed") for lab in labelings]
        np.testing.assert_allclose(silhouettes(d, labelings), want, atol=1e-12)


def test_nearest_neighbours_equal_brute_force_in_blocks():
    from scalex.similarity import nearest_neighbours
    from scalex.vectors import cosine_matrix

    vectors = np.random.default_rng(4).normal(size=(257, 16))
    index, cosine = nearest_neighbours(vectors, k=5, block=50)
    full = cosine_matrix(vectors)
    np.fill_diagonal(full, -np.inf)
    want = np.argsort(-full, axis=1, kind="stable")[:, :5]
    assert (index == want).all()
    np.testing.assert_allclose(cosine, np.take_along_axis(full, want, 1), atol=1e-6)
    assert nearest_neighbours(vectors[:1], k=5)[0].shape == (1, 0)


def test_k_range_grows_with_the_concepts():
    from scalex.similarity import default_k_max

    assert default_k_max(10) == 12 and default_k_max(144) == 12
    assert default_k_max(900) == 30 and default_k_max(10**6) == 60


def _planted_vectors(n_per: int, k: int, dim: int = 32, noise: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    truth = np.repeat(np.arange(k), n_per)
    return centres[truth] + noise * rng.normal(size=(len(truth), dim)), truth


def test_clusters_beyond_max_exact_come_from_a_sample_and_centroids():
    from scalex.similarity import cluster_with_null
    from sklearn.metrics import adjusted_rand_score

    vectors, truth = _planted_vectors(150, 4)  # 600 concepts, tree on 120 of them
    result = cluster_with_null(vectors, k_max=None, permutations=19, max_exact=120,
                               null_sample=60)  # fmt: skip
    assert len(result.sample) == 120 and len(result.labels) == 600
    assert result.k == 4 and result.p_value <= 0.05
    assert adjusted_rand_score(truth, result.labels) == 1.0
    again = cluster_with_null(vectors, k_max=None, permutations=19, max_exact=120,
                              null_sample=60)  # fmt: skip
    assert (again.labels == result.labels).all()  # seeded


def test_no_structure_at_scale_is_still_one_cluster():
    from scalex.similarity import cluster_with_null

    vectors = np.random.default_rng(5).normal(size=(600, 32))
    result = cluster_with_null(vectors, permutations=19, max_exact=120, null_sample=60)
    assert result.k == 1 and (result.labels == 1).all() and len(result.labels) == 600
