"""Rule clusters: hierarchical clusters of concepts, k chosen by silhouette."""

import json

from scalex.jobs import compute_clusters
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
opts = json.loads(smk.params.clustering)
run_rule(
    smk,
    lambda: compute_clusters(
        smk.input.similarity,
        smk.output.clusters,
        smk.output.silhouette,
        smk.output.matrix,
        smk.params.settings_hash,
        sets=opts["sets"],
        method=opts["linkage"],
        k_min=opts["k_min"],
        k_max=None if opts["k_max"] == "auto" else opts["k_max"],
        remove=opts["remove_axes"] if smk.wildcards.variant == "axes_removed" else [],
        null_permutations=opts["null_permutations"],
        null_alpha=opts["null_alpha"],
        direction_files=smk.input.directions,
        max_exact=opts["max_exact"],
        null_sample=opts["null_sample"],
    ),
)
