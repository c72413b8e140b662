rule prompts:
    """One deterministic file per concept: its prompts, template index and seeds.

    Runs in the Snakemake process (`run:`): ten thousand concepts must not start ten thousand
    Python interpreters for a few bytes each.
    """
    output:
        f"{TREE}/prompts/{{concept}}.json",
    log:
        f"{TREE}/logs/prompts/{{concept}}.log",
    benchmark:
        f"{TREE}/benchmarks/prompts/{{concept}}.tsv"
    localrule: True
    params:
        spec=concept_spec,
    run:
        write_prompts_logged(params.spec, output[0], log[0])
