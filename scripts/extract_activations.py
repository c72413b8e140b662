"""Rule extract: H-space activations of one bucket of concepts into an HDF5 shard."""

import json
import logging

from scalex.config import runtime_options
from scalex.jobs import extract_shard
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)


def work():
    timings = extract_shard(
        smk.input,
        smk.output[0],
        json.loads(smk.params.settings),
        smk.params.settings_hash,
        runtime=runtime_options(smk.config),
    )
    rate = timings["samples"] / max(timings["extract_s"], 1e-9)
    logging.getLogger("scalex").info(
        "model load %.2f s, extraction %.2f s (%.1f samples/s), write %.2f s",
        timings["load_s"],
        timings["extract_s"],
        rate,
        timings["write_s"],
    )


run_rule(smk, work)
