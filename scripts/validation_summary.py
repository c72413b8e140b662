"""Rule validation_summary: every readout's ground-truth figures in one table."""

from scalex.rulekit import run_rule
from scalex_refworld.validate import combine

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(smk, lambda: combine(smk.input, smk.params.readouts, smk.output[0]))
