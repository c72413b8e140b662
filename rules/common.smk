# Helpers shared by all rules: the validated config, the concept table and the paths.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from scalex.concepts import BASELINE_ID, baseline_concept, buckets, load_concepts
from scalex.jobs import prompt_record
from scalex.config import (
    canonical_json,
    extraction_settings,
    results_tree,
    seeds,
    settings_hash,
    validate_config,
)

config.update(validate_config(config, base=workflow.basedir))

TREE = results_tree(config)
HASH = settings_hash(config)
SETTINGS = extraction_settings(config)
SEEDS = seeds(config)
CONCEPTS = load_concepts(config, base=workflow.basedir)
CONCEPTS[BASELINE_ID] = baseline_concept(config)
BUCKETS = buckets(
    [c for c in CONCEPTS if c != BASELINE_ID], config["extraction"]["buckets"]
)
BUCKETS[BASELINE_ID] = [BASELINE_ID]
RUNTIME = {
    key: config[section][key]
    for section, keys in (
        ("sampling", ("device", "batch_size")),
        ("extraction", ("progress", "compression")),
    )
    for key in keys
}


wildcard_constraints:
    concept=r"[a-z0-9][a-z0-9_.-]*",
    bucket=r"b[0-9]{4}|baseline",


def concept_spec(wildcards):
    """The concept's prompts and seeds: editing one concept reruns only its chain."""
    return canonical_json(prompt_record(CONCEPTS[wildcards.concept], SEEDS))


def bucket_prompts(wildcards):
    return [f"{TREE}/prompts/{cid}.json" for cid in BUCKETS[wildcards.bucket]]


def concept_buckets():
    return [b for b in BUCKETS if b != BASELINE_ID]


def all_outputs():
    return [
        f"{TREE}/similarity/similarity.tsv",
        f"{TREE}/clusters/clusters.tsv",
    ]


def write_prompts_logged(spec, out, log_path):
    import json

    from scalex.jobs import write_prompts

    record = json.loads(spec)
    write_prompts(record, out)
    Path(log_path).write_text(f"{record['id']}: {len(record['prompts'])} prompts\n")
