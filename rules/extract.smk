# Only what changes the activations is a param: device, batch size, progress, compression,
# sample reuse and compile are read from the config inside the job, so changing them reruns
# nothing.
if ONE_EXTRACTION_JOB:

    rule extract:
        """H-space activations of a small run: its one bucket and the baseline, one model load."""
        input:
            out("prompts", bucket="b0000"),
            out("prompts", bucket=BASELINE_ID),
        output:
            out("activations", bucket="b0000"),
            out("activations", bucket=BASELINE_ID),
        log:
            logfile("extract"),
        benchmark:
            benchfile("extract")
        conda:
            "../envs/gpu.yaml"
        threads: model_threads
        resources:
            gpu=1,
        params:
            settings=canonical_json(SETTINGS),
            settings_hash=HASH,
        script:
            "../scripts/extract.py"

else:

    rule extract:
        """H-space activations of a hash bucket of concepts: one model load, one batched loop."""
        input:
            out("prompts"),
        output:
            out("activations"),
        log:
            logfile("extract", "bucket"),
        benchmark:
            benchfile("extract", "bucket")
        conda:
            "../envs/gpu.yaml"
        threads: model_threads
        resources:
            gpu=1,
        params:
            settings=canonical_json(SETTINGS),
            settings_hash=HASH,
        script:
            "../scripts/extract.py"
