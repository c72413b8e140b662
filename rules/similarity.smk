rule similarity:
    """Nearest neighbours of every concept direction; the full cosine matrices (per step and
    aggregated) only up to similarity.max_full_concepts, unless asked for."""
    input:
        [out("directions", bucket=b) for b in concept_buckets()],
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
        similarity=out("similarity"),
        directions=[out("directions", bucket=b) for b in concept_buckets()],
    output:
        clusters=out("clusters"),
        silhouette=out("silhouette"),
        matrix=out("clustered_matrix"),
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
