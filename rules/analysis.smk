rule defaults:
    """Bias of target concepts along an attribute pair, with bootstrap CIs and figures."""
    input:
        shards=lambda w: shards_for(defaults_concepts(w.name)),
        baseline=f"{TREE}/activations/{BASELINE_ID}.h5",
    output:
        table=report(
            f"{TREE}/{{readout}}/analysis/defaults/{{name}}/bias.tsv",
            caption="../resources/report/bias_table.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        bar=report(
            f"{TREE}/{{readout}}/analysis/defaults/{{name}}/bias_bar.png",
            caption="../resources/report/bias_bar.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        profile=report(
            f"{TREE}/{{readout}}/analysis/defaults/{{name}}/bias_profile.png",
            caption="../resources/report/bias_profile.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        scatter=report(
            f"{TREE}/{{readout}}/analysis/defaults/{{name}}/reference_scatter.png",
            caption="../resources/report/bias_reference.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        correlation=f"{TREE}/{{readout}}/analysis/defaults/{{name}}/reference_correlation.tsv",
    log:
        logfile("defaults", "readout", "name"),
    benchmark:
        benchfile("defaults", "readout", "name")
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
        "../scripts/defaults.py"


rule descriptors:
    """Rank identity descriptors by alignment with each target concept."""
    input:
        shards=shards_for(descriptor_concepts()),
        baseline=f"{TREE}/activations/{BASELINE_ID}.h5",
    output:
        table=report(
            f"{TREE}/{{readout}}/analysis/descriptors/descriptors.tsv",
            caption="../resources/report/descriptors_table.rst",
            category="Descriptors ({readout} readout)",
        ),
        top=f"{TREE}/{{readout}}/analysis/descriptors/top_descriptors.tsv",
        votes=report(
            f"{TREE}/{{readout}}/analysis/descriptors/votes.tsv",
            caption="../resources/report/descriptor_votes.rst",
            category="Descriptors ({readout} readout)",
        ),
        sample_votes=f"{TREE}/{{readout}}/analysis/descriptors/sample_votes.tsv",
        figure=report(
            f"{TREE}/{{readout}}/analysis/descriptors/descriptors.png",
            caption="../resources/report/descriptors.rst",
            category="Descriptors ({readout} readout)",
        ),
    log:
        logfile("descriptors", "readout"),
    benchmark:
        benchfile("descriptors", "readout")
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
        "../scripts/descriptors.py"


rule cluster_figures:
    """Dendrogram, ordered similarity heatmap, 2-D map and silhouette curve."""
    input:
        matrix=f"{TREE}/{{readout}}/clusters/{{variant}}/similarity.tsv",
        clusters=f"{TREE}/{{readout}}/clusters/{{variant}}/clusters.tsv",
        silhouette=f"{TREE}/{{readout}}/clusters/{{variant}}/silhouette.tsv",
    output:
        dendrogram=report(
            f"{TREE}/{{readout}}/analysis/clusters/{{variant}}/dendrogram.png",
            caption="../resources/report/dendrogram.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
        heatmap=report(
            f"{TREE}/{{readout}}/analysis/clusters/{{variant}}/similarity_heatmap.png",
            caption="../resources/report/similarity_heatmap.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
        map=report(
            f"{TREE}/{{readout}}/analysis/clusters/{{variant}}/concept_map.png",
            caption="../resources/report/concept_map.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
        silhouette=report(
            f"{TREE}/{{readout}}/analysis/clusters/{{variant}}/silhouette.png",
            caption="../resources/report/silhouette.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
    log:
        logfile("cluster_figures", "readout", "variant"),
    benchmark:
        benchfile("cluster_figures", "readout", "variant")
    conda:
        "../envs/cpu.yaml"
    params:
        linkage=config["clustering"]["linkage"],
    script:
        "../scripts/cluster_figures.py"


rule vocabulary_prompts:
    """The prompt file of one vocabulary chunk (terms placed by a stable hash, as concepts)."""
    output:
        f"{TREE}/discovery/{{vocab}}/prompts/{{chunk}}.json",
    log:
        logfile("vocabulary_prompts", "vocab", "chunk"),
    benchmark:
        benchfile("vocabulary_prompts", "vocab", "chunk")
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=vocabulary_spec,
    script:
        "../scripts/vocabulary_prompts.py"


rule extract_vocabulary:
    """H-space activations of one vocabulary chunk (fewer seeds than concepts)."""
    input:
        f"{TREE}/discovery/{{vocab}}/prompts/{{chunk}}.json",
    output:
        f"{TREE}/discovery/{{vocab}}/activations/{{chunk}}.h5",
    log:
        logfile("extract_vocabulary", "vocab", "chunk"),
    benchmark:
        benchfile("extract_vocabulary", "vocab", "chunk")
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=1,
    params:
        settings=canonical_json(SETTINGS),
        settings_hash=HASH,
    script:
        "../scripts/extract_vocabulary.py"


rule discovery:
    """Rank a vocabulary by alignment with query directions (open-ended discovery)."""
    input:
        chunks=lambda w: expand(
            f"{TREE}/discovery/{w.vocab}/activations/{{chunk}}.h5",
            chunk=VOCAB_CHUNKS[w.vocab],
        ),
        baseline=f"{TREE}/activations/{BASELINE_ID}.h5",
        directions=expand(
            f"{TREE}/{{{{readout}}}}/directions/{{bucket}}.h5",
            bucket=concept_buckets(),
        ),
    output:
        table=report(
            f"{TREE}/{{readout}}/analysis/discovery/{{vocab}}/discovery.tsv",
            caption="../resources/report/discovery_table.rst",
            category="Discovery ({readout} readout)",
        ),
        figure=report(
            f"{TREE}/{{readout}}/analysis/discovery/{{vocab}}/discovery.png",
            caption="../resources/report/discovery.rst",
            category="Discovery ({readout} readout)",
        ),
    log:
        logfile("discovery", "readout", "vocab"),
    benchmark:
        benchfile("discovery", "readout", "vocab")
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        queries=canonical_json(ANALYSIS["discovery"]["queries"]),
        top_k=ANALYSIS["discovery"]["top_k"],
        tap=config["directions"]["tap"],
        space=config["directions"]["space"],
    script:
        "../scripts/discovery.py"


rule compare_readouts:
    """One defaults analysis on every readout side by side, against the text-encoder control."""
    input:
        lambda w: expand(
            f"{TREE}/{{readout}}/analysis/defaults/{w.name}/bias.tsv", readout=READOUTS
        ),
    output:
        table=report(
            f"{TREE}/readouts/defaults/{{name}}.tsv",
            caption="../resources/report/readouts.rst",
            category="Readouts side by side",
        ),
        figure=report(
            f"{TREE}/readouts/defaults/{{name}}.png",
            caption="../resources/report/readouts.rst",
            category="Readouts side by side",
        ),
    log:
        logfile("compare_readouts", "name"),
    benchmark:
        benchfile("compare_readouts", "name")
    conda:
        "../envs/cpu.yaml"
    params:
        readouts=READOUTS,
    script:
        "../scripts/compare_readouts.py"


rule readouts_summary:
    """How far each H-space readout's findings agree with the text encoder alone."""
    input:
        defaults=expand(
            f"{TREE}/readouts/defaults/{{name}}.tsv", name=ANALYSIS["defaults"]
        ),
        tops=expand(
            f"{TREE}/{{readout}}/analysis/descriptors/top_descriptors.tsv",
            readout=READOUTS if descriptors_on() else [],
        ),
    output:
        report(
            f"{TREE}/readouts/summary.tsv",
            caption="../resources/report/readouts.rst",
            category="Readouts side by side",
        ),
    log:
        logfile("readouts_summary"),
    benchmark:
        benchfile("readouts_summary")
    conda:
        "../envs/cpu.yaml"
    params:
        names=list(ANALYSIS["defaults"]),
        readouts=READOUTS if descriptors_on() else [],
    script:
        "../scripts/readouts_summary.py"
