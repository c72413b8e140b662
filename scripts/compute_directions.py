"""Rule directions: concept directions of one activation shard."""

from scalex.jobs import compute_directions
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: compute_directions(
        smk.input.shard,
        smk.input.baseline,
        smk.output[0],
        smk.params.settings_hash,
        tap=smk.params.tap,
        kind=smk.params.space,
        readout=smk.wildcards.readout,
    ),
)
