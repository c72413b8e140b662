rule directions:
    """Seed-paired concept directions of one bucket and readout, per step and aggregated."""
    input:
        shard=out("activations"),
        baseline=out("activations", bucket=BASELINE_ID),
    output:
        out("directions"),
    log:
        logfile("directions", "readout", "bucket"),
    benchmark:
        benchfile("directions", "readout", "bucket")
    wildcard_constraints:
        bucket=r"b[0-9]{4}",
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        tap=config["directions"]["tap"],
        space=config["directions"]["space"],
    script:
        "../scripts/directions.py"
