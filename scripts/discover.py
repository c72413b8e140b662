"""Rule discovery: rank a vocabulary by alignment with query directions."""

import json
from pathlib import Path

from scalex.analyze import run_discovery
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: run_discovery(
        smk.input.chunks,
        smk.input.baseline,
        smk.input.directions,
        Path(smk.output.table).parent,
        smk.params.settings_hash,
        json.loads(smk.params.queries),
        smk.params.tap,
        smk.params.space,
        smk.params.top_k,
        readout=smk.wildcards.readout,
    ),
)
