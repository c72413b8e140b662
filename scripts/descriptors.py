"""Rule descriptors: Identity descriptors ranked by alignment.

The work is :mod:`scalex.steps.descriptors`.
"""

from scalex.steps import descriptors

descriptors.main(snakemake)  # noqa: F821 (injected by Snakemake)
