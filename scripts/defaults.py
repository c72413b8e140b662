"""Rule defaults: Bias scores of target concepts along an attribute pair.

The work is :mod:`scalex.steps.defaults`.
"""

from scalex.steps import defaults

defaults.main(snakemake)  # noqa: F821 (injected by Snakemake)
