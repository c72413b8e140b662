"""Rule vocabulary_prompts: The prompt file of a vocabulary chunk.

The work is :mod:`scalex.steps.prompts`.
"""

from scalex.steps import prompts

prompts.main(snakemake)  # noqa: F821 (injected by Snakemake)
