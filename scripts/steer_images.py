"""Rule steering: images of a prompt steered along a concept direction (grid and arrays)."""

import json

from scalex.conditioning import run_steering
from scalex.config import runtime_options
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: run_steering(
        smk.input.directions,
        smk.output.grid,
        smk.output.images,
        json.loads(smk.params.settings),
        smk.params.settings_hash,
        json.loads(smk.params.spec),
        tap=smk.params.tap,
        runtime=runtime_options(smk.config),
    ),
)
