# The committed reference worlds: tiny Stable-Diffusion-style pipelines of a pictogram world with
# planted, known biases (package scalex_refworld), one folder per world under resources/worlds/
# holding its table (world.tsv), its model (model/) and what the model generates (evaluation/).
# They are committed to git; these rules rebuild them. Inputs are ancient() so a fresh checkout
# (arbitrary mtimes) never retrains or re-evaluates; `--forcerun train_world` retrains.


rule train_world:
    """Train a world's model from its table (20-30 minutes on a 2-core CPU)."""
    input:
        table=ancient("resources/worlds/{world}/world.tsv"),
    output:
        unet="resources/worlds/{world}/model/unet/diffusion_pytorch_model.safetensors",
        marker="resources/worlds/{world}/model/scalex_reference.json",
    log:
        "logs/train_world/{world}.log",
    benchmark:
        "benchmarks/train_world/{world}.tsv"
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
        unet=ancient(
            "resources/worlds/{world}/model/unet/diffusion_pytorch_model.safetensors"
        ),
        marker=ancient("resources/worlds/{world}/model/scalex_reference.json"),
        table=ancient("resources/worlds/{world}/world.tsv"),
    output:
        rates="resources/worlds/{world}/evaluation/rates.tsv",
        summary="resources/worlds/{world}/evaluation/summary.json",
    log:
        "logs/evaluate_world/{world}.log",
    benchmark:
        "benchmarks/evaluate_world/{world}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: 1
    shell:
        "python -m scalex_refworld.build_world {wildcards.world} --threads {threads}"
        " --skip-training > {log:q} 2>&1"
