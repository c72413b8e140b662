"""Rule cluster_figures: dendrogram, ordered heatmap, 2-D map and silhouette curve."""

from pathlib import Path

from scalex.analyze import run_cluster_figures
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: run_cluster_figures(
        smk.input.matrix,
        smk.input.clusters,
        smk.input.silhouette,
        Path(smk.output.dendrogram).parent,
        smk.params.linkage,
    ),
)
