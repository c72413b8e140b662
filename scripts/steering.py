"""Rule steering: Images steered along a concept direction.

The work is :mod:`scalex.steps.steering`.
"""

from scalex.steps import steering

steering.main(snakemake)  # noqa: F821 (injected by Snakemake)
