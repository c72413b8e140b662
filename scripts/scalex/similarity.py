"""Cosine similarity between concept directions, and unsupervised clusters of concepts.

Clustering is hierarchical on the cosine distance ``1 - cos`` (average linkage by default), with
the number of clusters chosen by the silhouette score, since SCALEX asks for structure without
labels: nothing tells the method how many groups there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score


def cosine_matrix(directions: np.ndarray) -> np.ndarray:
    """(N, D) unit (or any) vectors -> (N, N) cosine similarities; works on (..., N, D) stacks."""
    norms = np.linalg.norm(directions, axis=-1, keepdims=True)
    unit = directions / np.maximum(norms, 1e-12)
    sim = unit @ np.swapaxes(unit, -1, -2)
    return np.clip(sim, -1.0, 1.0).astype(np.float32)


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


def cluster_concepts(
    similarity: np.ndarray, method: str = "average", k_min: int = 2, k_max: int = 12
) -> Clustering:
    """Hierarchical clustering of a cosine-similarity matrix, k chosen by silhouette.

    k ranges over ``k_min..min(k_max, N - 1)``; ties go to the smaller k. With fewer than three
    concepts there is nothing to choose and every concept forms one cluster.
    """
    n = similarity.shape[0]
    distance = np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0.0)
    if n < 3:
        return Clustering(np.ones(n, dtype=int), 1, {}, np.zeros((0, 4)))
    tree = linkage(squareform(distance, checks=False), method=method)
    scores: dict[int, float] = {}
    for k in range(k_min, min(k_max, n - 1) + 1):
        labels = fcluster(tree, t=k, criterion="maxclust")
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(distance, labels, metric="precomputed"))
    if not scores:
        return Clustering(np.ones(n, dtype=int), 1, {}, tree)
    best = max(scores, key=lambda k: (round(scores[k], 12), -k))
    return Clustering(fcluster(tree, t=best, criterion="maxclust"), best, scores, tree, best)


def best_silhouette(similarity: np.ndarray, method: str, k_min: int, k_max: int) -> float:
    """The highest silhouette over k of a cosine matrix (-1 when no split is possible)."""
    scores = cluster_concepts(similarity, method, k_min, k_max).silhouette
    return max(scores.values()) if scores else -1.0


def cluster_with_null(
    vectors: np.ndarray,
    method: str = "average",
    k_min: int = 2,
    k_max: int = 12,
    permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> Clustering:
    """Cluster concept vectors (N, D), answering k = 1 when they show no cluster structure.

    The null keeps every feature's values but permutes them across concepts, independently per
    feature: the concepts then share the same marginal statistics (and any common offset) but no
    joint structure. The p-value is ``(1 + #{null best silhouette >= observed}) / (1 + R)``; above
    ``alpha`` the answer is one cluster. ``permutations=0`` skips the test (k >= k_min always).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    result = cluster_concepts(cosine_matrix(vectors), method, k_min, k_max)
    if permutations <= 0 or not result.silhouette:
        return result
    observed = max(result.silhouette.values())
    rng = np.random.default_rng(seed)
    null = np.empty(permutations)
    for r in range(permutations):
        shuffled = np.take_along_axis(
            vectors,
            rng.permuted(np.broadcast_to(np.arange(len(vectors))[:, None], vectors.shape), axis=0),
            axis=0,
        )
        null[r] = best_silhouette(cosine_matrix(shuffled), method, k_min, k_max)
    p_value = float((1 + np.sum(null >= observed - 1e-12)) / (1 + permutations))
    result.p_value, result.null_silhouettes = p_value, null
    if p_value > alpha:
        result.labels = np.ones(len(vectors), dtype=int)
        result.k = 1
    return result
