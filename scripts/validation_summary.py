"""Rule validation_summary: every readout's ground-truth figures in one table (and the check's,
when the run has one)."""

import json

from scalex.rulekit import run_rule
from scalex_refworld.validate import combine

smk = snakemake  # noqa: F821 (injected by Snakemake)
spec = json.loads(smk.params.check)
check = (
    {
        "samples": smk.input.check_samples,
        "findings": smk.input.findings,
        "images": smk.input.images,
        **spec,
    }
    if spec
    else None
)
run_rule(smk, lambda: combine(smk.input.summaries, smk.params.readouts, smk.output[0], check))
