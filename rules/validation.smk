# Ground truth: on a reference-world model (resources/worlds/<world>/model), compare every
# readout's findings with the world's planted table and the rates its model realises.


rule validate_reference:
    """Compare one readout's findings with the biases and families of the model's world."""
    input:
        bias=f"{TREE}/{{readout}}/analysis/defaults/gender/bias.tsv",
        clusters=f"{TREE}/{{readout}}/clusters/{DECLARED_VARIANT}/clusters.tsv",
        raw_clusters=f"{TREE}/{{readout}}/clusters/raw/clusters.tsv",
        top=f"{TREE}/{{readout}}/analysis/descriptors/top_descriptors.tsv",
        descriptors=f"{TREE}/{{readout}}/analysis/descriptors/descriptors.tsv",
        world=str(WORLD_TABLE),
        rates=str(WORLD_TABLE.parent / "evaluation" / "rates.tsv"),
    output:
        summary=report(
            f"{TREE}/{{readout}}/validation/summary.tsv",
            caption="../resources/report/validation.rst",
            category="Ground truth",
            subcategory="{readout} readout",
        ),
        gender=f"{TREE}/{{readout}}/validation/gender_defaults.tsv",
        clustering=f"{TREE}/{{readout}}/validation/clustering.tsv",
        descriptors=f"{TREE}/{{readout}}/validation/descriptors.tsv",
    log:
        f"{TREE}/logs/validate_reference/{{readout}}.log",
    benchmark:
        f"{TREE}/benchmarks/validate_reference/{{readout}}.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        digest=SETTINGS["model"]["content"],
    shell:
        "python -m scalex_refworld.validate {input.bias:q} {input.clusters:q} {input.top:q}"
        " {input.world:q} {input.rates:q} $(dirname {output.summary:q})"
        " --raw-clusters {input.raw_clusters:q} --descriptors {input.descriptors:q}"
        " --model-digest {params.digest:q} > {log:q} 2>&1"


rule validation_summary:
    """One table of every readout's ground-truth figures (readout x metric)."""
    input:
        expand(f"{TREE}/{{readout}}/validation/summary.tsv", readout=READOUTS),
    output:
        report(
            f"{TREE}/validation/summary.tsv",
            caption="../resources/report/validation.rst",
            category="Ground truth",
        ),
    log:
        f"{TREE}/logs/validation_summary.log",
    benchmark:
        f"{TREE}/benchmarks/validation_summary.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        readouts=READOUTS,
    script:
        "../scripts/validation_summary.py"
