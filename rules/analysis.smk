rule defaults:
    """Bias of target concepts along an attribute pair, with bootstrap CIs and figures."""
    input:
        shards=lambda w: shards_for(defaults_concepts(w.name)),
        baseline=out("activations", bucket=BASELINE_ID),
        reference=defaults_reference,
    output:
        table=report(
            out("bias"),
            caption="../resources/report/bias_table.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        bar=report(
            out("bias_bar"),
            caption="../resources/report/bias_bar.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        profile=report(
            out("bias_profile"),
            caption="../resources/report/bias_profile.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        scatter=report(
            out("bias_scatter"),
            caption="../resources/report/bias_reference.rst",
            category="Defaults ({readout} readout)",
            subcategory="{name}",
        ),
        correlation=out("bias_correlation"),
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
        baseline=out("activations", bucket=BASELINE_ID),
    output:
        table=report(
            out("descriptors"),
            caption="../resources/report/descriptors_table.rst",
            category="Descriptors ({readout} readout)",
        ),
        top=out("top_descriptors"),
        votes=report(
            out("votes"),
            caption="../resources/report/descriptor_votes.rst",
            category="Descriptors ({readout} readout)",
        ),
        sample_votes=out("sample_votes"),
        figure=report(
            out("descriptors_figure"),
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
        matrix=out("clustered_matrix"),
        clusters=out("clusters"),
        silhouette=out("silhouette"),
    output:
        dendrogram=report(
            out("dendrogram"),
            caption="../resources/report/dendrogram.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
        heatmap=report(
            out("heatmap"),
            caption="../resources/report/similarity_heatmap.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
        map=report(
            out("concept_map"),
            caption="../resources/report/concept_map.rst",
            category="Clusters ({readout} readout)",
            subcategory="{variant}",
        ),
        silhouette=report(
            out("silhouette_figure"),
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
        out("vocabulary_prompts"),
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
        out("vocabulary_prompts"),
    output:
        out("vocabulary_activations"),
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
        chunks=lambda w: [
            out("vocabulary_activations", vocab=w.vocab, chunk=c)
            for c in VOCAB_CHUNKS[w.vocab]
        ],
        baseline=out("activations", bucket=BASELINE_ID),
        directions=[out("directions", bucket=b) for b in concept_buckets()],
    output:
        table=report(
            out("discovery"),
            caption="../resources/report/discovery_table.rst",
            category="Discovery ({readout} readout)",
        ),
        figure=report(
            out("discovery_figure"),
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
        lambda w: [out("bias", readout=r, name=w.name) for r in READOUTS],
    output:
        table=report(
            out("readouts_defaults"),
            caption="../resources/report/readouts.rst",
            category="Readouts side by side",
        ),
        figure=report(
            out("readouts_defaults_figure"),
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
        defaults=[out("readouts_defaults", name=n) for n in ANALYSIS["defaults"]],
        tops=[
            out("top_descriptors", readout=r)
            for r in (READOUTS if descriptors_on() else [])
        ],
    output:
        report(
            out("readouts_summary"),
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
