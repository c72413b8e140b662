"""Readouts side by side: which findings the text encoder alone already makes.

For each defaults analysis, the per-concept scores of every readout in one table, and for each
H-space readout its agreement with the text-encoder control (Spearman rho over concepts and the
share of concepts leaning the same way). For descriptors, the share of (concept, axis) pairs whose
top descriptor is the text control's. High agreement means a finding could have been read off the
text encoder without running the diffusion model; low agreement on a readout that validation
supports means the model generates something its text encoder does not say.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from scalex.layout import TEXT


def defaults_side_by_side(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Pooled score and CI of every concept per readout: one row per concept."""
    cols = {}
    for readout, table in tables.items():
        pooled = table[table["step"].astype(str) == "all"].set_index("concept")
        cols[f"{readout}_score"] = pooled["score"]
        cols[f"{readout}_ci_low"] = pooled["ci_low"]
        cols[f"{readout}_ci_high"] = pooled["ci_high"]
    wide = pd.DataFrame(cols)
    wide.index.name = "concept"
    first = next(iter(tables))
    return wide.sort_values(f"{first}_score", ascending=False).reset_index()


def agreement_with_text(
    defaults: Mapping[str, pd.DataFrame], descriptors: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """One row per (analysis, H-space readout): its agreement with the text control."""
    rows = []
    for name, wide in defaults.items():
        if f"{TEXT}_score" not in wide:
            continue
        text = wide[f"{TEXT}_score"].to_numpy(float)
        for col in wide.columns:
            if not col.endswith("_score") or col == f"{TEXT}_score":
                continue
            score = wide[col].to_numpy(float)
            rho = float(spearmanr(score, text)[0]) if len(score) > 2 else float("nan")
            rows.append(
                {
                    "analysis": f"defaults:{name}",
                    "readout": col.removesuffix("_score"),
                    "spearman_with_text": rho,
                    "same_sign_as_text": float(np.mean(np.sign(score) == np.sign(text))),
                    "n": len(score),
                }
            )
    if descriptors and TEXT in descriptors:
        key = ["concept", "axis"]
        text = descriptors[TEXT].set_index(key)["descriptor"]
        for readout, top in descriptors.items():
            if readout == TEXT:
                continue
            mine = top.set_index(key)["descriptor"]
            common = mine.index.intersection(text.index)
            rows.append(
                {
                    "analysis": "descriptors",
                    "readout": readout,
                    "spearman_with_text": float("nan"),
                    "same_sign_as_text": float((mine[common] == text[common]).mean()),
                    "n": len(common),
                }
            )
    return pd.DataFrame(
        rows, columns=["analysis", "readout", "spearman_with_text", "same_sign_as_text", "n"]
    )
