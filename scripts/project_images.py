"""Rule projection: score labelled images on a concept direction, AUC per step."""

import json

from scalex.conditioning import run_projection
from scalex.config import runtime_options
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: run_projection(
        smk.input.directions,
        smk.params.images_dir,
        smk.input.labels,
        smk.output.scores,
        smk.output.auc,
        json.loads(smk.params.settings),
        smk.params.settings_hash,
        json.loads(smk.params.spec),
        tap=smk.params.tap,
        runtime=runtime_options(smk.config),
    ),
)
