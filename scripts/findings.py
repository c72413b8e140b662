"""Rule findings: the run's headline table of estimated identity shares.

The work is :mod:`scalex.steps.findings`.
"""

from scalex.steps import findings

findings.main(snakemake)  # noqa: F821 (injected by Snakemake)
