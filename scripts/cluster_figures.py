"""Rule cluster_figures: Dendrogram, heatmap, concept map and silhouette curve.

The work is :mod:`scalex.steps.cluster_figures`.
"""

from scalex.steps import cluster_figures

cluster_figures.main(snakemake)  # noqa: F821 (injected by Snakemake)
