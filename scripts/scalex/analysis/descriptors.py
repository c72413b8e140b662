"""Descriptors analysis: which identity descriptor a plain concept already implies.

For a concept c ("nurse") and an axis of descriptor values V (age: young, old), each described
concept "v c" ("old-nurse") has its own direction. ``alignment(v) = cos(d_c, d_{v c})``: the value
whose described concept lies closest to the plain one is the model's default for that axis. The
ranking comes with bootstrap CIs (seeds shared by all concepts, templates within each) and with
the margin by which each value leads (or trails) the best other value, so a user can tell a clear
default from a tie.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalex.analysis.stats import (
    DEFAULT_MAX_BYTES,
    PairedBootstrap,
    Steps,
    _check_compatible,
    as_concepts,
    bootstrap_dots,
    cosine_from_dots,
    percentile_ci,
    template_groups,
)
from scalex.layout import DERIVED_ID_FORMAT

DESCRIPTOR_COLUMNS = [
    "concept",
    "axis",
    "descriptor",
    "alignment",
    "ci_low",
    "ci_high",
    "rank",
    "margin",
    "margin_ci_low",
    "margin_ci_high",
    "p_top1",
    "resampled",
]

#: How the pipeline names a described concept, e.g. "old-nurse".
DEFAULT_NAME_FORMAT = DERIVED_ID_FORMAT  # descriptors arrive slugged (layout.descriptor_slug)


def descriptor_alignment(
    diffs: Mapping[str, np.ndarray],
    concepts: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    templates: Mapping[str, np.ndarray] | None = None,
    name_format: str = DEFAULT_NAME_FORMAT,
    steps: Steps = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> pd.DataFrame:
    """Rank each axis's descriptor values by alignment with each concept.

    ``diffs`` maps names to ``(P, S, T, D)`` arrays and must hold every concept and every
    described concept ``name_format.format(descriptor=v, concept=c)``. Directions pool the
    chosen ``steps`` (default all). Columns:

    - ``alignment``, ``ci_low``, ``ci_high``: ``cos(d_c, d_{v c})`` and its percentile CI;
    - ``rank``: 1 for the best-aligned value within (concept, axis);
    - ``margin`` (+ CI): alignment minus the best *other* value's, recomputed per replicate;
      positive only for the top value, and a CI above 0 means it is robustly the top;
    - ``p_top1``: share of replicates in which the value ranks first.
    """
    data = as_concepts(diffs, templates)
    layout, align_of = alignment_replicates(
        data, concepts, axes, name_format, steps, n_boot, seed, max_bytes
    )
    if not layout:
        return pd.DataFrame(columns=DESCRIPTOR_COLUMNS)

    rows = []
    for c, axis, named in layout:
        align = align_of[(c, axis)]
        lo, hi = percentile_ci(align[1:], level)
        filled = np.nan_to_num(align, nan=-np.inf)
        order = np.lexsort((np.arange(len(named)), -filled[0]))
        rank = np.empty(len(named), dtype=int)
        rank[order] = np.arange(1, len(named) + 1)
        margin = np.full_like(align, np.nan)
        if len(named) > 1:
            for j in range(len(named)):
                others = np.delete(align, j, axis=1)
                margin[:, j] = align[:, j] - np.max(others, axis=1)
        m_lo, m_hi = percentile_ci(margin[1:], level)
        winners = np.argmax(filled[1:], axis=1)
        for j, (v, _) in enumerate(named):
            rows.append(
                {
                    "concept": c,
                    "axis": axis,
                    "descriptor": v,
                    "alignment": float(align[0, j]),
                    "ci_low": float(lo[j]),
                    "ci_high": float(hi[j]),
                    "rank": int(rank[j]),
                    "margin": float(margin[0, j]),
                    "margin_ci_low": float(m_lo[j]),
                    "margin_ci_high": float(m_hi[j]),
                    "p_top1": float(np.mean(winners == j)),
                    "resampled": PairedBootstrap.resampled(
                        int(template_groups(data[c].templates, data[c].n_prompts).max()) + 1
                    ),
                }
            )
    df = pd.DataFrame(rows, columns=DESCRIPTOR_COLUMNS)
    # Keep the caller's concept and axis order; rank within each block.
    block = {(c, axis): i for i, (c, axis, _) in enumerate(layout)}
    df["_b"] = [block[k] for k in zip(df["concept"], df["axis"], strict=True)]
    df = df.sort_values(["_b", "rank"], kind="stable").drop(columns="_b").reset_index(drop=True)
    df.attrs.update({"level": level, "n_boot": n_boot, "seed": seed, "name_format": name_format})
    return df


Layout = list[tuple[str, str, list[tuple[str, str]]]]


def alignment_replicates(
    data: Mapping[str, Any],
    concepts: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    name_format: str = DEFAULT_NAME_FORMAT,
    steps: Steps = None,
    n_boot: int = 1000,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[Layout, dict[tuple[str, str], np.ndarray]]:
    """Per (concept, axis): the ``(n_boot + 1, V)`` pooled-step alignment of each value (row 0:
    the full sample), and the layout ``(concept, axis, [(value, described concept)])``.

    The resample depends only on the seed count, the templates and ``seed``: two models with the
    same concepts, templates and seeds get the same one (a comparison's pairing).
    """
    layout: Layout = []
    pairs = []
    for c in dict.fromkeys(concepts):
        for axis, values in axes.items():
            values = list(dict.fromkeys(values))
            if not values:
                raise ValueError(f"descriptor axis {axis!r} has no values")
            named = [(v, name_format.format(descriptor=v, concept=c)) for v in values]
            missing = [n for n in [c, *(n for _, n in named)] if n not in data]
            if missing:
                raise KeyError(f"no diffs for {missing} (axis {axis!r}, concept {c!r})")
            layout.append((c, axis, named))
            pairs += [(c, n) for _, n in named]
    if not pairs:
        return layout, {}
    involved = {n for pair in pairs for n in pair}
    n_seeds, _, _ = _check_compatible({n: data[n] for n in involved})
    boot = PairedBootstrap(n_seeds=n_seeds, n_boot=n_boot, seed=seed)
    dots = bootstrap_dots(boot, data, pairs, steps=steps, max_bytes=max_bytes)
    return layout, {
        (c, axis): np.stack([cosine_from_dots(dots, c, n)[:, -1] for _, n in named], axis=1)
        for c, axis, named in layout
    }


def top_descriptors(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (concept, axis): the top value, its margin, and ``clear`` (margin CI above 0)."""
    top = table[table["rank"] == 1].copy()
    top["clear"] = top["margin_ci_low"] > 0
    return top.reset_index(drop=True)


VOTE_COLUMNS = [
    "concept", "axis", "descriptor", "share", "ci_low", "ci_high", "samples", "resampled",
]  # fmt: skip
SAMPLE_VOTE_COLUMNS = ["concept", "axis", "prompt_index", "template_index", "seed_index", "vote"]


def sample_votes(
    diffs: Mapping[str, np.ndarray],
    concepts: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    templates: Mapping[str, np.ndarray] | None = None,
    name_format: str = DEFAULT_NAME_FORMAT,
) -> pd.DataFrame:
    """Which descriptor value each *sample* of a concept resembles.

    Sample (p, s) of "a nurse" is compared with sample (p, s) of every "<v> nurse" of the axis:
    the same template and seed, so the same noise and look, with the value fixed by the prompt.
    It votes for the nearest (Euclidean distance over every kept step and feature; subtracting the
    baseline is a common shift, so differences give the same distances as activations). On the
    content readout this is a reading of the image that sample generates, which
    ``scalex_refworld`` checks sample by sample against the rendered images. One row per
    (concept, axis, prompt, seed); ``vote`` is the value.
    """
    frames = []
    for c in dict.fromkeys(concepts):
        x = np.asarray(diffs[c], dtype=np.float32)
        n_prompts, n_seeds = x.shape[:2]
        tpl = np.zeros(n_prompts, int) if templates is None else np.asarray(templates[c], int)
        for axis, values in axes.items():
            values = list(dict.fromkeys(values))
            if not values:
                raise ValueError(f"descriptor axis {axis!r} has no values")
            dist = []
            for v in values:
                name = name_format.format(descriptor=v, concept=c)
                if name not in diffs:
                    raise KeyError(f"no diffs for {name!r} (axis {axis!r}, concept {c!r})")
                y = np.asarray(diffs[name], dtype=np.float32)
                if y.shape != x.shape:
                    raise ValueError(
                        f"{name!r} has shape {y.shape} but {c!r} has {x.shape}: descriptor "
                        "concepts must share the concept's templates and seeds"
                    )
                dist.append(((x - y) ** 2).reshape(n_prompts, n_seeds, -1).sum(axis=2))
            nearest = np.argmin(np.stack(dist), axis=0)  # (P, S): index of the nearest value
            p_idx, s_idx = np.meshgrid(np.arange(n_prompts), np.arange(n_seeds), indexing="ij")
            frames.append(
                pd.DataFrame(
                    {
                        "concept": c,
                        "axis": axis,
                        "prompt_index": p_idx.ravel(),
                        "template_index": tpl[p_idx.ravel()],
                        "seed_index": s_idx.ravel(),
                        "vote": np.asarray(values, dtype=object)[nearest.ravel()],
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=SAMPLE_VOTE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SAMPLE_VOTE_COLUMNS]


@dataclass(frozen=True)
class VoteResample:
    """The bootstrap of one concept's (and axis's) sample votes: each replicate's weight of every
    (template group, seed) cell (row 0: the full sample), shared by whatever is counted on the
    same samples, e.g. both models of a comparison."""

    weights: np.ndarray  # (n_boot + 1, G, S)
    group_of: np.ndarray  # the template group of each sample
    seed_of: np.ndarray  # the seed index of each sample
    total: np.ndarray  # (n_boot + 1,): samples per replicate
    resampled: str

    @classmethod
    def of(cls, block: pd.DataFrame, key: str, n_boot: int, seed: int) -> VoteResample:
        """From a block of ``sample_votes`` rows (``prompt_index``, ``template_index``,
        ``seed_index``) of one concept and axis."""
        n_prompts = int(block["prompt_index"].max()) + 1
        n_seeds = int(block["seed_index"].max()) + 1
        tpl = np.zeros(n_prompts, int)
        tpl[block["prompt_index"].to_numpy()] = block["template_index"].to_numpy()
        groups = template_groups(tpl, n_prompts)
        boot = PairedBootstrap(n_seeds=n_seeds, n_boot=n_boot, seed=seed)
        weights = boot.weights(key, groups)
        group_of = groups[block["prompt_index"].to_numpy()]
        seed_of = block["seed_index"].to_numpy()
        n_groups = int(groups.max()) + 1
        size = np.zeros((n_groups, n_seeds))
        np.add.at(size, (group_of, seed_of), 1)
        total = np.einsum("bgs,gs->b", weights, size)
        return cls(weights, group_of, seed_of, total, PairedBootstrap.resampled(n_groups))

    def share(self, hit: np.ndarray) -> np.ndarray:
        """The share of samples where ``hit`` (bool per sample) holds, per replicate."""
        counts = np.zeros(self.weights.shape[1:])
        np.add.at(counts, (self.group_of[hit], self.seed_of[hit]), 1)
        return np.einsum("bgs,gs->b", self.weights, counts) / self.total


def vote_shares(
    samples: pd.DataFrame,
    axes: Mapping[str, Sequence[str]],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The share of each concept's samples voting for each value, with a bootstrap CI.

    One replicate resamples the seeds, and the templates as whole groups when there are at least
    ``MIN_TEMPLATE_GROUPS`` of them (:class:`PairedBootstrap`, as every other CI of scalex), and
    the same resample is applied to every concept; ``resampled`` says which were resampled.
    """
    rows = []
    for (c, axis), block in samples.groupby(["concept", "axis"], sort=False):
        values = list(dict.fromkeys(axes[axis]))
        resample = VoteResample.of(block, c, n_boot, seed)
        for v in values:
            share = resample.share(block["vote"].to_numpy() == v)
            lo, hi = percentile_ci(share[1:], level)
            rows.append(
                {
                    "concept": c,
                    "axis": axis,
                    "descriptor": v,
                    "share": float(share[0]),
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                    "samples": len(block),
                    "resampled": resample.resampled,
                }
            )
    return pd.DataFrame(rows, columns=VOTE_COLUMNS)


def descriptor_votes(
    diffs: Mapping[str, np.ndarray],
    concepts: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    templates: Mapping[str, np.ndarray] | None = None,
    name_format: str = DEFAULT_NAME_FORMAT,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`vote_shares` of :func:`sample_votes`: on the content readout, an estimate of the
    share of generated images that show each value."""
    samples = sample_votes(diffs, concepts, axes, templates, name_format)
    return vote_shares(samples, axes, n_boot=n_boot, level=level, seed=seed)
