"""Rule clusters: Hierarchical clusters of concepts, with a permutation null.

The work is :mod:`scalex.steps.clusters`.
"""

from scalex.steps import clusters

clusters.main(snakemake)  # noqa: F821 (injected by Snakemake)
