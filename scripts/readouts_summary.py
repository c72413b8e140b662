"""Rule readouts_summary: Agreement of each readout with the text control.

The work is :mod:`scalex.steps.readouts_summary`.
"""

from scalex.steps import readouts_summary

readouts_summary.main(snakemake)  # noqa: F821 (injected by Snakemake)
