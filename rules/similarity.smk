rule similarity:
    """Cosine similarity of all concept directions, per step and aggregated."""
    input:
        expand(f"{TREE}/directions/{{bucket}}.h5", bucket=concept_buckets()),
    output:
        h5=f"{TREE}/similarity/similarity.h5",
        tsv=f"{TREE}/similarity/similarity.tsv",
    log:
        f"{TREE}/logs/similarity.log",
    benchmark:
        f"{TREE}/benchmarks/similarity.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
    script:
        "../scripts/compute_similarity.py"


rule clusters:
    """Hierarchical clusters of concepts, the number of clusters chosen by silhouette."""
    input:
        similarity=f"{TREE}/similarity/similarity.h5",
        directions=expand(f"{TREE}/directions/{{bucket}}.h5", bucket=concept_buckets()),
    output:
        clusters=f"{TREE}/clusters/clusters.tsv",
        silhouette=f"{TREE}/clusters/silhouette.tsv",
        matrix=f"{TREE}/clusters/similarity.tsv",
    log:
        f"{TREE}/logs/clusters.log",
    benchmark:
        f"{TREE}/benchmarks/clusters.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
        clustering=canonical_json(config["clustering"]),
    script:
        "../scripts/cluster_concepts.py"
