rule prompts:
    """The prompt file of one hash bucket of concepts: prompts, template indices, seeds.

    One job per bucket, not per concept: extraction works by bucket anyway, and a job per
    concept would start an interpreter for a few bytes each. The spec travels as a parameter
    (pickled into the script, so its size has no shell limit).
    """
    output:
        out("prompts"),
    log:
        logfile("prompts", "bucket"),
    benchmark:
        benchfile("prompts", "bucket")
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=bucket_spec,
    script:
        "../scripts/prompts.py"
