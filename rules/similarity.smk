rule similarity:
    """Nearest neighbours of every concept direction; the full cosine matrices (per step and
    aggregated) only up to similarity.max_full_concepts, unless asked for."""
    input:
        expand(
            f"{TREE}/{{{{readout}}}}/directions/{{bucket}}.h5",
            bucket=concept_buckets(),
        ),
    output:
        **similarity_outputs(),
    log:
        f"{TREE}/logs/similarity/{{readout}}.log",
    benchmark:
        f"{TREE}/benchmarks/similarity/{{readout}}.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        neighbours=config["similarity"]["neighbours"],
        full_matrices=FULL_SIMILARITY,
    script:
        "../scripts/compute_similarity.py"


rule clusters:
    """Hierarchical clusters of concepts: k by silhouette, or 1 when a permutation null finds
    no structure; raw, or after removing the declared identity axes (variant)."""
    input:
        similarity=f"{TREE}/{{readout}}/similarity/similarity.h5",
        directions=expand(
            f"{TREE}/{{{{readout}}}}/directions/{{bucket}}.h5",
            bucket=concept_buckets(),
        ),
    output:
        clusters=f"{TREE}/{{readout}}/clusters/{{variant}}/clusters.tsv",
        silhouette=f"{TREE}/{{readout}}/clusters/{{variant}}/silhouette.tsv",
        matrix=f"{TREE}/{{readout}}/clusters/{{variant}}/similarity.tsv",
    log:
        f"{TREE}/logs/clusters/{{readout}}-{{variant}}.log",
    benchmark:
        f"{TREE}/benchmarks/clusters/{{readout}}-{{variant}}.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        clustering=canonical_json(config["clustering"]),
    script:
        "../scripts/cluster_concepts.py"
