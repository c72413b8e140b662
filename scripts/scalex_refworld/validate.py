"""Ground-truth check: do scalex's prompt-only analyses find what the model generates?

Compares the workflow's results on a reference-world model with the truth of its world:
- gender defaults: Spearman rho between the profession bias scores (woman - man) and (a) the
  woman fraction the model realises in images (read back with the attribute reader, committed in
  the world's ``evaluation/rates.tsv``), (b) the planted P(woman | profession);
- clusters: adjusted Rand index of the profession clusters against the world's families, for
  the clustering the config declares (``ari_families``) and for the raw directions
  (``ari_families_raw``);
- descriptors: top-1 accuracy of the descriptor ranking against each profession's realised
  majority descriptor (the planted one where no image was read), per axis.
Each figure is written with its target, and the summary says whether the target is met. The
targets and the analysis choices they judge were fixed before the results were looked at
(``docs/validation.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex_refworld import world as W

#: Targets of the ground-truth check (issue: findings that follow what the model generates).
TARGETS = {
    "spearman_realised": 0.9,
    "spearman_realised_vote": 0.9,
    "ari_families": 0.8,
    "top1": 0.9,
    # per-sample check (docs/validation.md, deviation 6): each vote against its own image
    "agreement_gender": 0.95,
    "agreement_age": 0.9,
    "agreement_wealth": 0.9,
}

#: Planted-table column and its "positive" and "negative" descriptor values, per descriptor axis.
AXES = {"age": ("p_old", "old", "young"), "wealth": ("p_rich", "rich", "poor")}
#: the realised-rates axis of each descriptor axis
RATE_AXIS = {"age": "age", "wealth": "wealth"}
#: the gender descriptor axis: a profession's own "female X" against "male X"
GENDER_DESCRIPTORS = ("gender", "female", "male")


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, float_format="%.4f")


def realised_rates(rates_tsv: str | Path, world: W.World) -> pd.DataFrame:
    """Realised rate per (profession, axis) from the evaluation's rates table.

    With several guidance scales in the table, the one the model follows best (smallest mean
    absolute gap to the planted rates) is used, so the figure reflects the model, not a sampler.
    """
    rates = pd.read_csv(rates_tsv, sep="\t")
    rates = rates[rates["profession"].isin(world.professions)]
    if "guidance_scale" in rates.columns and rates["guidance_scale"].nunique() > 1:
        gaps = rates.groupby("guidance_scale")["gap"].apply(lambda g: g.abs().mean())
        rates = rates[rates["guidance_scale"] == gaps.idxmin()]
    return rates.pivot(index="profession", columns="axis", values="realised").astype(float)


def check_evaluation(evaluation_dir: str | Path, model_digest: str | None) -> None:
    """Refuse realised rates that were measured on other weights than the model validated."""
    summary = Path(evaluation_dir) / "summary.json"
    if model_digest is None or not summary.is_file():
        return
    recorded = json.loads(summary.read_text()).get("model_digest")
    if recorded and recorded != model_digest:
        raise SystemExit(
            f"{summary}: the realised rates were measured on model {recorded}, not on "
            f"{model_digest}; rerun the world's evaluation (python -m scalex_refworld.build_world)"
        )


def validate(
    bias_tsv: str | Path,
    clusters_tsv: str | Path,
    top_descriptors_tsv: str | Path,
    world_tsv: str | Path,
    rates_tsv: str | Path,
    out_dir: str | Path,
    raw_clusters_tsv: str | Path | None = None,
    descriptors_tsv: str | Path | None = None,
    votes_tsv: str | Path | None = None,
    sample_votes_tsv: str | Path | None = None,
    sample_images_tsv: str | Path | None = None,
) -> pd.DataFrame:
    """Write the validation tables into ``out_dir`` and return the summary.

    With ``descriptors_tsv`` (the full descriptor table) and a gender descriptor axis, the
    summary also has ``spearman_realised_descriptor``: the rank correlation of each profession's
    alignment with "female X" minus "male X" with the realised woman fraction.

    With ``sample_votes_tsv`` and ``sample_images_tsv`` (every voted sample rendered and read,
    :mod:`scalex_refworld.sample_check`), it has, per descriptor axis the reader can read,
    ``agreement_<axis>`` (votes equal to their own image's reading), ``share_mae_<axis>`` and
    ``agreement_<axis>_chance`` (the control), and ``samples.tsv`` has the per-concept shares.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import adjusted_rand_score

    out = Path(out_dir)
    world = W.World.from_table(world_tsv)
    realised = realised_rates(rates_tsv, world)

    bias = pd.read_csv(bias_tsv, sep="\t")
    bias = bias[bias["step"].astype(str) == "all"].set_index("concept")
    profs = [p for p in world.professions if p in bias.index]
    gender = pd.DataFrame(
        {
            "profession": profs,
            "family": [world.family(p) for p in profs],
            "bias_score": [bias.loc[p, "score"] for p in profs],
            "ci_low": [bias.loc[p, "ci_low"] for p in profs],
            "ci_high": [bias.loc[p, "ci_high"] for p in profs],
            "planted_p_woman": [world.rates[p]["p_woman"] for p in profs],
            "realised_woman_fraction": [
                float(realised["gender"].get(p, np.nan)) if "gender" in realised else np.nan
                for p in profs
            ],
        }
    )
    _write(gender, out / "gender_defaults.tsv")
    rho_real = float(
        spearmanr(gender["bias_score"], gender["realised_woman_fraction"], nan_policy="omit")[0]
    )
    rho_plant = float(spearmanr(gender["bias_score"], gender["planted_p_woman"])[0])

    def ari(path: str | Path, name: str) -> tuple[float, int]:
        clusters = pd.read_csv(path, sep="\t")
        clusters = clusters[clusters["concept"].isin(world.professions)].copy()
        clusters["family"] = [world.family(p) for p in clusters["concept"]]
        _write(clusters[["concept", "family", "cluster"]], out / name)
        return float(adjusted_rand_score(clusters["family"], clusters["cluster"])), len(clusters)

    ari_declared, n_clustered = ari(clusters_tsv, "clustering.tsv")

    top = pd.read_csv(top_descriptors_tsv, sep="\t")
    rows = []
    for _, r in top[top["concept"].isin(world.professions)].iterrows():
        if r["axis"] not in AXES:
            continue
        column, positive, negative = AXES[r["axis"]]
        rate = realised[RATE_AXIS[r["axis"]]].get(r["concept"], np.nan)
        source = "realised"
        if not np.isfinite(rate):
            rate, source = world.rates[r["concept"]][column], "planted"
        majority = positive if rate > 0.5 else negative
        rows.append(
            {
                "profession": r["concept"],
                "axis": r["axis"],
                "majority": majority,
                "majority_from": source,
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
        "ari_families": ari_declared,
        "top1": top1,
    }
    counts = [len(gender), len(gender), n_clustered, len(desc)]
    if raw_clusters_tsv is not None:
        values["ari_families_raw"], n_raw = ari(raw_clusters_tsv, "clustering_raw.tsv")
        counts.append(n_raw)
    if descriptors_tsv is not None and "gender" in realised:
        axis, woman, man = GENDER_DESCRIPTORS
        full = pd.read_csv(descriptors_tsv, sep="\t")
        full = full[(full["axis"] == axis) & full["concept"].isin(world.professions)]
        if not full.empty:
            align = full.pivot(index="concept", columns="descriptor", values="alignment")
            margin = (align[woman] - align[man]).rename("female_minus_male")
            frame = pd.DataFrame(
                {"margin": margin, "realised": realised["gender"].reindex(margin.index)}
            )
            _write(frame.reset_index(), out / "gender_descriptors.tsv")
            values["spearman_realised_descriptor"] = float(
                spearmanr(frame["margin"], frame["realised"], nan_policy="omit")[0]
            )
            counts.append(len(frame))
    if votes_tsv is not None and "gender" in realised:
        axis, woman, _ = GENDER_DESCRIPTORS
        votes = pd.read_csv(votes_tsv, sep="\t")
        votes = votes[
            (votes["axis"] == axis)
            & (votes["descriptor"] == woman)
            & votes["concept"].isin(world.professions)
        ].set_index("concept")
        if not votes.empty:
            frame = pd.DataFrame(
                {
                    "share_female": votes["share"],
                    "realised": realised["gender"].reindex(votes.index),
                }
            )
            _write(frame.reset_index(), out / "gender_votes.tsv")
            values["spearman_realised_vote"] = float(
                spearmanr(frame["share_female"], frame["realised"], nan_policy="omit")[0]
            )
            counts.append(len(frame))
    if sample_votes_tsv is not None and sample_images_tsv is not None:
        from scalex_refworld.sample_check import agreement

        votes = pd.read_csv(sample_votes_tsv, sep="\t")
        votes = votes[votes["concept"].isin(world.professions)]
        images = pd.read_csv(sample_images_tsv, sep="\t")
        per_axis, per_concept = agreement(votes, images)
        _write(per_concept, out / "samples.tsv")
        for _, r in per_axis.iterrows():
            values[f"agreement_{r['axis']}"] = r["agreement"]
            values[f"share_mae_{r['axis']}"] = r["share_mae"]
            values[f"agreement_{r['axis']}_chance"] = r["chance"]
            counts += [int(r["samples"]), int(r["concepts"]), int(r["samples"])]
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


def combine(
    summaries: Sequence[str | Path],
    readouts: Sequence[str],
    out: str | Path,
    check: Mapping[str, Any] | None = None,
) -> None:
    """One table (readout x metric) from the per-readout summaries; with ``check`` (this run's
    check tables, the findings and the findings readout's per-concept image shares), the
    check's rows beside them (:func:`check_rows`, readout ``check``)."""
    frames = []
    for path, readout in zip(summaries, readouts, strict=True):
        frame = pd.read_csv(path, sep="\t")
        frame.insert(0, "readout", readout)
        frames.append(frame)
    if check:
        frame = check_rows(
            pd.read_csv(check["samples"], sep="\t"),
            pd.read_csv(check["findings"], sep="\t"),
            pd.read_csv(check["images"], sep="\t"),
            check["axes"],
            seed=int(check["seed"]),
            level=float(check["level"]),
        )
        frame.insert(0, "readout", "check")
        frames.append(frame)
    _write(pd.concat(frames, ignore_index=True), Path(out))


def check_rows(
    checked: pd.DataFrame,
    findings: pd.DataFrame,
    images: pd.DataFrame,
    axes: Mapping[str, Sequence[str]],
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """The check judged on a world (docs/validation.md, "The check"): per axis the check's
    agreement, CI, kappa and whether it passed; the same with the readings shuffled within each
    concept (the control, which must fail); and how far the raw and the corrected shares of
    the findings lie from the image shares of all the concept's samples (``images``: the
    findings readout's ``validation/samples.tsv``)."""
    from scalex.analysis.check import PASSED, agreement_table, shuffled

    values: dict[str, float] = {}
    counts: list[int] = []
    declared = {a: list(v) for a, v in axes.items()}
    for name, table in (
        ("check", agreement_table(checked, declared, level)),
        ("check_shuffled", agreement_table(shuffled(checked, seed), declared, level)),
    ):
        for _, r in table.iterrows():
            for metric in ("agreement", "ci_low", "ci_high", "kappa"):
                values[f"{name}_{metric}_{r['axis']}"] = float(r[metric])
                counts.append(int(r["determined"]))
            values[f"{name}_passed_{r['axis']}"] = float(r["status"] == PASSED)
            counts.append(int(r["determined"]))
    from scalex_refworld.sample_check import VOTE_READING

    for axis, axis_values in declared.items():
        mapping = VOTE_READING.get(axis, {})
        rows = images[images["axis"] == axis] if "axis" in images else images.iloc[0:0]
        if rows.empty:
            continue
        first = next((v for v in axis_values if mapping.get(v) == rows["value"].iloc[0]), None)
        if first is None:
            continue
        truth = rows.set_index("concept")["image_share"]
        mine = findings[(findings["axis"] == axis) & (findings["value"] == first)]
        mine = mine.set_index("concept").reindex(truth.index)
        values[f"share_mae_vote_{axis}"] = float((mine["share"] - truth).abs().mean())
        values[f"share_mae_corrected_{axis}"] = float(
            (mine["unvalidated_corrected_share"] - truth).abs().mean()
        )
        counts += [len(truth), int(mine["unvalidated_corrected_share"].notna().sum())]
    return pd.DataFrame(
        {
            "metric": list(values),
            "value": list(values.values()),
            "target": np.nan,
            "met": None,
            "n": counts,
        }
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m scalex_refworld.validate BIAS CLUSTERS TOP WORLD RATES OUT``."""
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("bias", "clusters", "top_descriptors", "world", "rates", "out"):
        parser.add_argument(name)
    parser.add_argument("--raw-clusters", help="clusters of the raw directions")
    parser.add_argument("--descriptors", help="the full descriptor table (descriptors.tsv)")
    parser.add_argument("--votes", help="the per-sample descriptor votes (votes.tsv)")
    parser.add_argument("--sample-votes", help="per-sample votes (sample_votes.tsv)")
    parser.add_argument("--sample-images", help="the voted samples, rendered and read")
    parser.add_argument("--model-digest", help="refuse rates measured on another model")
    a = parser.parse_args(argv)
    check_evaluation(Path(a.rates).parent, a.model_digest)
    summary = validate(
        a.bias,
        a.clusters,
        a.top_descriptors,
        a.world,
        a.rates,
        a.out,
        a.raw_clusters,
        a.descriptors,
        a.votes,
        a.sample_votes,
        a.sample_images,
    )
    print(summary.to_string(index=False))
    return 0


def run_job(smk) -> None:
    """Rule validate_reference: :func:`validate` of one readout's findings, after checking that
    the world's evaluation was measured on this very model."""
    from scalex.rulekit import run_rule

    def work() -> None:
        i = smk.input
        check_evaluation(Path(i.rates).parent, smk.params.digest)
        out = Path(smk.output.summary).parent
        summary = validate(
            i.bias,
            i.clusters,
            i.top,
            i.world,
            i.rates,
            out,
            i.raw_clusters,
            i.descriptors,
            i.votes,
            i.sample_votes,
            i.sample_images,
        )
        if not (out / "samples.tsv").is_file():
            _write(pd.DataFrame(), out / "samples.tsv")
        logging.getLogger("scalex").info("\n%s", summary.to_string(index=False))

    run_rule(smk, work)


if __name__ == "__main__":
    raise SystemExit(main())
