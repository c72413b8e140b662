"""Concept directions, cosines and the seed-paired bootstrap that every analysis shares.

Array convention (fixed by the pipeline): a concept's ``diffs`` has shape ``(P, S, T, D)`` —
prompts, seeds, kept denoising steps, features — and holds ``h(prompt, seed, step)`` minus the
mean baseline activation at the *same* seed and step. ``templates`` gives each prompt's template
index. Seeds are shared by every concept, in the same order.

Why the bootstrap looks the way it does: the seeds pair the concepts (the same initial noise was
used for all of them), so one replicate resamples one set of seed indices and applies it to every
concept; prompts of one template are correlated, so templates are resampled as whole groups. A
direction is a mean, so a replicate direction is a weighted sum of per-(template, seed, step) sums
with the resampling *counts* as weights. We compute those sums once and turn every replicate into
one matrix product, instead of gathering and averaging samples in Python loops.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scalex.vectors import unit

#: Steps argument accepted throughout: ``None`` (all kept steps), one step index, or several.
Steps = int | Sequence[int] | None

#: Default memory budget (bytes) for the replicate sums held at once by :func:`bootstrap_dots`.
DEFAULT_MAX_BYTES = 256 * 2**20


def _check_diffs(diffs: np.ndarray, name: str = "diffs") -> None:
    if np.ndim(diffs) != 4:
        raise ValueError(
            f"{name} must have shape (prompts, seeds, steps, features); got shape {np.shape(diffs)}"
        )
    if 0 in np.shape(diffs):
        raise ValueError(f"{name} is empty: shape {np.shape(diffs)}")


def _step_index(n_steps: int, steps: Steps) -> np.ndarray:
    """Normalise a steps argument into an index array, checking the range."""
    idx = np.arange(n_steps) if steps is None else np.atleast_1d(np.asarray(steps, dtype=int))
    if idx.size == 0 or idx.min() < -n_steps or idx.max() >= n_steps:
        raise ValueError(f"steps {steps!r} out of range for {n_steps} kept steps")
    return idx % n_steps


def direction(diffs: np.ndarray, steps: Steps = None) -> np.ndarray:
    """Unit concept direction ``unit(mean over prompts, seeds and the chosen steps)``.

    ``steps=None`` pools every kept step, an int gives that step's direction, a sequence pools
    those steps. Raises ``ValueError`` when the mean difference is exactly zero (e.g. the concept's
    prompts equal the baseline), because such a concept has no direction to compare.
    """
    _check_diffs(diffs)
    idx = _step_index(np.shape(diffs)[2], steps)
    mean = np.asarray(diffs, dtype=np.float32)[:, :, idx].mean(axis=(0, 1, 2), dtype=np.float64)
    if not np.any(mean):
        raise ValueError(
            "the mean difference to the baseline is the zero vector: the concept has no direction"
        )
    return unit(mean.astype(np.float32))


def percentile_ci(
    samples: np.ndarray, level: float = 0.95, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval at confidence ``level`` (NaN replicates are ignored)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1); got {level}")
    alpha = (1 - level) / 2 * 100
    with warnings.catch_warnings():  # an all-NaN statistic (e.g. undefined margin) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(samples, [alpha, 100 - alpha], axis=axis)
    return lo, hi


def template_groups(templates: np.ndarray | None, n_prompts: int) -> np.ndarray:
    """Group index (0..G-1) of each prompt for resampling.

    Prompts sharing a template form one group; with a single template (or ``None``) every prompt
    is its own group, so the bootstrap still has something to resample.
    """
    if templates is None:
        return np.arange(n_prompts)
    templates = np.asarray(templates)
    if templates.shape != (n_prompts,):
        raise ValueError(
            f"templates must give one template index per prompt ({n_prompts}); "
            f"got shape {templates.shape}"
        )
    _, groups = np.unique(templates, return_inverse=True)
    if groups.max() == 0:
        return np.arange(n_prompts)
    return groups.astype(int)


def _key_entropy(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


#: Below this many template groups a percentile bootstrap over templates is meaningless (it can
#: draw only a handful of distinct resamples), so only the seeds are resampled.
MIN_TEMPLATE_GROUPS = 5


@dataclass
class PairedBootstrap:
    """Resampling plan shared by the concepts of one analysis.

    ``seed_indices`` (``n_boot`` x ``n_seeds``) is drawn once from ``seed`` and applied to every
    concept, preserving the seed pairing. Templates pair the concepts too (every concept is
    phrased with the same templates), so one template resample per replicate is drawn from
    ``seed`` and the number of groups alone and shared by every concept with that many groups.
    With fewer than ``MIN_TEMPLATE_GROUPS`` groups the templates are not resampled (seeds only),
    and :meth:`resampled` says so.
    """

    n_seeds: int
    n_boot: int = 1000
    seed: int = 0
    seed_indices: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_seeds < 1 or self.n_boot < 1:
            raise ValueError("need at least one seed and one bootstrap replicate")
        rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        self.seed_indices = rng.integers(0, self.n_seeds, size=(self.n_boot, self.n_seeds))

    @staticmethod
    def resamples_templates(n_groups: int) -> bool:
        return n_groups >= MIN_TEMPLATE_GROUPS

    @staticmethod
    def resampled(n_groups: int) -> str:
        """What a replicate resamples for a concept with ``n_groups`` template groups."""
        return "seeds+templates" if PairedBootstrap.resamples_templates(n_groups) else "seeds"

    def template_indices(self, key: str, n_groups: int) -> np.ndarray:
        """Resampled template-group indices (``n_boot`` x ``n_groups``), the same for every
        concept with ``n_groups`` groups (``key`` is not used: the resample is paired)."""
        if not self.resamples_templates(n_groups):
            return np.broadcast_to(np.arange(n_groups), (self.n_boot, n_groups))
        ss = np.random.SeedSequence(entropy=self.seed, spawn_key=(_key_entropy("templates"),))
        rng = np.random.default_rng(ss)
        return rng.integers(0, n_groups, size=(self.n_boot, n_groups))

    def weights(self, key: str, groups: np.ndarray) -> np.ndarray:
        """Counts ``(n_boot + 1, G, S)``: how often each (group, seed) enters each replicate.

        Row 0 is all ones — the full sample — so point estimate and replicates share one code
        path; rows ``1..n_boot`` are the replicates.
        """
        n_groups = int(groups.max()) + 1
        seed_counts = _counts(self.seed_indices, self.n_seeds)
        group_counts = _counts(self.template_indices(key, n_groups), n_groups)
        w = group_counts[:, :, None] * seed_counts[:, None, :]
        full = np.ones((1, n_groups, self.n_seeds), dtype=w.dtype)
        return np.concatenate([full, w]).astype(np.float32)


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """Row-wise bincount: how many times each of ``n`` items was drawn in each replicate."""
    rows = np.repeat(np.arange(indices.shape[0]), indices.shape[1])
    out = np.zeros((indices.shape[0], n), dtype=np.int64)
    np.add.at(out, (rows, indices.ravel()), 1)
    return out


def _replicate_sums(chunk: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unnormalised replicate sums ``(B + 1, T, d)`` of one feature chunk ``(P, S, T, d)``.

    The scale of a replicate sum does not matter: every quantity derived from it is a cosine.
    """
    p, s, t, d = chunk.shape
    n_groups = weights.shape[1]
    onehot = np.zeros((n_groups, p), dtype=np.float32)
    onehot[groups, np.arange(p)] = 1.0
    group_sums = onehot @ chunk.reshape(p, s * t * d)  # (G, S*T*d)
    flat_w = weights.reshape(weights.shape[0], n_groups * s)
    return (flat_w @ group_sums.reshape(n_groups * s, t * d)).reshape(-1, t, d)


@dataclass(frozen=True)
class ConceptData:
    """One concept's seed-paired differences and template index per prompt."""

    diffs: np.ndarray
    templates: np.ndarray | None = None

    @property
    def n_prompts(self) -> int:
        return int(np.shape(self.diffs)[0])

    @property
    def n_seeds(self) -> int:
        return int(np.shape(self.diffs)[1])


def as_concepts(
    diffs: Mapping[str, np.ndarray], templates: Mapping[str, np.ndarray] | None = None
) -> dict[str, ConceptData]:
    """Pair each concept's diffs with its templates (missing templates: one template)."""
    templates = templates or {}
    out = {}
    for name, d in diffs.items():
        _check_diffs(d, f"diffs[{name!r}]")
        out[name] = ConceptData(d, templates.get(name))
    return out


def _check_compatible(concepts: Mapping[str, ConceptData]) -> tuple[int, int, int]:
    shapes = {name: np.shape(c.diffs) for name, c in concepts.items()}
    seeds_steps_feat = {s[1:] for s in shapes.values()}
    if len(seeds_steps_feat) != 1:
        raise ValueError(
            "concepts must share seeds, kept steps and features (same S, T, D); got shapes "
            + ", ".join(f"{k}: {v}" for k, v in shapes.items())
        )
    s, t, d = seeds_steps_feat.pop()
    return s, t, d


def bootstrap_directions(
    boot: PairedBootstrap, key: str, concept: ConceptData, steps: Steps = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions per step and pooled, for the full sample and every replicate.

    Returns ``(point, replicates)`` of shapes ``(T' + 1, D)`` and ``(n_boot, T' + 1, D)``: index
    ``i < T'`` is the i-th chosen step, the last index pools the chosen steps. Holds all replicate
    directions in memory, so it suits pooled features; :func:`bootstrap_dots` keeps memory bounded.
    """
    _check_diffs(concept.diffs)
    p, s, t, _ = np.shape(concept.diffs)
    if s != boot.n_seeds:
        raise ValueError(f"concept {key!r} has {s} seeds; the bootstrap plan has {boot.n_seeds}")
    idx = _step_index(t, steps)
    groups = template_groups(concept.templates, p)
    chunk = np.asarray(concept.diffs, dtype=np.float32)[:, :, idx]
    sums = _replicate_sums(chunk, groups, boot.weights(key, groups))
    allsteps = np.concatenate([sums, sums.sum(axis=1, keepdims=True)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dirs = allsteps / np.linalg.norm(allsteps, axis=-1, keepdims=True)
    return dirs[0].astype(np.float32), dirs[1:].astype(np.float32)


def _atoms(chunk: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-(group, seed) sums of one feature chunk ``(P, S, T, d)`` -> ``(T + 1, G * S, d)``.

    Index ``T`` along the first axis pools the steps. Every replicate sum of the concept is a
    count-weighted sum of these atoms, so dot products between replicates reduce to small Gram
    matrices of atoms.
    """
    p, s, t, d = chunk.shape
    n_groups = int(groups.max()) + 1
    onehot = np.zeros((n_groups, p), dtype=np.float32)
    onehot[groups, np.arange(p)] = 1.0
    out = np.empty((t + 1, n_groups * s, d), dtype=np.float32)
    for k in range(t):
        out[k] = (onehot @ chunk[:, :, k].reshape(p, s * d)).reshape(n_groups * s, d)
    np.sum(out[:t], axis=0, out=out[t])
    return out


def bootstrap_dots(
    boot: PairedBootstrap,
    concepts: Mapping[str, ConceptData],
    pairs: Iterable[tuple[str, str]],
    steps: Steps = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[tuple[str, str], np.ndarray]:
    """Dot products of unnormalised concept sums, per step and pooled, for the requested pairs.

    Returns ``{(x, y): array (n_boot + 1, T' + 1)}``; row 0 is the full sample, rows 1.. the
    replicates; the last column pools the chosen steps. Self-pairs ``(x, x)`` are added, so
    :func:`cosine_from_dots` can normalise.

    Replicate vectors are never formed: with ``w`` a replicate's (group, seed) counts and ``X`` the
    per-(group, seed) sums, ``<w_x X_x, w_y X_y> = w_x^T (X_x X_y^T) w_y``, so the features enter
    only through a ``(G_x S, G_y S)`` Gram matrix per step. Features are read in chunks sized to
    ``max_bytes``, which keeps memory bounded for D = C*h*w and lets ``diffs`` be memory-mapped or
    HDF5 arrays (only ``diffs[:, :, :, a:b]`` is read at a time).
    """
    pairs = list(pairs)
    if not pairs:
        return {}
    names = sorted({n for pair in pairs for n in pair})
    missing = [n for n in names if n not in concepts]
    if missing:
        raise KeyError(f"no diffs for concept(s) {missing}")
    sub = {n: concepts[n] for n in names}
    s, t, d = _check_compatible(sub)
    if s != boot.n_seeds:
        raise ValueError(f"concepts have {s} seeds; the bootstrap plan has {boot.n_seeds}")
    idx = _step_index(t, steps)
    groups = {n: template_groups(c.templates, c.n_prompts) for n, c in sub.items()}
    n_atoms = {n: (int(g.max()) + 1) * s for n, g in groups.items()}

    # Each unordered pair once; partners[x] lists the y whose Gram with x is accumulated.
    partners: dict[str, list[str]] = {}
    seen: set[frozenset] = set()
    for x, y in [*pairs, *((n, n) for n in names)]:
        if frozenset((x, y)) not in seen:
            seen.add(frozenset((x, y)))
            partners.setdefault(x, []).append(y)
    offsets = {x: np.cumsum([0] + [n_atoms[y] for y in ys]) for x, ys in partners.items()}
    grams = {
        x: np.zeros((len(idx) + 1, n_atoms[x], offsets[x][-1]), dtype=np.float64) for x in partners
    }

    per_col = 4 * (len(idx) + 1) * (sum(n_atoms.values()) + max(o[-1] for o in offsets.values()))
    per_col += 4 * max(c.n_prompts for c in sub.values()) * s * len(idx)
    width = int(max(1, min(d, max_bytes // per_col)))
    for lo in range(0, d, width):
        hi = min(d, lo + width)
        atoms = {}
        for n in names:
            chunk = np.asarray(sub[n].diffs[:, :, :, lo:hi], dtype=np.float32)[:, :, idx]
            atoms[n] = _atoms(chunk, groups[n])
        for x, ys in partners.items():
            other = atoms[ys[0]] if len(ys) == 1 else np.concatenate([atoms[y] for y in ys], 1)
            # float32 within a chunk, float64 across chunks: BLAS speed, and exact enough.
            # (A Python loop of 2-D products: numpy's stacked matmul of a transposed operand
            # misses BLAS and was 10x slower.)
            for k in range(len(idx) + 1):
                grams[x][k] += atoms[x][k] @ other[k].T

    out = {}
    flat_w = {n: boot.weights(n, groups[n]).reshape(boot.n_boot + 1, -1) for n in names}
    n_cols = len(idx) + 1
    for x, ys in partners.items():
        g = grams[x].transpose(1, 0, 2).reshape(n_atoms[x], -1)  # (G_x S, cols * partner atoms)
        # Replicates in float32 (BLAS speed; cosines good to ~1e-6), the full sample in float64.
        left = (flat_w[x][1:] @ g.astype(np.float32)).reshape(boot.n_boot, n_cols, -1)
        left0 = (flat_w[x][:1].astype(np.float64) @ g).reshape(1, n_cols, -1)
        for j, y in enumerate(ys):
            sl = slice(offsets[x][j], offsets[x][j + 1])
            dots = np.empty((boot.n_boot + 1, n_cols))
            dots[1:] = np.einsum("btj,bj->bt", left[:, :, sl], flat_w[y][1:])
            dots[:1] = np.einsum("btj,bj->bt", left0[:, :, sl], flat_w[y][:1].astype(np.float64))
            out[(x, y)] = dots
            out[(y, x)] = dots
    return out


def cosine_from_dots(dots: Mapping[tuple[str, str], np.ndarray], x: str, y: str) -> np.ndarray:
    """Cosine between concepts ``x`` and ``y`` from :func:`bootstrap_dots` output (NaN if zero)."""
    xy = dots[(x, y)] if (x, y) in dots else dots[(y, x)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return xy / np.sqrt(dots[(x, x)] * dots[(y, y)])


def step_labels(n_steps: int, labels: Sequence[float] | None, steps: Steps = None) -> list:
    """Labels of the chosen steps plus ``"all"`` for the pooled column."""
    idx = _step_index(n_steps, steps)
    if labels is None:
        chosen = [int(i) for i in idx]
    else:
        if len(labels) != n_steps:
            raise ValueError(f"need {n_steps} step labels; got {len(labels)}")
        chosen = [round(float(labels[i])) for i in idx]  # timesteps, rounded
    return [*chosen, "all"]
