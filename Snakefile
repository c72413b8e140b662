"""scalex: prompts -> H-space activations -> concept directions -> similarity and clusters.

Run `snakemake -n` to see what would run and why, `snakemake --cores all` to run it.
"""

import importlib.util

from snakemake.utils import min_version

min_version("9.11")


# A --configfile on the command line replaces the default instead of merging into it, so a
# ready-made model config (config/models/) never inherits the reference world's concepts.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "resources/report/workflow.rst"


include: "rules/common.smk"
include: "rules/prompts.smk"
include: "rules/extract.smk"
include: "rules/directions.smk"
include: "rules/similarity.smk"
include: "rules/analysis.smk"
include: "rules/findings.smk"
include: "rules/check.smk"
include: "rules/conditioning.smk"
include: "rules/compare.smk"


# A comparison (`compare:`): the new model's tree is this workflow run again, as a module with
# the new model's config, so both trees are made, reused and resumed by the same rules.
if COMPARED_CONFIG:

    module compared_model:
        snakefile:
            "Snakefile"
        config:
            COMPARED_CONFIG

    use rule * from compared_model exclude all, train_world, evaluate_world as compared_*


# The reference worlds (training, evaluation, ground-truth validation) are a plug-in: their rules
# exist when their package is installed, and validation runs on a model that has ground truth.
if importlib.util.find_spec("scalex_refworld") is not None:

    include: "rules/reference_world.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
