"""Cosine similarity between concept directions, and unsupervised clusters of concepts.

Clustering is hierarchical on the cosine distance ``1 - cos`` (average linkage by default), with
the number of clusters chosen by the silhouette score, since SCALEX asks for structure without
labels: nothing tells the method how many groups there are.

At scale (tens of thousands of concepts) nothing here holds an N x N matrix: neighbours are found
in row blocks, and hierarchical clustering runs on a seeded sample of at most ``max_exact``
concepts whose clusters' centroids then label every other concept (the nearest by cosine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from scalex.vectors import cosine_matrix, unit

#: clustering's default k range grows as sqrt(N) between these bounds
K_MAX_FLOOR, K_MAX_CEILING = 12, 60


def nearest_neighbours(
    vectors: np.ndarray, k: int = 10, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar other rows of each row: (indices, cosines), each (N, k).

    Row blocks of ``block`` x N keep memory linear in N. Ties go to the lower index."""
    rows_unit = unit(vectors, zero="keep")
    n = len(rows_unit)
    k = max(0, min(k, n - 1))
    index = np.zeros((n, k), dtype=np.int64)
    cosine = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return index, cosine
    for start in range(0, n, block):
        sim = rows_unit[start : start + block] @ rows_unit.T
        rows = np.arange(len(sim))
        sim[rows, start + rows] = -np.inf  # not its own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.lexsort((top, -np.take_along_axis(sim, top, 1)), axis=1)
        top = np.take_along_axis(top, order, 1)
        index[start : start + block] = top
        cosine[start : start + block] = np.clip(np.take_along_axis(sim, top, 1), -1.0, 1.0)
    return index, cosine


def silhouettes(distance: np.ndarray, labelings: list[np.ndarray]) -> list[float]:
    """Mean silhouette of each labeling on a precomputed distance matrix (sklearn's
    ``silhouette_score(metric="precomputed")``), all by matrix products: per-cluster distance sums
    come from ``distance @ one_hot(labels)``, so many labelings cost little more than one."""
    out = []
    n = len(distance)
    for labels in labelings:
        _, codes = np.unique(labels, return_inverse=True)
        k = int(codes.max()) + 1
        one_hot = np.zeros((n, k))
        one_hot[np.arange(n), codes] = 1.0
        sums = distance @ one_hot  # (n, k): summed distance of each point to each cluster
        sizes = one_hot.sum(axis=0)
        own = sizes[codes]
        a = sums[np.arange(n), codes] / np.maximum(own - 1, 1)
        other = sums / sizes
        other[np.arange(n), codes] = np.inf
        b = other.min(axis=1)
        s = (b - a) / np.maximum(np.maximum(a, b), 1e-300)
        s[own == 1] = 0.0  # sklearn: a singleton's silhouette is 0
        out.append(float(np.nan_to_num(s).mean()))
    return out


def default_k_max(n: int) -> int:
    """Clustering's k range by default: sqrt(N), between 12 and 60."""
    return int(min(K_MAX_CEILING, max(K_MAX_FLOOR, round(np.sqrt(n)))))


def remove_axes(directions: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Project the span of ``axes`` (K, D) out of ``directions`` (N, D).

    Clustering concepts on what is left separates their conceptual structure from the identity
    defaults they share (a nurse and a secretary both leaning "woman"): the defaults analysis
    measures those defaults; the clusters should not be made of them.
    """
    if len(axes) == 0:
        return directions
    basis, _ = np.linalg.qr(np.asarray(axes, dtype=np.float64).T)
    d = np.asarray(directions, dtype=np.float64)
    return (d - (d @ basis) @ basis.T).astype(np.float32)


@dataclass
class Clustering:
    """Cluster labels (1..k), the chosen k, the silhouette per k and the linkage matrix.

    ``p_value`` is the permutation test's answer to "is there any cluster structure?" (None when
    no test ran); when it is not significant, ``k`` is 1 and every label is 1, while
    ``silhouette`` and ``best_k`` still show what the best split would have been.
    """

    labels: np.ndarray
    k: int
    silhouette: dict[int, float]
    linkage: np.ndarray
    best_k: int = 1
    p_value: float | None = None
    null_silhouettes: np.ndarray | None = None
    #: indices of the concepts the tree was built on (all of them below ``max_exact``)
    sample: np.ndarray | None = None


def cluster_concepts(
    similarity: np.ndarray, method: str = "average", k_min: int = 2, k_max: int | None = 12
) -> Clustering:
    """Hierarchical clustering of a cosine-similarity matrix, k chosen by silhouette.

    k ranges over ``k_min..min(k_max, N - 1)`` (``k_max=None``: :func:`default_k_max`); ties go
    to the smaller k. With fewer than three concepts every concept forms one cluster.
    """
    n = similarity.shape[0]
    k_max = default_k_max(n) if k_max is None else k_max
    distance = np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0.0)
    if n < 3:
        return Clustering(np.ones(n, dtype=int), 1, {}, np.zeros((0, 4)))
    tree = linkage(squareform(distance, checks=False), method=method)
    candidates = {}
    for k in range(k_min, min(k_max, n - 1) + 1):
        labels = fcluster(tree, t=k, criterion="maxclust")
        if len(np.unique(labels)) >= 2:
            candidates[k] = labels
    if not candidates:
        return Clustering(np.ones(n, dtype=int), 1, {}, tree)
    scores = dict(zip(candidates, silhouettes(distance, list(candidates.values())), strict=True))
    best = max(scores, key=lambda k: (round(scores[k], 12), -k))
    return Clustering(candidates[best], best, scores, tree, best)


def best_silhouette(similarity: np.ndarray, method: str, k_min: int, k_max: int | None) -> float:
    """The highest silhouette over k of a cosine matrix (-1 when no split is possible)."""
    scores = cluster_concepts(similarity, method, k_min, k_max).silhouette
    return max(scores.values()) if scores else -1.0


def permutation_p_value(
    vectors: np.ndarray,
    observed: float,
    method: str,
    k_min: int,
    k_max: int | None,
    permutations: int,
    rng: np.random.Generator,
) -> tuple[float, np.ndarray]:
    """p-value of ``observed`` (best silhouette) against feature-permuted copies of ``vectors``."""
    null = np.empty(permutations)
    for r in range(permutations):
        order = rng.permuted(
            np.broadcast_to(np.arange(len(vectors))[:, None], vectors.shape), axis=0
        )
        shuffled = np.take_along_axis(vectors, order, axis=0)
        null[r] = best_silhouette(cosine_matrix(shuffled), method, k_min, k_max)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + permutations)), null


def cluster_with_null(
    vectors: np.ndarray,
    method: str = "average",
    k_min: int = 2,
    k_max: int | None = 12,
    permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    max_exact: int = 2000,
    null_sample: int = 500,
) -> Clustering:
    """Cluster concept vectors (N, D), answering k = 1 when they show no cluster structure.

    The null keeps every feature's values but permutes them across concepts, independently per
    feature: the concepts then share the same marginal statistics (and any common offset) but no
    joint structure. The p-value is ``(1 + #{null best silhouette >= observed}) / (1 + R)``; above
    ``alpha`` the answer is one cluster. ``permutations=0`` skips the test (k >= k_min always).

    Scale: above ``max_exact`` concepts the tree is built on a seeded sample of ``max_exact``
    (``Clustering.sample``), and every other concept joins the cluster whose centroid is nearest by
    cosine. The null is tested on a seeded sample of at most ``null_sample`` concepts (with its
    own observed silhouette), so its cost does not grow with N.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    rng = np.random.default_rng(seed)
    sample = np.arange(n)
    if n > max_exact:
        sample = np.sort(rng.choice(n, size=max_exact, replace=False))
    k_max = default_k_max(len(sample)) if k_max is None else k_max
    result = cluster_concepts(cosine_matrix(vectors[sample]), method, k_min, k_max)
    result.sample = sample
    if permutations > 0 and result.silhouette:
        tested = vectors[sample]
        observed = max(result.silhouette.values())
        if len(tested) > null_sample:
            tested = tested[np.sort(rng.choice(len(tested), size=null_sample, replace=False))]
            observed = best_silhouette(cosine_matrix(tested), method, k_min, k_max)
        result.p_value, result.null_silhouettes = permutation_p_value(
            tested, observed, method, k_min, k_max, permutations, rng
        )
        if result.p_value > alpha:
            result.labels = np.ones(len(sample), dtype=int)
            result.k = 1
    if len(sample) < n:
        result.labels = assign_to_centroids(vectors, sample, result.labels)
    return result


def assign_to_centroids(vectors: np.ndarray, sample: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels for all rows: the sample keeps its own, every other row takes the cluster whose
    mean unit vector is nearest by cosine."""
    unit_vectors = unit(vectors, zero="keep")
    clusters = np.unique(labels)
    centroids = unit(
        np.stack([unit_vectors[sample[labels == c]].mean(axis=0) for c in clusters]), zero="keep"
    )
    out = clusters[np.argmax(unit_vectors @ centroids.T, axis=1)]
    out[sample] = labels
    return out
