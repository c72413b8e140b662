"""Rule projection: Labelled images scored on a concept direction (AUC).

The work is :mod:`scalex.steps.projection`.
"""

from scalex.steps import projection

projection.main(snakemake)  # noqa: F821 (injected by Snakemake)
