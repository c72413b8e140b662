"""Rule extract_vocabulary: H-space activations of a vocabulary chunk into an HDF5 shard.

The work is :mod:`scalex.steps.extract`.
"""

from scalex.steps import extract

extract.main(snakemake)  # noqa: F821 (injected by Snakemake)
