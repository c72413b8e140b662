rule extract:
    """H-space activations of a hash bucket of concepts: one model load, one batched loop."""
    input:
        f"{TREE}/prompts/{{bucket}}.json",
    output:
        f"{TREE}/activations/{{bucket}}.h5",
    log:
        logfile("extract", "bucket"),
    benchmark:
        benchfile("extract", "bucket")
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=1,
    # Only what changes the activations is a param: device, batch size, progress and
    # compression are read from the config inside the job, so changing them reruns nothing.
    params:
        settings=canonical_json(SETTINGS),
        settings_hash=HASH,
    script:
        "../scripts/extract.py"
