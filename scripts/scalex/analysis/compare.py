"""Comparing two models' findings: did a fine-tune (an edit, a new version) change them, and are
the changes real?

Both models see the same prompts, templates and seeds, so every sample of the base model has a
counterpart in the new one. A difference of shares is therefore bootstrapped *paired*: each
replicate resamples the seeds (and the templates as whole groups, with at least five) once and
applies the same resample to both models (:class:`scalex.analysis.stats.PairedBootstrap`), which
keeps every sample with its counterpart. The rule these functions implement is declared in
docs/validation.md ("Comparing two models") before any comparison was computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scalex.analysis.descriptors import VoteResample
from scalex.analysis.stats import percentile_ci

#: The statistics of every compared finding: both models' values, the paired difference, its CI,
#: p- and q-value, and the flag.
STAT_COLUMNS = ["base", "new", "difference", "ci_low", "ci_high", "p_value", "q_value", "flagged"]
DIFF_COLUMNS = ["concept", "axis", "value", *STAT_COLUMNS, "samples", "resampled"]
MARGIN_COLUMNS = ["concept", "axis", "value", "top_base", "top_new", *STAT_COLUMNS, "resampled"]
#: The columns of ``sample_votes.tsv`` that pair a sample with its counterpart: the same
#: concept, axis, prompt and seed position (the same seed, unless ``compare.seeds`` is set).
SAMPLE_KEY = ["concept", "axis", "prompt", "prompt_index", "template_index", "seed_index"]


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (step-up, monotone, capped at 1) of ``p_values``."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def bootstrap_p_value(replicates: np.ndarray, estimate: float) -> float:
    """Two-sided bootstrap p-value: ``2 (1 + #replicates on the far side of 0) / (1 + B)``,
    capped at 1; an estimate of exactly 0 has p = 1."""
    if estimate == 0 or not np.isfinite(estimate):
        return 1.0
    far = np.sum(replicates <= 0) if estimate > 0 else np.sum(replicates >= 0)
    return float(min(1.0, 2.0 * (1 + far) / (1 + len(replicates))))


def pair_samples(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The two models' per-sample votes side by side (``vote_base``, ``vote_new``), one row per
    (concept, axis, prompt, seed). Both must hold the same samples: a comparison whose prompts
    or seeds differ would not be paired, so the first unmatched sample is named."""
    keys = SAMPLE_KEY
    merged = base[keys + ["seed", "vote"]].merge(
        new[keys + ["seed", "vote"]],
        on=keys,
        how="outer",
        suffixes=("_base", "_new"),
        indicator=True,
    )
    lonely = merged[merged["_merge"] != "both"]
    if not lonely.empty:
        row = lonely.iloc[0]
        side = "the base model" if row["_merge"] == "left_only" else "the new model"
        raise ValueError(
            f"{len(lonely)} samples are not in both models, e.g. {row['concept']!r} "
            f"({row['axis']}), prompt {row['prompt']!r}, seed position {row['seed_index']}, "
            f"only in {side}: "
            "compare runs with the same concepts, templates and seeds"
        )
    return merged.drop(columns="_merge")


def flag(table: pd.DataFrame, fdr: float) -> pd.DataFrame:
    """``q_value`` (Benjamini-Hochberg across the table's rows) and ``flagged`` (q <= fdr)."""
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    table["flagged"] = table["q_value"] <= fdr
    return table


def paired_difference(base: np.ndarray, new: np.ndarray, level: float) -> dict[str, float]:
    """Both models' values, the difference new - base, its percentile CI and bootstrap p-value,
    from replicates of one paired resample (row 0: the full sample)."""
    diff = new - base
    lo, hi = percentile_ci(diff[1:], level)
    return {
        "base": float(base[0]),
        "new": float(new[0]),
        "difference": float(diff[0]),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": bootstrap_p_value(diff[1:], float(diff[0])),
    }


def share_differences(
    base: pd.DataFrame,
    new: pd.DataFrame,
    axes: Mapping[str, Sequence[str]],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    fdr: float = 0.05,
) -> pd.DataFrame:
    """Per concept and axis: the share of samples voting for the axis's first value (woman,
    old, rich) in each model, their difference new - base with a paired bootstrap CI and p-value,
    the Benjamini-Hochberg q-value across every (concept, axis) pair, and ``flagged`` when
    q <= ``fdr``. ``base`` and ``new`` are the two runs' ``sample_votes.tsv``."""
    paired = pair_samples(base, new)
    rows = []
    for (concept, axis), block in paired.groupby(["concept", "axis"], sort=True):
        value = list(axes[axis])[0]
        # one resample of the seeds (and templates) for both models: the samples stay paired
        resample = VoteResample.of(block, concept, n_boot, seed)
        shares = {
            s: resample.share(block[f"vote_{s}"].to_numpy() == value) for s in ("base", "new")
        }
        rows.append(
            {
                "concept": concept,
                "axis": axis,
                "value": value,
                **paired_difference(shares["base"], shares["new"], level),
                "samples": len(block),
                "resampled": resample.resampled,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=DIFF_COLUMNS)
    return flag(table, fdr)[DIFF_COLUMNS]


def margin_differences(
    base: Mapping[str, object],
    new: Mapping[str, object],
    concepts: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    fdr: float = 0.05,
) -> pd.DataFrame:
    """The descriptor ranking of both models, per concept and axis: the margin of the axis's
    first value (its alignment minus the best other value's; above 0 when it ranks first), its
    difference new - base with a paired bootstrap CI and p-value, BH q-values across the table,
    and the top value in each model. ``base``/``new``: each model's concept data
    (:func:`scalex.analysis.stats.as_concepts`), with the same concepts, templates and seeds, so
    both get the same resample."""
    from scalex.analysis.descriptors import alignment_replicates
    from scalex.analysis.stats import PairedBootstrap, template_groups

    layout, align_base = alignment_replicates(base, concepts, axes, n_boot=n_boot, seed=seed)
    _, align_new = alignment_replicates(new, concepts, axes, n_boot=n_boot, seed=seed)
    rows = []
    for c, axis, named in layout:
        margins = {}
        for side, align in (("base", align_base[(c, axis)]), ("new", align_new[(c, axis)])):
            others = align[:, 1:].max(axis=1) if align.shape[1] > 1 else np.zeros(len(align))
            margins[side] = align[:, 0] - others
        groups = template_groups(base[c].templates, base[c].n_prompts)
        rows.append(
            {
                "concept": c,
                "axis": axis,
                "value": named[0][0],
                "top_base": named[int(np.nanargmax(align_base[(c, axis)][0]))][0],
                "top_new": named[int(np.nanargmax(align_new[(c, axis)][0]))][0],
                **paired_difference(margins["base"], margins["new"], level),
                "resampled": PairedBootstrap.resampled(int(groups.max()) + 1),
            }
        )
    if not rows:
        return pd.DataFrame(columns=MARGIN_COLUMNS)
    return flag(pd.DataFrame(rows), fdr)[MARGIN_COLUMNS]


def cluster_changes(base: pd.Series, new: pd.Series) -> tuple[float, list[str]]:
    """The adjusted Rand index between two clusterings of the same concepts (``concept ->
    cluster``), and the concepts that moved: after matching each new cluster to the base cluster
    it overlaps most (one to one, by the Hungarian method), those whose cluster is not matched
    to their base cluster."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    common = sorted(set(base.index) & set(new.index))
    if len(common) != len(base) or len(common) != len(new):
        missing = sorted(set(base.index) ^ set(new.index))
        raise ValueError(f"the clusterings hold different concepts, e.g. {missing[:5]}")
    b, n = base[common].to_numpy(), new[common].to_numpy()
    ari = float(adjusted_rand_score(b, n))
    b_ids, b_idx = np.unique(b, return_inverse=True)
    n_ids, n_idx = np.unique(n, return_inverse=True)
    overlap = np.zeros((len(n_ids), len(b_ids)), dtype=int)
    np.add.at(overlap, (n_idx, b_idx), 1)
    rows, cols = linear_sum_assignment(-overlap)
    match = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    moved = [c for c, ni, bi in zip(common, n_idx, b_idx, strict=True) if match.get(ni) != bi]
    return ari, moved
