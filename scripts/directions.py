"""Rule directions: Concept directions of one shard and readout.

The work is :mod:`scalex.steps.directions`.
"""

from scalex.steps import directions

directions.main(snakemake)  # noqa: F821 (injected by Snakemake)
