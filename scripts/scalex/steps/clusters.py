"""Rule clusters: hierarchical clusters of concepts, k by silhouette, or 1 when a permutation null
finds no structure; raw, or after projecting out the declared identity axes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalex.io import atomic_text, read_directions, read_similarity, write_full_tsv
from scalex.layout import AXES_REMOVED
from scalex.rulekit import run_rule
from scalex.similarity import cluster_with_null, remove_axes
from scalex.vectors import cosine_matrix


def run(
    similarity_h5: str | Path,
    out_clusters: str | Path,
    out_silhouette: str | Path,
    out_matrix: str | Path,
    settings_hash: str,
    sets: Sequence[str] | None = None,
    method: str = "average",
    k_min: int = 2,
    k_max: int | None = None,
    remove: Sequence[Sequence[str]] = (),
    direction_files: Sequence[str | Path] = (),
    null_permutations: int = 200,
    null_alpha: float = 0.05,
    seed: int = 0,
    max_exact: int = 2000,
    null_sample: int = 500,
) -> None:
    """Cluster the concepts of ``sets`` (all when None); write labels, silhouettes and matrix.

    ``remove`` lists concept pairs (a, b) whose axes ``unit(d_a) - unit(d_b)`` are projected out
    of the directions first (see :func:`scalex.similarity.remove_axes`). A permutation null
    (:func:`scalex.similarity.cluster_with_null`) lets the answer be k = 1, "no structure". The
    cosine matrix of the concepts the tree was built on (all, or the sample above
    ``max_exact``) is written to ``out_matrix`` for the figures.
    """
    import pandas as pd

    sim = read_similarity(similarity_h5, settings_hash, matrices=False)
    keep = [i for i, s in enumerate(sim["sets"]) if sets is None or s in sets]
    if len(keep) < 2:
        raise ValueError(
            f"clustering.sets {list(sets or [])} select {len(keep)} concepts; need at least 2"
        )
    ids = [sim["ids"][i] for i in keep]
    axis_ids = sorted({c for pair in remove for c in pair})
    d = read_directions(
        direction_files, settings_hash, concepts=sorted(set(ids) | set(axis_ids)),
        fields=("aggregate",),
    )  # fmt: skip
    vec = dict(zip(d["ids"], d["aggregate"], strict=True))
    vectors = np.stack([vec[c] for c in ids])
    if remove:
        vectors = remove_axes(vectors, np.stack([vec[a] - vec[b] for a, b in remove]))
    result = cluster_with_null(
        vectors, method, k_min, k_max, permutations=null_permutations, alpha=null_alpha,
        seed=seed, max_exact=max_exact, null_sample=null_sample,
    )  # fmt: skip
    sample = result.sample if result.sample is not None else np.arange(len(ids))
    table = pd.DataFrame(
        {"concept": ids, "set": [sim["sets"][i] for i in keep], "cluster": result.labels}
    ).sort_values(["cluster", "concept"])
    atomic_text(out_clusters, table.to_csv(sep="\t", index=False))
    curve = pd.DataFrame(
        {"k": list(result.silhouette), "silhouette": list(result.silhouette.values())}
    )
    curve["chosen"] = curve["k"] == result.k
    curve["null_p_value"] = np.nan if result.p_value is None else result.p_value
    curve["null_permutations"] = null_permutations
    curve["concepts"] = len(ids)
    curve["tree_concepts"] = len(sample)
    atomic_text(out_silhouette, curve.to_csv(sep="\t", index=False, float_format="%.6f"))
    tree_ids = [ids[i] for i in sample]
    frame = pd.DataFrame(cosine_matrix(vectors[sample]), index=tree_ids, columns=tree_ids)
    frame.index.name = "concept"
    write_full_tsv(frame, out_matrix)


def main(smk: Any) -> None:
    opts = json.loads(smk.params.clustering)
    run_rule(
        smk,
        lambda: run(
            smk.input.similarity,
            smk.output.clusters,
            smk.output.silhouette,
            smk.output.matrix,
            smk.params.settings_hash,
            sets=opts["sets"],
            method=opts["linkage"],
            k_min=opts["k_min"],
            k_max=None if opts["k_max"] == "auto" else opts["k_max"],
            remove=opts["remove_axes"] if smk.wildcards.variant == AXES_REMOVED else [],
            null_permutations=opts["null_permutations"],
            null_alpha=opts["null_alpha"],
            direction_files=smk.input.directions,
            max_exact=opts["max_exact"],
            null_sample=opts["null_sample"],
        ),
        scope=_scope(smk, opts),
    )


def _scope(smk: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """What the job reads: the similarity file's ids and sets (not its matrices) and the
    directions of the clustered concepts and of the axes removed."""
    from scalex.io import SIMILARITY, open_checked, read_strings

    with open_checked(smk.input.similarity, SIMILARITY) as f:
        ids, sets = read_strings(f["ids"]), read_strings(f["sets"])
    wanted = opts["sets"]
    concepts = [c for c, s in zip(ids, sets, strict=True) if wanted is None or s in wanted]
    if smk.wildcards.variant == AXES_REMOVED:
        concepts += [c for pair in opts["remove_axes"] for c in pair]
    return {"similarity": {"datasets": ["ids", "sets"]}, "directions": concepts}
