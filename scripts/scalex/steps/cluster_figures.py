"""Rule cluster_figures: dendrogram, cluster-ordered heatmap, 2-D concept map and silhouette
curve of a clustering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex.io import placeholder_figure
from scalex.rulekit import run_rule


def run(
    matrix_tsv: str | Path,
    clusters_tsv: str | Path,
    silhouette_tsv: str | Path,
    out_dir: str | Path,
    linkage_method: str = "average",
    readout: str | None = None,
    variant: str | None = None,
) -> None:
    """Dendrogram, cluster-ordered heatmap, 2-D map and silhouette curve of the clustering;
    ``readout`` and ``variant`` (raw, axes_removed) go into every title."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    from scalex.analysis import figures

    out = Path(out_dir)
    matrix = pd.read_csv(matrix_tsv, sep="\t", index_col=0)
    labels = pd.read_csv(clusters_tsv, sep="\t")
    ids = list(labels["concept"])
    sub = matrix.loc[ids, ids].to_numpy(dtype=np.float64)
    distance = np.clip(1.0 - (sub + sub.T) / 2, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    clusters = list(labels["cluster"])
    where = {"readout": readout, "variant": variant}
    if len(ids) >= 2:
        tree = linkage(squareform(distance, checks=False), method=linkage_method)
        figures.dendrogram(tree, ids, clusters, out / "dendrogram.png", **where)
    else:
        placeholder_figure(out / "dendrogram.png", "fewer than two concepts")
    figures.similarity_heatmap(sub, ids, clusters, out / "similarity_heatmap.png", **where)
    figures.concept_map(
        ids, clusters, out / "concept_map.png", similarity=sub, sets=list(labels["set"]), **where
    )
    curve = pd.read_csv(silhouette_tsv, sep="\t")
    if len(curve):
        # k = 1 (no structure by the permutation null) is no row of the curve
        chosen = int(curve.loc[curve["chosen"], "k"].iloc[0]) if curve["chosen"].any() else 1
        figures.silhouette_curve(
            curve["k"], curve["silhouette"], chosen, out / "silhouette.png", **where
        )
    else:
        placeholder_figure(out / "silhouette.png", "too few concepts for a silhouette curve")


def main(smk: Any) -> None:
    run_rule(
        smk,
        lambda: run(
            smk.input.matrix,
            smk.input.clusters,
            smk.input.silhouette,
            Path(smk.output.dendrogram).parent,
            smk.params.linkage,
            readout=smk.wildcards.readout,
            variant=smk.wildcards.variant,
        ),
    )
