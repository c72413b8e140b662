"""Ground-truth check: do scalex's prompt-only analyses find the biases planted in the model?

Compares the workflow's results on the reference model with the truth of the world:
- gender defaults: Spearman rho between the profession bias scores (woman - man) and (a) the
  woman fraction the model realises in images (read back with the attribute reader), (b) the
  planted P(woman | profession);
- clusters: adjusted Rand index of the profession clustering against the profession families;
- descriptors: top-1 accuracy of the descriptor ranking against each profession's planted
  majority descriptor, per axis.
Each figure is written with its target, and the summary says whether the target is met.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

from scalex_refworld import world as W

#: Targets of the ground-truth check (issue: reference model).
TARGETS = {"spearman_realised": 0.9, "spearman_planted": 0.9, "ari_families": 0.8, "top1": 0.9}

#: Planted-table column and its "positive" descriptor value, per descriptor axis.
AXES = {"age": ("p_old", "old", "young"), "wealth": ("p_rich", "rich", "poor")}


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, float_format="%.4f")


def realised_woman_fraction(rates_tsv: str | Path) -> pd.Series:
    """Image-level woman fraction per profession from the evaluation's rates table.

    With several guidance scales in the table, the one the model follows best (smallest mean
    absolute gap to the planted rates) is used, so the figure reflects the model, not a sampler.
    """
    rates = pd.read_csv(rates_tsv, sep="\t")
    rates = rates[(rates["axis"] == "gender") & (rates["profession"].isin(W.PROFESSIONS))]
    if "guidance_scale" in rates.columns and rates["guidance_scale"].nunique() > 1:
        gaps = rates.groupby("guidance_scale")["gap"].apply(lambda g: g.abs().mean())
        rates = rates[rates["guidance_scale"] == gaps.idxmin()]
    return rates.set_index("profession")["realised"].astype(float)


def validate(
    bias_tsv: str | Path,
    clusters_tsv: str | Path,
    top_descriptors_tsv: str | Path,
    planted_tsv: str | Path,
    rates_tsv: str | Path,
    out_dir: str | Path,
    raw_similarity_tsv: str | Path | None = None,
) -> pd.DataFrame:
    """Write the validation tables into ``out_dir`` and return the summary.

    With ``raw_similarity_tsv`` (the all-concept cosine matrix), the summary also reports, for
    information, the ARI of clustering the professions without removing identity axes.
    """
    out = Path(out_dir)
    table = W.load_table(planted_tsv)
    planted = pd.DataFrame(table).T
    planted.index.name = "profession"

    bias = pd.read_csv(bias_tsv, sep="\t")
    bias = bias[bias["step"].astype(str) == "all"].set_index("concept")
    realised = realised_woman_fraction(rates_tsv)
    profs = [p for p in W.PROFESSIONS if p in bias.index]
    gender = pd.DataFrame(
        {
            "profession": profs,
            "family": [W.FAMILY_OF[p] for p in profs],
            "bias_score": [bias.loc[p, "score"] for p in profs],
            "ci_low": [bias.loc[p, "ci_low"] for p in profs],
            "ci_high": [bias.loc[p, "ci_high"] for p in profs],
            "planted_p_woman": [float(planted.loc[p, "p_woman"]) for p in profs],
            "realised_woman_fraction": [float(realised.get(p, np.nan)) for p in profs],
        }
    )
    _write(gender, out / "gender_defaults.tsv")
    rho_real = float(
        spearmanr(gender["bias_score"], gender["realised_woman_fraction"], nan_policy="omit")[0]
    )
    rho_plant = float(spearmanr(gender["bias_score"], gender["planted_p_woman"])[0])

    clusters = pd.read_csv(clusters_tsv, sep="\t")
    clusters = clusters[clusters["concept"].isin(W.PROFESSIONS)].copy()
    clusters["family"] = [W.FAMILY_OF[p] for p in clusters["concept"]]
    _write(clusters[["concept", "family", "cluster"]], out / "clustering.tsv")
    ari = float(adjusted_rand_score(clusters["family"], clusters["cluster"]))

    top = pd.read_csv(top_descriptors_tsv, sep="\t")
    rows = []
    for _, r in top[top["concept"].isin(W.PROFESSIONS)].iterrows():
        if r["axis"] not in AXES:
            continue
        column, positive, negative = AXES[r["axis"]]
        majority = positive if float(planted.loc[r["concept"], column]) > 0.5 else negative
        rows.append(
            {
                "profession": r["concept"],
                "axis": r["axis"],
                "planted_majority": majority,
                "top_descriptor": r["descriptor"],
                "correct": r["descriptor"] == majority,
                "p_top1": r.get("p_top1", np.nan),
            }
        )
    desc = pd.DataFrame(rows)
    _write(desc, out / "descriptors.tsv")
    top1 = float(desc["correct"].mean()) if len(desc) else float("nan")

    values = {
        "spearman_realised": rho_real,
        "spearman_planted": rho_plant,
        "ari_families": ari,
        "top1": top1,
    }
    counts = [len(gender), len(gender), len(clusters), len(desc)]
    if raw_similarity_tsv is not None:
        from scalex.similarity import cluster_concepts

        raw = pd.read_csv(raw_similarity_tsv, sep="\t", index_col=0)
        profs = [p for p in W.PROFESSIONS if p in raw.index]
        labels = cluster_concepts(raw.loc[profs, profs].to_numpy(), k_min=2, k_max=8).labels
        values["ari_families_raw"] = float(
            adjusted_rand_score([W.FAMILY_OF[p] for p in profs], labels)
        )
        counts.append(len(profs))
    summary = pd.DataFrame(
        {
            "metric": list(values),
            "value": list(values.values()),
            "target": [TARGETS.get(k, np.nan) for k in values],
            "met": [bool(values[k] >= TARGETS[k]) if k in TARGETS else None for k in values],
            "n": counts,
        }
    )
    _write(summary, out / "summary.tsv")
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m scalex_refworld.validate BIAS CLUSTERS TOP PLANTED RATES OUT``."""
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("bias", "clusters", "top_descriptors", "planted", "rates", "out"):
        parser.add_argument(name)
    parser.add_argument("--raw-similarity", help="all-concept cosine matrix (similarity.tsv)")
    a = parser.parse_args(argv)
    summary = validate(
        a.bias, a.clusters, a.top_descriptors, a.planted, a.rates, a.out, a.raw_similarity
    )
    print(summary.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
