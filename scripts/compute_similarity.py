"""Rule similarity: nearest neighbours of every concept direction, and the full cosine
matrices when the run is small enough (``similarity.full_matrices``)."""

from scalex.jobs import compute_similarity
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: compute_similarity(
        smk.input,
        smk.output.h5,
        smk.output.neighbours,
        smk.params.settings_hash,
        out_tsv=smk.output.get("tsv"),
        neighbours=smk.params.neighbours,
    ),
)
