# The reference worlds (package scalex_refworld, a plug-in of the model loader), included by the
# Snakefile only when that package is installed. The committed reference worlds: tiny diffusers
# pipelines (a UNet, or a small DiT for the -dit worlds) of a pictogram world with
# planted, known biases (package scalex_refworld), one folder per world under resources/worlds/
# holding its table (world.tsv), its model (model/) and what the model generates (evaluation/).
# They are committed to git; these rules rebuild them. Inputs are ancient() so a fresh checkout
# (arbitrary mtimes) never retrains or re-evaluates; `--forcerun train_world` retrains.


from scalex_refworld import GENDER_DEFAULTS


rule train_world:
    """Train a world's model from its table (20-30 minutes on a 2-core CPU), as its marker says
    it was made (denoiser, fine-tune base); the marker is written last."""
    input:
        table=ancient("resources/worlds/{world}/world.tsv"),
    output:
        marker="resources/worlds/{world}/model/scalex_reference.json",
    log:
        logfile("train_world", "world", root=""),
    benchmark:
        benchfile("train_world", "world", root="")
    conda:
        "../envs/cpu.yaml"
    # float reductions depend on the thread count: keep it to reproduce the committed weights
    threads: 1
    shell:
        "python -m scalex_refworld.build_world {wildcards.world} --threads {threads}"
        " --skip-evaluation > {log:q} 2>&1"


rule evaluate_world:
    """Measure what a world's model generates (stock pipeline, attribute reader)."""
    input:
        marker=ancient("resources/worlds/{world}/model/scalex_reference.json"),
        table=ancient("resources/worlds/{world}/world.tsv"),
    output:
        rates="resources/worlds/{world}/evaluation/rates.tsv",
        summary="resources/worlds/{world}/evaluation/summary.json",
    log:
        logfile("evaluate_world", "world", root=""),
    benchmark:
        benchfile("evaluate_world", "world", root="")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    shell:
        "python -m scalex_refworld.build_world {wildcards.world} --threads {threads}"
        " --skip-training > {log:q} 2>&1"


# -- ground truth: on a reference-world model, compare every readout's findings with the world's
# planted table and the rates its model realises ------------------------------------------------
#: The model has ground truth and the analyses that validation reads are configured.
VALIDATION = (
    GROUND_TRUTH is not None
    and GENDER_DEFAULTS in ANALYSIS["defaults"]
    and descriptors_on()
)


rule sample_images:
    """Render every voted sample with the stock pipeline and read it with the world's reader."""
    input:
        sample_votes=out("sample_votes", readout=FINDINGS_READOUT),
        world=str(GROUND_TRUTH),
    output:
        images=out("sample_images"),
    log:
        logfile("sample_images"),
    benchmark:
        benchfile("sample_images")
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=1,
    params:
        settings=canonical_json(SETTINGS),
    script:
        "../scripts/sample_images.py"


rule validate_reference:
    """Compare one readout's findings with the biases and families of the model's world."""
    input:
        sample_votes=out("sample_votes"),
        sample_images=out("sample_images"),
        bias=out("bias", name=GENDER_DEFAULTS),
        clusters=out("clusters", variant=DECLARED_VARIANT),
        raw_clusters=out("clusters", variant=layout.RAW),
        top=out("top_descriptors"),
        descriptors=out("descriptors"),
        votes=out("votes"),
        world=str(GROUND_TRUTH),
        rates=str(Path(GROUND_TRUTH or ".").parent / "evaluation" / "rates.tsv"),
    output:
        summary=report(
            out("validation"),
            caption="../resources/report/validation.rst",
            category="Ground truth",
            subcategory="{readout} readout",
        ),
        gender=out("validation_gender"),
        clustering=out("validation_clustering"),
        descriptors=out("validation_descriptors"),
        samples=out("validation_samples"),
    log:
        logfile("validate_reference", "readout"),
    benchmark:
        benchfile("validate_reference", "readout")
    conda:
        "../envs/cpu.yaml"
    params:
        digest=SETTINGS["model"]["content"],
    script:
        "../scripts/validate_reference.py"


rule validation_summary:
    """One table of every readout's ground-truth figures (readout x metric)."""
    input:
        unpack(validation_summary_inputs),
    output:
        report(
            out("validation_summary"),
            caption="../resources/report/validation.rst",
            category="Ground truth",
        ),
    log:
        logfile("validation_summary"),
    benchmark:
        benchfile("validation_summary")
    conda:
        "../envs/cpu.yaml"
    params:
        readouts=READOUTS,
        check=canonical_json(
            {
                "axes": config["concepts"]["descriptors"]["axes"],
                "seed": ANALYSIS["seed"],
                "level": ANALYSIS["confidence"],
            }
            if CHECK_ON
            else {}
        ),
    script:
        "../scripts/validation_summary.py"
