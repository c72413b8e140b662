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
        logfile("similarity", "readout"),
    benchmark:
        benchfile("similarity", "readout")
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        neighbours=config["similarity"]["neighbours"],
        full_matrices=FULL_SIMILARITY,
    script:
        "../scripts/similarity.py"


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
        logfile("clusters", "readout", "variant"),
    benchmark:
        benchfile("clusters", "readout", "variant")
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        clustering=canonical_json(config["clustering"]),
    script:
        "../scripts/clusters.py"
