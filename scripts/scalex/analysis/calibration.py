"""Correcting vote shares for the vote's own misclassification, using a rendered check.

A sample's vote is a reading of its activations, not of its image. The check renders a subsample
of the very samples that voted and reads each image (e.g. with zero-shot CLIP); crossing reading
and vote gives ``M[i, j] = P(vote = j | image = i)``. If a concept's images show value i with
share ``p_i``, its votes show ``q = M^T p``, so ``p`` is recovered by solving that system
(Rogan–Gladen, generalised from K = 2 to K values). The image reader is taken as the reference:
the corrected share estimates what the reader would report on every sample, not the truth.

Uncertainty comes from two independent sources, and both are resampled: the concept's votes
(the same :class:`~scalex.analysis.descriptors.VoteResample` as every vote share of scalex) and
the checked samples that estimate ``M`` (so a small check gives a wide interval, as it should).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scalex.analysis.descriptors import VoteResample
from scalex.analysis.stats import _key_entropy, percentile_ci

#: Smallest singular value of ``M`` that still allows a correction. An error ``dq`` in the
#: observed shares becomes ``dp = M^-T dq`` with ``|dp| <= |dq| / sigma_min``: below 0.1 a vote
#: share's sampling error (a few hundredths for a few hundred samples) is amplified at least
#: tenfold, to the width of the whole unit interval, so the corrected share says nothing. A
#: reader no better than chance has identical rows (rank 1, sigma_min = 0); for K = 2,
#: sigma_min <= |sens + spec - 1| (Youden's J), so this also demands J >= 0.1.
MIN_SINGULAR_VALUE = 0.1

CALIBRATION_COLUMNS = [
    "value", "corrected_share", "corrected_ci_low", "corrected_ci_high", "check_samples",
]  # fmt: skip


def confusion(check: pd.DataFrame, values: Sequence[str]) -> np.ndarray:
    """Counts ``(K, K)``: ``[i, j]`` = checked samples read as ``values[i]`` that voted
    ``values[j]``. Readings (or votes) that are ``"undetermined"`` or not a value are left out:
    they say nothing about how often the vote is right."""
    values = list(dict.fromkeys(values))
    index = {v: k for k, v in enumerate(values)}
    row = check["reading"].map(index)
    col = check["vote"].map(index)
    keep = row.notna() & col.notna()
    counts = np.zeros((len(values), len(values)), dtype=np.int64)
    np.add.at(counts, (row[keep].to_numpy(int), col[keep].to_numpy(int)), 1)
    return counts


def misclassification_matrix(counts: np.ndarray) -> np.ndarray:
    """Row-normalised confusion counts ``(..., K, K)``: ``P(vote = j | image = i)``. A row with
    no checked samples is NaN (nothing is known about how that value is voted)."""
    counts = np.asarray(counts, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=-1, keepdims=True)


def correct(
    observed: np.ndarray,
    misclassification: np.ndarray,
    min_singular_value: float = MIN_SINGULAR_VALUE,
) -> np.ndarray:
    """Estimated true shares ``p`` from observed vote shares ``q`` by solving ``q = M^T p``.

    ``observed`` is ``(..., K)`` and ``misclassification`` ``(..., K, K)`` with rows summing to 1;
    leading (replicate) axes broadcast. ``p`` is projected back onto the simplex (negative shares
    clipped to 0, the rest renormalised), because sampling noise can push a small true share below
    zero. NaN where ``M`` has a non-finite row (a value never seen in the check) or its smallest
    singular value is below ``min_singular_value`` (see :data:`MIN_SINGULAR_VALUE`).
    For K = 2 this is Rogan–Gladen: ``p1 = (q1 + spec - 1) / (sens + spec - 1)``.
    """
    q = np.asarray(observed, dtype=float)
    m = np.asarray(misclassification, dtype=float)
    k = q.shape[-1]
    if m.shape[-2:] != (k, k):
        raise ValueError(f"misclassification must be (..., {k}, {k}); got shape {m.shape}")
    batch = np.broadcast_shapes(q.shape[:-1], m.shape[:-2])
    q = np.broadcast_to(q, (*batch, k))
    m = np.broadcast_to(m, (*batch, k, k))
    finite = np.isfinite(m).all(axis=(-2, -1)) & np.isfinite(q).all(axis=-1)
    rows = np.where(finite[..., None], m.sum(axis=-1), 1.0)
    if not np.allclose(rows, 1.0, atol=1e-6):
        raise ValueError("each row of the misclassification matrix must sum to 1")
    eye = np.eye(k)
    safe = np.where(finite[..., None, None], m, eye)
    ok = finite & (np.linalg.svd(safe, compute_uv=False)[..., -1] >= min_singular_value)
    safe = np.where(ok[..., None, None], safe, eye)  # placeholders, overwritten with NaN below
    p = np.linalg.solve(np.swapaxes(safe, -1, -2), q[..., None])[..., 0]
    p = np.clip(p, 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
    return np.where(ok[..., None], p, np.nan)


def max_nan_fraction(level: float) -> float:
    """Largest share of NaN replicates a percentile CI at ``level`` tolerates: ``(1 - level)/2``.

    NaN replicates are not missing at random: they are the resamples whose check was least
    informative, whose corrected shares would have been the most extreme. Were they all in one
    tail, the true endpoint would be an observed replicate that many places further in: still
    finite while they are fewer than one tail's ``(1 - level)/2`` of the replicates. Beyond that
    they alone could make up the tail, the endpoint is unknown, and the CI is NaN.
    """
    return (1 - level) / 2


def _check_replicates(counts: np.ndarray, n_boot: int, seed: int, axis: str) -> np.ndarray:
    """Confusion counts ``(n_boot + 1, K, K)``: row 0 the check itself, then resamples of the
    checked samples with replacement. Resampling n rows with replacement gives cell counts
    distributed Multinomial(n, counts / n), so the counts are drawn directly. The RNG is derived
    from ``seed`` and the axis, so every concept of an axis sees the same calibration replicates
    (paired, as :class:`~scalex.analysis.stats.PairedBootstrap` pairs the votes)."""
    n = int(counts.sum())
    ss = np.random.SeedSequence(
        entropy=seed, spawn_key=(_key_entropy("calibration"), _key_entropy(axis))
    )
    rng = np.random.default_rng(ss)
    if n == 0:
        draws = np.zeros((n_boot, *counts.shape), dtype=np.int64)
    else:
        draws = rng.multinomial(n, counts.ravel() / n, size=n_boot).reshape(n_boot, *counts.shape)
    return np.concatenate([counts[None], draws])


def corrected_shares(
    votes: pd.DataFrame,
    check: pd.DataFrame,
    values: Sequence[str],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_singular_value: float = MIN_SINGULAR_VALUE,
) -> pd.DataFrame:
    """One concept's vote shares on one axis, corrected for misclassification, with a CI.

    ``votes``: ``sample_votes`` rows of one concept and axis. ``check``: the checked samples of
    that axis, all concepts pooled (``vote``, ``reading``; when it has an ``axis`` column, only
    this axis's rows are used). Replicate ``b`` corrects the ``b``-th vote-share replicate of
    :class:`VoteResample` (as ``vote_shares``) with the ``b``-th calibration replicate; replicate
    0 of both is the full sample and gives the point estimate, replicates ``1..n_boot`` the
    percentile CI. The CI is NaN when more than :func:`max_nan_fraction` of the replicates could
    not be corrected, and everything is NaN when the full check cannot correct.
    """
    values = list(dict.fromkeys(values))
    concepts, axes = votes["concept"].unique(), votes["axis"].unique()
    if len(concepts) != 1 or len(axes) != 1:
        raise ValueError(
            f"votes must hold one concept and one axis; got concepts {list(concepts)} "
            f"and axes {list(axes)}"
        )
    concept, axis = str(concepts[0]), str(axes[0])
    if "axis" in check.columns:
        check = check[check["axis"] == axis]
    resample = VoteResample.of(votes, concept, n_boot, seed)
    vote = votes["vote"].to_numpy()
    observed = np.stack([resample.share(vote == v) for v in values], axis=-1)  # (B + 1, K)
    counts = confusion(check, values)
    replicates = _check_replicates(counts, n_boot, seed, axis)
    p = correct(observed, misclassification_matrix(replicates), min_singular_value)  # (B + 1, K)
    failed = np.isnan(p[1:]).any(axis=-1).mean()
    usable = not np.isnan(p[0]).any() and failed <= max_nan_fraction(level)
    lo, hi = percentile_ci(p[1:], level)
    rows = [
        {
            "value": v,
            "corrected_share": float(p[0, k]),
            "corrected_ci_low": float(lo[k]) if usable else np.nan,
            "corrected_ci_high": float(hi[k]) if usable else np.nan,
            "check_samples": int(counts.sum()),
        }
        for k, v in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)
