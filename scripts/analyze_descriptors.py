"""Rule descriptors: rank descriptors by alignment with each target concept."""

import json
from pathlib import Path

from scalex.analyze import load_concept_diffs, locate_concepts, run_descriptors
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)


def work():
    data = load_concept_diffs(
        locate_concepts(smk.input.shards, smk.params.concepts),
        smk.input.baseline,
        smk.params.settings_hash,
        smk.params.tap,
        smk.params.space,
        readout=smk.wildcards.readout,
    )
    run_descriptors(
        data,
        smk.params.targets,
        json.loads(smk.params.axes)["axes"],
        Path(smk.output.table).parent,
        json.loads(smk.params.bootstrap),
    )


run_rule(smk, work)
