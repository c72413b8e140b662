# The bundled reference model: a tiny Stable-Diffusion-style pipeline of a pictogram world with
# planted, known biases (package scalex_refworld). It is committed to git; these rules rebuild
# and check it. The planted table is ancient() so a fresh checkout (arbitrary mtimes) never
# retrains the committed model; delete the model folder (or --forcerun) to retrain.

import os

REFERENCE_MODEL = "resources/reference-model"


rule train_reference_model:
    input:
        table=ancient("resources/reference/planted.tsv"),
    output:
        unet=f"{REFERENCE_MODEL}/unet/diffusion_pytorch_model.safetensors",
        vae=f"{REFERENCE_MODEL}/vae/diffusion_pytorch_model.safetensors",
        index=f"{REFERENCE_MODEL}/model_index.json",
        marker=f"{REFERENCE_MODEL}/scalex_reference.json",
    log:
        "logs/reference/train.log",
    benchmark:
        "benchmarks/reference/train.tsv"
    conda:
        "../envs/cpu.yaml"
    # The committed model: 2 threads, all 3600 UNet steps in 20 minutes on an idle 2-core CPU
    # (float reductions depend on the thread count, so keep it to reproduce the weights).
    threads: 2
    params:
        out=lambda w, output: os.path.dirname(output.marker),
        seed=0,
        minutes=30,
    shell:
        "python -m scalex_refworld.train --table {input.table} --out {params.out}"
        " --seed {params.seed} --minutes {params.minutes} --threads {threads} > {log} 2>&1"


rule evaluate_reference_model:
    input:
        unet=f"{REFERENCE_MODEL}/unet/diffusion_pytorch_model.safetensors",
        marker=f"{REFERENCE_MODEL}/scalex_reference.json",
        table="resources/reference/planted.tsv",
    output:
        following="results/reference/prompt_following.tsv",
        rates="results/reference/rates.tsv",
        summary="results/reference/summary.json",
        grid=report("results/reference/grid.png", caption="../docs/reference-grid.rst"),
    log:
        "logs/reference/evaluate.log",
    benchmark:
        "benchmarks/reference/evaluate.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: 1
    params:
        model=lambda w, input: os.path.dirname(input.marker),
        out=lambda w, output: os.path.dirname(output.rates),
        samples=48,
        steps=20,
        guidance="2.0",
    shell:
        "python -m scalex_refworld.evaluate --model {params.model} --table {input.table}"
        " --out {params.out} --grid {output.grid} --samples {params.samples}"
        " --steps {params.steps} --guidance {params.guidance} --threads {threads} > {log} 2>&1"
