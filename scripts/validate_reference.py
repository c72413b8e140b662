"""Rule validate_reference: one readout's findings against the model's planted world.

The work is :func:`scalex_refworld.validate.run_job`.
"""

from scalex_refworld import validate

validate.run_job(snakemake)  # noqa: F821 (injected by Snakemake)
