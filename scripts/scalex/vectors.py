"""The one ``unit()`` and the one ``cosine()`` of scalex: every direction, similarity and score
goes through these, so a zero vector is handled the same way everywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from scalex.errors import ConfigError, DirectionError

#: lengths at or below this count as zero (float32 activations never get this small honestly)
EPS = 1e-12


def unit(
    vectors: np.ndarray, axis: int = -1, *, what: str = "vector", zero: str = "raise"
) -> np.ndarray:
    """float32 ``vectors`` scaled to length 1 along ``axis``.

    A zero (or non-finite) vector has no direction: ``zero="raise"`` refuses it with an error
    naming ``what``; ``zero="keep"`` leaves it zero (similarity rows of an axis removed from
    itself).
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=axis, keepdims=True)
    if zero == "keep":
        return (v / np.maximum(norms, EPS)).astype(np.float32)
    if np.any(norms <= EPS) or not np.all(np.isfinite(norms)):
        raise DirectionError(f"{what} has zero length (or is not finite): it has no direction")
    return (v / norms).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity along the last axis, broadcasting; a float for two 1-D vectors.

    Computed in float64; a zero vector is an error rather than a silent NaN.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a64, axis=-1)
    nb = np.linalg.norm(b64, axis=-1)
    if np.any(na <= EPS) or np.any(nb <= EPS):
        raise DirectionError("cosine of a zero vector is undefined")
    out = np.sum(a64 * b64, axis=-1) / (na * nb)
    return float(out) if np.ndim(out) == 0 else out


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(N, D) vectors -> (N, N) cosines, float32; works on (..., N, D) stacks. Zero rows give
    zero similarity rather than an error (see :func:`unit` with ``zero="keep"``)."""
    u = unit(vectors, zero="keep")
    return np.clip(u @ np.swapaxes(u, -1, -2), -1.0, 1.0).astype(np.float32)


def combine(
    vectors: Mapping[str, np.ndarray],
    positive: Sequence[str],
    negative: Sequence[str] = (),
    *,
    what: str = "direction",
) -> tuple[np.ndarray, float]:
    """``unit(sum(positive) - sum(negative))`` of named vectors, and the length before scaling
    (a query, a steering direction). A missing name or a zero result is a :class:`ConfigError`
    naming ``what``."""
    missing = sorted(set(positive) - set(vectors) | set(negative) - set(vectors))
    if missing:
        raise ConfigError(f"{what}: no directions for concepts {missing}")
    dim = len(next(iter(vectors.values())))
    total = np.zeros(dim, dtype=np.float64)
    for c in positive:
        total += np.asarray(vectors[c], dtype=np.float64)
    for c in negative:
        total -= np.asarray(vectors[c], dtype=np.float64)
    norm = float(np.linalg.norm(total))
    if norm <= EPS:
        raise ConfigError(f"{what}: {list(positive)} - {list(negative)} has zero length")
    return (total / norm).astype(np.float32), norm
