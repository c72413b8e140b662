"""Rule diff: did a second model (a fine-tune, an edit, a new version) change the findings, and
are the changes real? Both models' findings side by side, with paired statistics.

Both trees hold the same concepts, templates and seeds (the new one is made by the same rules
with only the model changed), so every sample has a counterpart; each difference is bootstrapped
with one resample for both models (:mod:`scalex.analysis.compare`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from scalex.io import read_tsv, write_json, write_tsv
from scalex.layout import descriptor_slug
from scalex.rulekit import run_rule


def share_table(
    base_votes: pd.DataFrame,
    new_votes: pd.DataFrame,
    axes: Mapping[str, Sequence[str]],
    boot: Mapping[str, Any],
    fdr: float,
    base_control: pd.DataFrame | None = None,
    new_control: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`~scalex.analysis.compare.share_differences` of the findings votes, with the text
    control's shares and difference beside (``text_base``, ``text_new``, ``text_difference``):
    a change the text encoder alone also shows is not the denoiser's."""
    from scalex.analysis.compare import share_differences

    kw = {"n_boot": boot["bootstrap"], "level": boot["confidence"], "seed": boot["seed"]}
    table = share_differences(base_votes, new_votes, axes, fdr=fdr, **kw)
    if base_control is not None and new_control is not None:
        text = share_differences(base_control, new_control, axes, fdr=fdr, **kw)
        text = text[["concept", "axis", "base", "new", "difference"]].rename(
            columns={"base": "text_base", "new": "text_new", "difference": "text_difference"}
        )
        table = table.merge(text, on=["concept", "axis"], how="left")
    return table


def flagged_changes(shares: pd.DataFrame, ranking: pd.DataFrame) -> pd.DataFrame:
    """The flagged rows of both tables, one layout (finding, concept, axis, value, base, new,
    difference, CI, q-value), the largest changes first."""
    cols = ["finding", "concept", "axis", "value", "base", "new", "difference", "ci_low"]
    cols += ["ci_high", "q_value"]
    parts = [t.loc[t["flagged"].astype(bool), cols] for t in (shares, ranking)]
    both = pd.concat(parts, ignore_index=True)
    order = both["difference"].abs().sort_values(ascending=False, kind="stable").index
    return both.loc[order].reset_index(drop=True)


def load_diffs(
    shards: Sequence[str], baseline: str, concepts: Sequence[str], spec: Mapping, side: str
) -> dict[str, Any]:
    """One model's paired differences of the descriptor concepts, from its own tree (checked
    against its own settings hash)."""
    from scalex.analysis.stats import as_concepts
    from scalex.differences import load_concept_diffs, locate_concepts

    data = load_concept_diffs(
        locate_concepts(shards, concepts),
        baseline,
        spec[side]["settings_hash"],
        spec["tap"],
        spec["space"],
        readout=spec["readout"],
    )
    return as_concepts(data["diffs"], data["templates"])


def run(
    inputs: Mapping[str, Any],
    spec: Mapping[str, Any],
    boot: Mapping[str, Any],
    out: Mapping[str, Any],
) -> pd.DataFrame:
    """Write ``diff.tsv`` (identity shares), ``descriptors.tsv`` (descriptor ranking),
    ``clusters.tsv``, ``summary.json`` and one dumbbell figure per axis."""
    from scalex.analysis import figures
    from scalex.analysis.compare import cluster_changes, margin_differences

    fdr = float(spec["fdr"])
    axes = {axis: [descriptor_slug(v) for v in values] for axis, values in spec["axes"].items()}
    control = "base_control" in inputs and "new_control" in inputs
    shares = share_table(
        read_tsv(inputs["base_votes"]),
        read_tsv(inputs["new_votes"]),
        axes,
        boot,
        fdr,
        read_tsv(inputs["base_control"]) if control else None,
        read_tsv(inputs["new_control"]) if control else None,
    )
    shares.insert(0, "finding", "share")
    shares["readout"] = spec["readout"]
    shares["validated"] = bool(spec["validated"])
    write_tsv(shares, out["table"])

    base = load_diffs(
        inputs["base_shards"], inputs["base_baseline"], spec["concepts"], spec, "base"
    )
    new = load_diffs(inputs["new_shards"], inputs["new_baseline"], spec["concepts"], spec, "new")
    kw = {"n_boot": boot["bootstrap"], "level": boot["confidence"], "seed": boot["seed"]}
    ranking = margin_differences(base, new, spec["targets"], axes, fdr=fdr, **kw)
    ranking.insert(0, "finding", "descriptor_margin")
    ranking["readout"] = spec["readout"]
    write_tsv(ranking, out["descriptors"])

    write_tsv(flagged_changes(shares, ranking), out["flagged"])

    clusters_base = read_tsv(inputs["base_clusters"]).set_index("concept")["cluster"]
    clusters_new = read_tsv(inputs["new_clusters"]).set_index("concept")["cluster"]
    ari, moved = cluster_changes(clusters_base, clusters_new)
    clusters = pd.DataFrame(
        {
            "concept": clusters_base.index,
            "cluster_base": clusters_base.to_numpy(),
            "cluster_new": clusters_new.reindex(clusters_base.index).to_numpy(),
        }
    )
    clusters["moved"] = clusters["concept"].isin(moved)
    write_tsv(clusters, out["clusters"])

    same_seeds = (
        spec["base"]["settings"]["sampling"]["seeds"]
        == spec["new"]["settings"]["sampling"]["seeds"]
    )
    summary = {
        "base": spec["base"],
        "new": spec["new"],
        "pairing": "same seeds" if same_seeds else "seed positions (compare.seeds)",
        "readout": spec["readout"],
        "validated": bool(spec["validated"]),
        "fdr": fdr,
        "bootstrap": dict(boot),
        "shares": {"tested": len(shares), "flagged": int(shares["flagged"].sum())},
        "descriptors": {
            "tested": len(ranking),
            "flagged": int(ranking["flagged"].sum()),
            "top_changed": int((ranking["top_base"] != ranking["top_new"]).sum()),
        },
        "clusters": {"ari": ari, "moved": moved, "concepts": len(clusters)},
    }
    write_json(summary, out["summary"])
    for axis, path in zip(axes, out["figures"], strict=True):
        figures.comparison_figure(shares, axis, path, spec["readout"], bool(spec["validated"]), fdr)
    return shares


def main(smk: Any) -> None:
    def work() -> None:
        inputs = dict(smk.input.items())
        outputs = dict(smk.output.items())
        run(inputs, json.loads(smk.params.spec), json.loads(smk.params.bootstrap), outputs)

    run_rule(smk, work)
