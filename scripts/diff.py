"""Rule diff: both models' findings side by side, with paired differences and flags.

The work is :mod:`scalex.steps.diff`.
"""

from scalex.steps import diff

diff.main(snakemake)  # noqa: F821 (injected by Snakemake)
