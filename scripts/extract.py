"""Rule extract: H-space activations of a bucket of concepts into an HDF5 shard.

The work is :mod:`scalex.steps.extract`.
"""

from scalex.steps import extract

extract.main(snakemake)  # noqa: F821 (injected by Snakemake)
