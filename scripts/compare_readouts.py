"""Rule compare_readouts: One analysis's scores for every readout side by side.

The work is :mod:`scalex.steps.compare_readouts`.
"""

from scalex.steps import compare_readouts

compare_readouts.main(snakemake)  # noqa: F821 (injected by Snakemake)
