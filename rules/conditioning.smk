# Image conditioning: steer sampling along concept directions, project real images on them.


rule steering:
    """Sample a prompt while adding alpha * d to H-space; grid of alphas x seeds."""
    input:
        directions=lambda w: directions_for(conditioning_concepts("steering", w.name)),
    output:
        grid=report(
            out("steering_grid"),
            caption="../resources/report/steering.rst",
            category="Image conditioning",
            subcategory="{name}",
        ),
        images=out("steering_images"),
    log:
        logfile("steering", "name"),
    benchmark:
        benchfile("steering", "name")
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=1,
    params:
        settings=canonical_json(SETTINGS),
        settings_hash=HASH,
        spec=lambda w: canonical_json(ANALYSIS["steering"][w.name]),
        tap=config["directions"]["tap"],
    script:
        "../scripts/steering.py"


rule projection:
    """Project labelled images (VAE-encoded, noised) on a direction; AUC per step."""
    input:
        directions=lambda w: directions_for(conditioning_concepts("projection", w.name)),
        images=lambda w: projection_images(w.name),
        labels=lambda w: ANALYSIS["projection"][w.name]["labels"],
    output:
        scores=report(
            out("projection_scores"),
            caption="../resources/report/projection.rst",
            category="Image conditioning",
            subcategory="{name}",
        ),
        auc=report(
            out("projection_auc"),
            caption="../resources/report/projection.rst",
            category="Image conditioning",
            subcategory="{name}",
        ),
    log:
        logfile("projection", "name"),
    benchmark:
        benchfile("projection", "name")
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=1,
    params:
        settings=canonical_json(SETTINGS),
        settings_hash=HASH,
        spec=lambda w: canonical_json(ANALYSIS["projection"][w.name]),
        images_dir=lambda w: ANALYSIS["projection"][w.name]["images"],
        tap=config["directions"]["tap"],
    script:
        "../scripts/projection.py"
