"""Rule prompts: The prompt file of a bucket of concepts.

The work is :mod:`scalex.steps.prompts`.
"""

from scalex.steps import prompts

prompts.main(snakemake)  # noqa: F821 (injected by Snakemake)
