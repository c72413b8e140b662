# Helpers shared by all rules: the validated config, the concept table and the paths.
import importlib.util
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The package is installed (`make install`, or `pip install .`): the rules import it from there,
# so the workflow runs the same from a checkout as from a non-editable install.
if importlib.util.find_spec("scalex") is None:
    raise WorkflowError(
        "the scalex package is not installed: run `make install` (or pip install .)"
    )

from scalex.concepts import (
    BASELINE_ID,
    baseline_concept,
    bucket_count,
    bucket_of,
    buckets,
    check_analysis_references,
    load_concepts,
)
from scalex.errors import ConfigError, ModelError
from scalex.io import audit_tree, other_code_note, read_vocabulary
from scalex.steps.prompts import vocabulary_chunks, vocabulary_record
from scalex.steps.similarity import full_similarity
from scalex.loaders import ground_truth
from scalex.readouts import CONTROL, PUBLISHED, findings_readout
from scalex.model_checks import denoiser_kind
from scalex.memo import FORCED_ENV, forced_spec
from scalex.slurm import site_environment
from scalex.readers import resolve as resolve_reader
from scalex import layout
from scalex.config import (
    canonical_json,
    compared_config,
    check_device,
    check_model_settings,
    check_model_source,
    extraction_settings,
    results_tree,
    seeds,
    settings_hash,
    validate_config,
)

# The SLURM profiles' site settings (scalex.slurm), before the profile's resources are read.
site_environment(
    os.environ,
    names_account=not workflow.remote_exec
    and "slurm_account" in (workflow.resource_settings.default_resources or {}),
)

config.update(validate_config(config, base=workflow.basedir))
MODEL_FOLDER = check_model_source(config["model"]["id"])
check_model_settings(config, MODEL_FOLDER)
if workflow.local_exec and not workflow.remote_exec:
    check_device(config)  # jobs run on this machine: its accelerator must exist

TREE = results_tree(config)
HASH = settings_hash(config)
# A damaged or foreign file in the tree stops the run before any job starts.
if not workflow.remote_exec:
    _note = other_code_note(audit_tree(TREE, HASH), TREE)
    if _note:
        print(_note, file=sys.stderr)
SETTINGS = extraction_settings(config)
SEEDS = seeds(config)
CONCEPTS = load_concepts(config, base=workflow.basedir)
check_analysis_references(config, CONCEPTS, base=workflow.basedir)
CONCEPTS[BASELINE_ID] = baseline_concept(config)
N_BUCKETS = bucket_count(
    config["extraction"]["buckets"],
    len(SEEDS) * sum(len(c.prompts) for i, c in CONCEPTS.items() if i != BASELINE_ID),
)
BUCKETS = buckets([c for c in CONCEPTS if c != BASELINE_ID], N_BUCKETS)
#: A run whose concepts fit one bucket extracts them and the baseline in one job (one model load).
ONE_EXTRACTION_JOB = N_BUCKETS == 1 and list(BUCKETS) == ["b0000"]
BUCKETS[BASELINE_ID] = [BASELINE_ID]
ANALYSIS = config["analysis"]
#: What the model was built to show (a reference world's planted table), from its loader.
GROUND_TRUTH = ground_truth(config["model"]["id"])
#: Ground-truth validation runs (set by rules/reference_world.smk, included with its plug-in).
VALIDATION = False
BOOTSTRAP = canonical_json(
    {key: ANALYSIS[key] for key in ("bootstrap", "confidence", "seed")}
)
#: Every analysis runs on each stored readout; steering and projection use the primary one.
READOUTS = config["extraction"]["readouts"]
PRIMARY = config["directions"]["readout"]
#: Clusters are always computed raw, and also after removing the declared identity axes.
CLUSTER_VARIANTS = [layout.RAW] + (
    [layout.AXES_REMOVED] if config["clustering"]["remove_axes"] else []
)
DECLARED_VARIANT = CLUSTER_VARIANTS[-1]
#: Full N x N similarity matrices are written for small runs only (or when asked for).
FULL_SIMILARITY = full_similarity(
    len(CONCEPTS) - 1,
    config["similarity"]["full_matrices"],
    config["similarity"]["max_full_concepts"],
)


wildcard_constraints:
    **layout.WILDCARDS,


def out(key, **wildcards):
    """A path of the results tree: ``scalex.layout.OUTPUTS[key]`` under the run's tree, with the
    given wildcards filled in and the others left to Snakemake (one spelling for every rule,
    the default target and ``scalex.api``)."""
    return layout.path(key, TREE, **wildcards)


def logfile(rule, *wildcards, root=None):
    """The one log path convention: ``<tree>/logs/<rule>/<wildcard values joined by ->.log``
    (``root``: a rule that belongs to no results tree, e.g. a world's training, logs under it).
    """
    job = "-".join(f"{{{w}}}" for w in wildcards) or rule
    return layout.path("log", TREE if root is None else root, rule=rule, job=job)


def benchfile(rule, *wildcards, root=None):
    """The benchmark path next to :func:`logfile`'s: ``<tree>/benchmarks/<rule>/...tsv``."""
    job = "-".join(f"{{{w}}}" for w in wildcards) or rule
    return layout.path("benchmark", TREE if root is None else root, rule=rule, job=job)


def bucket_spec(wildcards):
    """A bucket's prompts and seeds: editing one concept reruns only its bucket's chain."""
    concepts = [CONCEPTS[cid].spec() for cid in BUCKETS[wildcards.bucket]]
    return canonical_json({"concepts": concepts, "seeds": SEEDS})


def concept_buckets():
    return [b for b in BUCKETS if b != BASELINE_ID]


def shard_of(cid):
    """The activation shard that holds a concept."""
    bucket = BASELINE_ID if cid == BASELINE_ID else bucket_of(cid, N_BUCKETS)
    return out("activations", bucket=bucket)


def concepts_in_sets(sets):
    return sorted(c for c, v in CONCEPTS.items() if v.set in sets)


def defaults_concepts(name):
    spec = ANALYSIS["defaults"][name]
    return concepts_in_sets(spec["targets"]) + list(spec["pair"])


def defaults_reference(wildcards):
    """The reference table a defaults analysis reads (editing it reruns the analysis)."""
    reference = ANALYSIS["defaults"][wildcards.name].get("reference")
    return [reference["file"]] if reference else []


def descriptor_concepts():
    """Target concepts and their derived "<descriptor> <concept>" concepts."""
    derived = [c for c, v in CONCEPTS.items() if v.derived]
    return sorted({CONCEPTS[c].derived["concept"] for c in derived} | set(derived))


def descriptor_targets():
    return sorted({v.derived["concept"] for v in CONCEPTS.values() if v.derived})


def shards_for(concept_ids):
    return sorted({shard_of(c) for c in concept_ids})


def vocabulary_terms(name):
    return read_vocabulary(
        Path(workflow.basedir) / ANALYSIS["discovery"]["vocabularies"][name]["file"]
    )


#: Vocabulary terms by chunk, placed by a stable hash of each term (see vocabulary_chunks).
VOCAB_CHUNKS = {
    name: vocabulary_chunks(vocabulary_terms(name), spec["chunk_size"])
    for name, spec in ANALYSIS["discovery"]["vocabularies"].items()
}


def vocabulary_spec(wildcards):
    """A vocabulary chunk's prompts and seeds: editing a line reruns only its chunk."""
    spec = ANALYSIS["discovery"]["vocabularies"][wildcards.vocab]
    terms = VOCAB_CHUNKS[wildcards.vocab][wildcards.chunk]
    record = vocabulary_record(wildcards.vocab, spec["template"], terms)
    return canonical_json({"concepts": [record], "seeds": SEEDS[: spec["seeds"]]})


def model_threads(wildcards):
    """Threads of a job that runs the model (``extraction.threads``).

    ``auto`` shares a local run's cores among its extraction jobs: a small model's layers scale
    poorly across threads, so two single-thread jobs side by side beat one job on two threads.
    Not a param: Snakemake never reruns a job for its thread count.
    """
    wanted = config["extraction"]["threads"]
    if wanted != "auto":
        return wanted
    cores = workflow.resource_settings.cores
    # neither a cluster's jobs nor the job on its node: they keep the main process's 8
    local = workflow.local_exec and not workflow.remote_exec
    if not (local and isinstance(cores, int) and cores > 0):
        return 8
    jobs = len(BUCKETS) - ONE_EXTRACTION_JOB
    jobs += sum(len(chunks) for chunks in VOCAB_CHUNKS.values())
    return max(1, min(8, cores // max(1, jobs)))


def similarity_outputs():
    """The similarity rule's outputs: the full-matrix TSV only when the matrices are written."""
    outputs = {"h5": out("similarity"), "neighbours": out("neighbours")}
    if FULL_SIMILARITY:
        outputs["tsv"] = out("similarity_table")
    return outputs


def descriptors_on():
    return ANALYSIS["descriptors"]["enabled"] and bool(descriptor_concepts())


# -- a comparison with a second model (rules/compare.smk) ---------------------------------
#: The new model's config (``compare:``; None without a comparison) and its results tree, which
#: the Snakefile builds by running this workflow again as a module with that config.
if config["compare"]:
    try:  # the new model is checked as the audited one is, with its own key named
        _compared = {**config, "model": config["compare"]["model"]}
        check_model_settings(_compared, check_model_source(_compared["model"]["id"]))
    except ModelError as err:
        raise ModelError(f"compare.{err}") from None
COMPARED_CONFIG = compared_config(config, base=workflow.basedir)
COMPARED_TREE = results_tree(COMPARED_CONFIG) if COMPARED_CONFIG else None
COMPARED_NAME = Path(COMPARED_TREE).name if COMPARED_CONFIG else None
COMPARED_HASH = settings_hash(COMPARED_CONFIG) if COMPARED_CONFIG else None
COMPARED_SETTINGS = extraction_settings(COMPARED_CONFIG) if COMPARED_CONFIG else None


def compared(key, **wildcards):
    """A path of the new model's tree."""
    return layout.path(key, COMPARED_TREE, **wildcards)


def diff_inputs(wildcards):
    """Both models' sample votes and clusters (findings readout), the text control's votes, and
    the activation shards of the descriptor concepts (their ranking is re-bootstrapped paired).
    """
    buckets = sorted({Path(s).stem for s in shards_for(descriptor_concepts())})
    inputs = {
        "base_votes": out("sample_votes", readout=FINDINGS_READOUT),
        "new_votes": compared("sample_votes", readout=FINDINGS_READOUT),
        "base_clusters": out(
            "clusters", readout=FINDINGS_READOUT, variant=DECLARED_VARIANT
        ),
        "new_clusters": compared(
            "clusters", readout=FINDINGS_READOUT, variant=DECLARED_VARIANT
        ),
        "base_shards": [out("activations", bucket=b) for b in buckets],
        "new_shards": [compared("activations", bucket=b) for b in buckets],
        "base_baseline": out("activations", bucket=BASELINE_ID),
        "new_baseline": compared("activations", bucket=BASELINE_ID),
    }
    if CONTROL in READOUTS:
        inputs["base_control"] = out("sample_votes", readout=CONTROL)
        inputs["new_control"] = compared("sample_votes", readout=CONTROL)
    return inputs


if COMPARED_CONFIG and not descriptors_on():
    raise ConfigError(
        "compare: the findings compared are read from descriptor votes: set "
        "concepts.descriptors (targets and axes) and analysis.descriptors.enabled"
    )


# -- findings (rules/findings.smk) -----------------------------------------------------------
#: Validated: the content readout of a UNet (a transformer's is not; docs/validation.md).
FINDINGS_READOUT, FINDINGS_VALIDATED = findings_readout(
    READOUTS, denoiser_kind(config["model"], MODEL_FOLDER)
)
#: A comparison is validated when both models' findings are.
COMPARISON_VALIDATED = FINDINGS_VALIDATED and (
    not COMPARED_CONFIG
    or findings_readout(
        READOUTS,
        denoiser_kind(
            COMPARED_CONFIG["model"], check_model_source(COMPARED_CONFIG["model"]["id"])
        ),
    )[1]
)
FINDINGS_REFERENCES = ANALYSIS["findings"]["references"]
#: The published cosine score, compared with each reference beside the shares.
PUBLISHED_READOUT = PUBLISHED if PUBLISHED in READOUTS else FINDINGS_READOUT


def findings_axes():
    return list(config["concepts"]["descriptors"]["axes"])


def findings_inputs(wildcards):
    """The findings readout's votes, the text control's (when stored), the reference tables
    and the published score tables they name (editing any of them reruns the findings).
    """
    inputs = {
        "votes": out("votes", readout=FINDINGS_READOUT),
        "published": [
            out("bias", readout=PUBLISHED_READOUT, name=name)
            for name in findings_published()
        ],
    }
    inputs["references"] = [ref["file"] for ref in FINDINGS_REFERENCES.values()]
    if CONTROL in READOUTS:
        inputs["control"] = out("votes", readout=CONTROL)
    if CHECK_ON:
        inputs["check_agreement"] = out("check_agreement")
        inputs["check_samples"] = out("check_samples")
        inputs["sample_votes"] = out("sample_votes", readout=FINDINGS_READOUT)
    return inputs


def findings_published():
    return [r["published"] for r in FINDINGS_REFERENCES.values() if r.get("published")]


# -- the check on the audited model (rules/check.smk) ----------------------------------------
#: The check renders the findings' samples, so it needs their votes.
CHECK = config["check"]
CHECK_ON = CHECK["enabled"] and descriptors_on()


def check_spec():
    """The check's settings, the axes, and each target concept's declared variant prompts per
    axis and value, in the concept's prompt order (what a reader tells apart)."""
    variants = {}
    for cid, concept in CONCEPTS.items():
        if concept.derived:
            d = concept.derived
            variants.setdefault(d["concept"], {}).setdefault(d["axis"], {})[
                d["descriptor"]
            ] = list(concept.prompts)
    return canonical_json(
        {
            "check": CHECK,
            "reader_name": resolve_reader(CHECK, GROUND_TRUTH),
            "axes": config["concepts"]["descriptors"]["axes"],
            "variants": variants,
            "seed": ANALYSIS["seed"],
            "level": ANALYSIS["confidence"],
        }
    )


def check_inputs(wildcards):
    """The findings' sample votes, and the planted world table for the world reader."""
    inputs = {"sample_votes": out("sample_votes", readout=FINDINGS_READOUT)}
    if resolve_reader(CHECK, GROUND_TRUTH) == "world":
        inputs["world"] = str(GROUND_TRUTH)
    return inputs


def validation_summary_inputs(wildcards):
    """Every readout's validation summary; with a check, its samples, the findings and the
    findings readout's per-concept image shares (the check is judged on the world)."""
    inputs = {"summaries": [out("validation", readout=r) for r in READOUTS]}
    if CHECK_ON:
        inputs["check_samples"] = out("check_samples")
        inputs["findings"] = out("findings")
        inputs["images"] = out("validation_samples", readout=FINDINGS_READOUT)
    return inputs


def all_outputs():
    """The default target: every ``target`` output of ``scalex.layout.OUTPUTS`` this run makes."""
    off = set()
    if not FULL_SIMILARITY:
        off.add("similarity_table")
    if not descriptors_on():
        off |= {"descriptors", "findings", "findings_references"}
    if len(READOUTS) < 2 or not ANALYSIS["defaults"]:
        off.add("readouts_summary")
    if not VALIDATION:
        off |= {"validation", "validation_summary"}
    if not descriptors_on():
        off.add("comparison_descriptors")
    if not CHECK_ON:
        off.add("check_agreement")
    values = {
        "readout": READOUTS,
        "variant": CLUSTER_VARIANTS,
        "vocab": list(ANALYSIS["discovery"]["vocabularies"]),
        "compared": [COMPARED_NAME] if COMPARED_CONFIG else [],
    }
    return layout.default_targets(TREE, layout.Plan(values, config, frozenset(off)))


# -- image conditioning (rules/conditioning.smk) ------------------------------------------
def directions_for(concept_ids):
    """The direction files (one per hash bucket) that hold the concepts."""
    return sorted(
        {
            out("directions", readout=PRIMARY, bucket=bucket_of(c, N_BUCKETS))
            for c in concept_ids
        }
    )


def conditioning_concepts(section, name):
    spec = ANALYSIS[section][name]
    return list(spec["positive"]) + list(spec.get("negative", []))


def projection_images(name):
    """The PNG files of a projection's image folder (adding or editing one reruns it)."""
    folder = Path(workflow.basedir) / ANALYSIS["projection"][name]["images"]
    return sorted(str(p) for p in folder.glob("*.png"))


def check_conditioning():
    """Concepts, steps and files named by analysis.steering/projection must exist."""
    from scalex.concepts import check_conditioning_config

    check_conditioning_config(config, CONCEPTS, base=workflow.basedir)


check_conditioning()


onstart:
    # Jobs take earlier work (kept samples, the job memo) only where Snakemake was not told to
    # force them. The force settings exist once the DAG is built, and only in the main process
    # (spawned job processes run with --force themselves): they reach the jobs by environment.
    os.environ[FORCED_ENV] = forced_spec(
        workflow.dag_settings.forceall,
        workflow.dag_settings.forcerun or (),
        (
            (workflow.dag_settings.targets or ())
            if workflow.dag_settings.forcetargets
            else ()
        ),
    )
