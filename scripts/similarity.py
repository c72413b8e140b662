"""Rule similarity: Nearest neighbours and cosine matrices of concept directions.

The work is :mod:`scalex.steps.similarity`.
"""

from scalex.steps import similarity

similarity.main(snakemake)  # noqa: F821 (injected by Snakemake)
