rule defaults:
    """Bias of target concepts along an attribute pair, with bootstrap CIs and figures."""
    input:
        shards=lambda w: shards_for(defaults_concepts(w.name)),
        baseline=f"{TREE}/activations/{BASELINE_ID}.h5",
    output:
        table=report(
            f"{TREE}/analysis/defaults/{{name}}/bias.tsv",
            caption="../resources/report/bias_table.rst",
            category="Defaults",
            subcategory="{name}",
        ),
        bar=report(
            f"{TREE}/analysis/defaults/{{name}}/bias_bar.png",
            caption="../resources/report/bias_bar.rst",
            category="Defaults",
            subcategory="{name}",
        ),
        profile=report(
            f"{TREE}/analysis/defaults/{{name}}/bias_profile.png",
            caption="../resources/report/bias_profile.rst",
            category="Defaults",
            subcategory="{name}",
        ),
        scatter=report(
            f"{TREE}/analysis/defaults/{{name}}/reference_scatter.png",
            caption="../resources/report/bias_reference.rst",
            category="Defaults",
            subcategory="{name}",
        ),
        correlation=f"{TREE}/analysis/defaults/{{name}}/reference_correlation.tsv",
    log:
        f"{TREE}/logs/defaults/{{name}}.log",
    benchmark:
        f"{TREE}/benchmarks/defaults/{{name}}.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        spec=lambda w: canonical_json(ANALYSIS["defaults"][w.name]),
        concepts=lambda w: defaults_concepts(w.name),
        bootstrap=BOOTSTRAP,
        tap=config["directions"]["tap"],
        space=config["directions"]["space"],
    script:
        "../scripts/analyze_defaults.py"


rule descriptors:
    """Rank identity descriptors by alignment with each target concept."""
    input:
        shards=shards_for(descriptor_concepts()),
        baseline=f"{TREE}/activations/{BASELINE_ID}.h5",
    output:
        table=report(
            f"{TREE}/analysis/descriptors/descriptors.tsv",
            caption="../resources/report/descriptors_table.rst",
            category="Descriptors",
        ),
        top=f"{TREE}/analysis/descriptors/top_descriptors.tsv",
        figure=report(
            f"{TREE}/analysis/descriptors/descriptors.png",
            caption="../resources/report/descriptors.rst",
            category="Descriptors",
        ),
    log:
        f"{TREE}/logs/descriptors.log",
    benchmark:
        f"{TREE}/benchmarks/descriptors.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        concepts=descriptor_concepts(),
        targets=descriptor_targets(),
        axes=canonical_json(config["concepts"]["descriptors"]),
        bootstrap=BOOTSTRAP,
        tap=config["directions"]["tap"],
        space=config["directions"]["space"],
    script:
        "../scripts/analyze_descriptors.py"


rule cluster_figures:
    """Dendrogram, ordered similarity heatmap, 2-D map and silhouette curve."""
    input:
        matrix=f"{TREE}/clusters/similarity.tsv",
        clusters=f"{TREE}/clusters/clusters.tsv",
        silhouette=f"{TREE}/clusters/silhouette.tsv",
    output:
        dendrogram=report(
            f"{TREE}/analysis/clusters/dendrogram.png",
            caption="../resources/report/dendrogram.rst",
            category="Clusters",
        ),
        heatmap=report(
            f"{TREE}/analysis/clusters/similarity_heatmap.png",
            caption="../resources/report/similarity_heatmap.rst",
            category="Clusters",
        ),
        map=report(
            f"{TREE}/analysis/clusters/concept_map.png",
            caption="../resources/report/concept_map.rst",
            category="Clusters",
        ),
        silhouette=report(
            f"{TREE}/analysis/clusters/silhouette.png",
            caption="../resources/report/silhouette.rst",
            category="Clusters",
        ),
    log:
        f"{TREE}/logs/cluster_figures.log",
    benchmark:
        f"{TREE}/benchmarks/cluster_figures.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        linkage=config["clustering"]["linkage"],
    script:
        "../scripts/plot_clusters.py"


rule vocabulary_prompts:
    """One chunk of a discovery vocabulary as prompts (a shell one-liner, as rule prompts)."""
    output:
        f"{TREE}/discovery/{{vocab}}/prompts/{{chunk}}.json",
    log:
        f"{TREE}/logs/vocabulary/{{vocab}}-{{chunk}}.log",
    benchmark:
        f"{TREE}/benchmarks/vocabulary/{{vocab}}-{{chunk}}.tsv"
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=vocabulary_spec,
    shell:
        PROMPTS_SHELL


rule extract_vocabulary:
    """H-space activations of one vocabulary chunk (fewer seeds than concepts)."""
    input:
        f"{TREE}/discovery/{{vocab}}/prompts/{{chunk}}.json",
    output:
        f"{TREE}/discovery/{{vocab}}/activations/{{chunk}}.h5",
    log:
        f"{TREE}/logs/extract_vocabulary/{{vocab}}-{{chunk}}.log",
    benchmark:
        f"{TREE}/benchmarks/extract_vocabulary/{{vocab}}-{{chunk}}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: 8
    resources:
        gpu=1,
    params:
        settings=canonical_json(SETTINGS),
        settings_hash=HASH,
        runtime=canonical_json(RUNTIME),
    script:
        "../scripts/extract_activations.py"


rule discovery:
    """Rank a vocabulary by alignment with query directions (open-ended discovery)."""
    input:
        chunks=lambda w: expand(
            f"{TREE}/discovery/{w.vocab}/activations/{{chunk}}.h5",
            chunk=VOCAB_CHUNKS[w.vocab],
        ),
        baseline=f"{TREE}/activations/{BASELINE_ID}.h5",
        directions=expand(f"{TREE}/directions/{{bucket}}.h5", bucket=concept_buckets()),
    output:
        table=report(
            f"{TREE}/analysis/discovery/{{vocab}}/discovery.tsv",
            caption="../resources/report/discovery_table.rst",
            category="Discovery",
        ),
        figure=report(
            f"{TREE}/analysis/discovery/{{vocab}}/discovery.png",
            caption="../resources/report/discovery.rst",
            category="Discovery",
        ),
    log:
        f"{TREE}/logs/discovery/{{vocab}}.log",
    benchmark:
        f"{TREE}/benchmarks/discovery/{{vocab}}.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        queries=canonical_json(ANALYSIS["discovery"]["queries"]),
        top_k=ANALYSIS["discovery"]["top_k"],
        tap=config["directions"]["tap"],
        space=config["directions"]["space"],
    script:
        "../scripts/discover.py"
