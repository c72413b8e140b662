"""Rule check: the findings' votes against the images of the samples that cast them.

The work is :mod:`scalex.steps.check`.
"""

from scalex.steps import check

check.main(snakemake)  # noqa: F821 (injected by Snakemake)
