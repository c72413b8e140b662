"""Rule discovery: A vocabulary ranked by alignment with query directions.

The work is :mod:`scalex.steps.discovery`.
"""

from scalex.steps import discovery

discovery.main(snakemake)  # noqa: F821 (injected by Snakemake)
