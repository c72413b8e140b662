"""Rule defaults: bias scores of target concepts along an attribute pair."""

import json
from pathlib import Path

from scalex.analyze import load_concept_diffs, locate_concepts, run_defaults
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)


def work():
    spec = json.loads(smk.params.spec)
    data = load_concept_diffs(
        locate_concepts(smk.input.shards, smk.params.concepts),
        smk.input.baseline,
        smk.params.settings_hash,
        smk.params.tap,
        smk.params.space,
        readout=smk.wildcards.readout,
    )
    targets = [c for c in smk.params.concepts if c not in spec["pair"]]
    run_defaults(
        data,
        targets,
        tuple(spec["pair"]),
        Path(smk.output.table).parent,
        json.loads(smk.params.bootstrap),
        reference=spec.get("reference"),
    )


run_rule(smk, work)
