"""Findings: the share of each concept's generated samples that show each identity value.

This is the reading the reference worlds validate (docs/validation.md): each sample of "a photo
of a nurse" votes for the described variant ("female nurse" / "male nurse") it lies nearest to
at the same template and seed, on the **content** readout (what the latent holds, read under one
fixed text). The share of votes estimates the share of images the model draws with that value;
on every committed world it agrees with the sample's own image in at least 95 % of samples for
gender. Beside each share stands the text control's share (the same vote on the text encoder's
states alone, no diffusion model), and a flag where the text encoder alone already gives the same
majority: such a finding is not evidence about the diffusion model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

FINDINGS_COLUMNS = [
    "concept",
    "axis",
    "value",
    "share",
    "ci_low",
    "ci_high",
    "samples",
    "resampled",
    "readout",
    "validated",
    "method_validated",
    "check",
    "check_agreement",
    "check_samples",
    "unvalidated_corrected_share",
    "unvalidated_corrected_ci_low",
    "unvalidated_corrected_ci_high",
    "text_share",
    "text_agrees",
]

#: The corrected shares' columns in the findings: not validated (docs/validation.md, "The
#: check": on the worlds' biased vote they lay further from the images than the raw votes).
CORRECTED = {
    "corrected_share": "unvalidated_corrected_share",
    "corrected_ci_low": "unvalidated_corrected_ci_low",
    "corrected_ci_high": "unvalidated_corrected_ci_high",
}

REFERENCE_COLUMNS = [
    "reference",
    "axis",
    "value",
    "column",
    "n",
    "spearman_share",
    "spearman_share_ci_low",
    "spearman_share_ci_high",
    "pearson_share",
    "mae_share",
    "published",
    "spearman_published",
    "spearman_published_ci_low",
    "spearman_published_ci_high",
]


def majority(shares: pd.Series) -> str | None:
    """The value with the strictly largest share, or None on a tie."""
    top = shares.max()
    winners = shares.index[shares == top]
    return str(winners[0]) if len(winners) == 1 else None


def findings_table(
    votes: pd.DataFrame,
    readout: str,
    method_validated: bool,
    control: pd.DataFrame | None = None,
    check: pd.DataFrame | None = None,
    corrected: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (concept, axis, value): the share of the concept's samples voting for the
    value, its CI and sample count (from ``votes.tsv`` of the descriptors analysis), and the text
    control's share with ``text_agrees``: both readouts name the same strict majority value.

    Two facts label each row: ``method_validated``, whether the readout is validated on the
    reference worlds for this kind of denoiser, and ``check``, this model's check of the axis
    (``check/agreement.tsv``: ``passed``/``failed``, or ``not checked``) with its agreement and
    determined readings. ``validated`` holds only where both do. ``corrected``: the shares
    corrected for the vote's misclassification on the checked samples, named unvalidated
    (:data:`CORRECTED`): on the reference worlds they moved biased votes further from the
    images (docs/validation.md, "The check").
    """
    from scalex.analysis.check import NOT_CHECKED, PASSED

    table = votes.rename(columns={"descriptor": "value"}).copy()
    table["readout"] = readout
    table["method_validated"] = bool(method_validated)
    by_axis = check.set_index("axis") if check is not None else pd.DataFrame()
    table["check"] = [
        str(by_axis.at[a, "status"]) if a in by_axis.index else NOT_CHECKED for a in table["axis"]
    ]
    table["check_agreement"] = [
        float(by_axis.at[a, "agreement"]) if a in by_axis.index else np.nan for a in table["axis"]
    ]
    table["check_samples"] = [
        int(by_axis.at[a, "determined"]) if a in by_axis.index else 0 for a in table["axis"]
    ]
    table["validated"] = table["method_validated"] & (table["check"] == PASSED)
    for column in CORRECTED.values():
        table[column] = np.nan
    if corrected is not None and not corrected.empty:
        fixed = corrected.set_index(["concept", "axis", "value"])
        keys = list(zip(table["concept"], table["axis"], table["value"], strict=True))
        for source, column in CORRECTED.items():
            table[column] = [float(fixed[source].get(k, np.nan)) for k in keys]
    table["text_share"] = np.nan
    table["text_agrees"] = False
    if control is not None and not control.empty:
        text = control.rename(columns={"descriptor": "value"}).set_index(
            ["concept", "axis", "value"]
        )["share"]
        keys = list(zip(table["concept"], table["axis"], table["value"], strict=True))
        table["text_share"] = [float(text.get(k, np.nan)) for k in keys]
        for (_, _), rows in table.groupby(["concept", "axis"], sort=False):
            model = majority(rows.set_index("value")["share"])
            shares = rows.set_index("value")["text_share"]
            said = majority(shares) if shares.notna().all() else None
            table.loc[rows.index, "text_agrees"] = model is not None and model == said
    if "resampled" not in table:
        table["resampled"] = "seeds"
    return table[FINDINGS_COLUMNS].reset_index(drop=True)


def validation_label(rows: pd.DataFrame) -> str:
    """The two facts of a set of findings rows, for a figure's title: the method's validation
    for this denoiser, and this model's check."""
    from scalex.analysis.check import NOT_CHECKED, PASSED

    method = (
        "method validated"
        if bool(rows["method_validated"].all())
        else ("method NOT validated for this denoiser")
    )
    status = str(rows["check"].iloc[0]) if len(rows) else NOT_CHECKED
    if status == NOT_CHECKED:
        return f"{method}; not checked on this model"
    agreement = float(rows["check_agreement"].iloc[0])
    n = int(rows["check_samples"].iloc[0])
    verdict = "check passed" if status == PASSED else "check FAILED"
    return f"{method}; {verdict} on this model (agreement {agreement:.2f}, n {n})"


def first_value_shares(findings: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The rows of an axis's first value (e.g. ``female`` of gender), one per concept."""
    rows = findings[findings["axis"] == axis]
    if rows.empty:
        return rows
    first = rows["value"].iloc[0]
    return rows[rows["value"] == first].reset_index(drop=True)


def compare_with_references(
    findings: pd.DataFrame,
    references: Mapping[str, Mapping[str, Any]],
    tables: Mapping[str, pd.DataFrame],
    published: Mapping[str, pd.Series] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Each reference figure (labour statistics, image-level fractions of another study) against
    the estimated shares, and, beside it, against the published cosine score.

    ``references[name]`` holds ``axis``, ``value``, ``key``, ``column`` and ``scale`` (the
    reference's value of a share of 1: 100 for percentages); ``tables[name]`` is the reference
    table and ``published[name]`` the pooled cosine scores of the defaults analysis it names.
    The MAE is the mean absolute gap between share and scaled reference, meaningful when the
    reference counts images (e.g. another model's image fractions).
    """
    from scalex.analysis.defaults import correlate_with_reference, normalise_name

    rows = []
    for name, spec in references.items():
        axis_rows = findings[
            (findings["axis"] == spec["axis"]) & (findings["value"] == spec["value"])
        ]
        shares = axis_rows.set_index("concept")["share"].astype(float)
        ref = tables[name].set_index(spec["key"])[spec["column"]].astype(float) / spec["scale"]
        corr = correlate_with_reference(shares, ref, n_boot=n_boot, seed=seed, level=level)
        matched = corr["concepts"]
        ref_norm = {normalise_name(k): v for k, v in ref.items()}
        gaps = [abs(shares[c] - ref_norm.get(normalise_name(c), np.nan)) for c in matched]
        row = {
            "reference": name,
            "axis": spec["axis"],
            "value": spec["value"],
            "column": spec["column"],
            "n": corr["n"],
            "spearman_share": corr["spearman_rho"],
            "spearman_share_ci_low": corr["spearman_ci_low"],
            "spearman_share_ci_high": corr["spearman_ci_high"],
            "pearson_share": corr["pearson_r"],
            "mae_share": float(np.nanmean(gaps)) if gaps else np.nan,
            "published": spec.get("published") or "",
            "spearman_published": np.nan,
            "spearman_published_ci_low": np.nan,
            "spearman_published_ci_high": np.nan,
        }
        if spec.get("published") and published and name in published:
            pub = correlate_with_reference(
                published[name], ref, n_boot=n_boot, seed=seed, level=level
            )
            row["spearman_published"] = pub["spearman_rho"]
            row["spearman_published_ci_low"] = pub["spearman_ci_low"]
            row["spearman_published_ci_high"] = pub["spearman_ci_high"]
        rows.append(row)
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
