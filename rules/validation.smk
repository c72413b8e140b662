rule validate_reference:
    """Compare scalex's findings on the reference model with the biases planted in it."""
    input:
        bias=f"{TREE}/analysis/defaults/gender/bias.tsv",
        clusters=f"{TREE}/clusters/clusters.tsv",
        top=f"{TREE}/analysis/descriptors/top_descriptors.tsv",
        planted="resources/reference/planted.tsv",
        rates="results/reference/rates.tsv",
        similarity=f"{TREE}/similarity/similarity.tsv",
    output:
        summary=report(
            f"{config['results']}/validation/summary.tsv",
            caption="../resources/report/validation.rst",
            category="Ground truth",
        ),
        gender=f"{config['results']}/validation/gender_defaults.tsv",
        clustering=f"{config['results']}/validation/clustering.tsv",
        descriptors=f"{config['results']}/validation/descriptors.tsv",
    log:
        f"{config['results']}/validation/validate.log",
    benchmark:
        f"{config['results']}/validation/benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m scalex_refworld.validate {input.bias} {input.clusters} {input.top}"
        " {input.planted} {input.rates} $(dirname {output.summary})"
        " --raw-similarity {input.similarity} > {log} 2>&1"
