"""Rule readouts_summary: each H-space readout's agreement with the text-encoder control."""

from scalex.analyze import run_readouts_summary
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: run_readouts_summary(
        dict(zip(smk.params.names, smk.input.defaults, strict=True)),
        dict(zip(smk.params.readouts, smk.input.tops, strict=True)),
        smk.output[0],
    ),
)
