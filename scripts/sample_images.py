"""Rule sample_images: render and read every voted sample of a reference-world run.

The work is :func:`scalex_refworld.sample_check.run_job`.
"""

from scalex_refworld import sample_check

sample_check.run_job(snakemake)  # noqa: F821 (injected by Snakemake)
