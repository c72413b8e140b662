"""Rule similarity: cosine similarity of all concept directions."""

from scalex.jobs import compute_similarity
from scalex.rulekit import run_rule

smk = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(
    smk,
    lambda: compute_similarity(smk.input, smk.output.h5, smk.output.tsv, smk.params.settings_hash),
)
