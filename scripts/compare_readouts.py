"""Rule compare_readouts: one defaults analysis on every readout, side by side."""

from scalex.analyze import run_compare_readouts
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: run_compare_readouts(
        dict(zip(smk.params.readouts, smk.input, strict=True)),
        smk.output.table,
        smk.output.figure,
        title=f"defaults: {smk.wildcards.name}",
    ),
)
