rule prompts:
    """One deterministic file per concept: its prompts, template index and seeds.

    A shell one-liner on purpose: a `run:` job would start a whole Snakemake process and a
    `script:` job a Python interpreter, per concept, for a few bytes each.
    """
    output:
        f"{TREE}/prompts/{{concept}}.json",
    log:
        f"{TREE}/logs/prompts/{{concept}}.log",
    benchmark:
        f"{TREE}/benchmarks/prompts/{{concept}}.tsv"
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=concept_spec,
    shell:
        PROMPTS_SHELL
