"""Rule similarity: each concept's nearest neighbours by cosine of the aggregated directions and,
up to ``similarity.max_full_concepts`` (or when asked), the full cosine matrices per step and
aggregated. Memory stays linear in the number of concepts without them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalex.io import atomic_text, read_directions, write_full_tsv, write_similarity
from scalex.rulekit import run_rule
from scalex.similarity import nearest_neighbours
from scalex.vectors import cosine_matrix


def full_similarity(n_concepts: int, mode: str = "auto", max_concepts: int = 2000) -> bool:
    """Whether the N x N matrices (per step and aggregated; HDF5 and TSV) are written:
    ``always``, ``never``, or ``auto``: up to ``max_concepts`` concepts."""
    return mode == "always" or (mode == "auto" and n_concepts <= max_concepts)


def run(
    direction_files: Sequence[str | Path],
    out_h5: str | Path,
    out_neighbours: str | Path,
    settings_hash: str,
    out_tsv: str | Path | None = None,
    neighbours: int = 10,
) -> None:
    """Nearest neighbours (HDF5 and TSV) and, when ``out_tsv`` is given, the full matrices."""
    import pandas as pd

    full = out_tsv is not None
    fields = ("aggregate", "per_step") if full else ("aggregate",)
    d = read_directions(direction_files, settings_hash, fields=fields)
    index, cosine = nearest_neighbours(d["aggregate"], neighbours)
    attrs = {
        "settings_hash": settings_hash,
        "step_indices": d["step_indices"],
        # the manifest: the direction files (= buckets) of this run; older layouts' leftovers
        # in the same folder are not part of it
        "direction_files": [Path(p).name for p in direction_files],
    }
    matrices = None
    if full:
        aggregate = cosine_matrix(d["aggregate"])
        matrices = (aggregate, cosine_matrix(np.swapaxes(d["per_step"], 0, 1)))
    write_similarity(
        out_h5, attrs, d["ids"], d["sets"], d["split_half"], index, cosine, matrices=matrices
    )
    ids = np.asarray(d["ids"], dtype=object)
    table = pd.DataFrame({
        "concept": np.repeat(ids, index.shape[1]),
        "rank": np.tile(np.arange(1, index.shape[1] + 1), len(ids)),
        "neighbour": ids[index.ravel()] if len(ids) else [],
        "cosine": cosine.ravel().round(6),
    })  # fmt: skip
    atomic_text(out_neighbours, table.to_csv(sep="\t", index=False))
    if full:
        frame = pd.DataFrame(matrices[0], index=d["ids"], columns=d["ids"])
        frame.index.name = "concept"
        write_full_tsv(frame, out_tsv)


def remove_stale_matrix(out_h5: str | Path) -> Path | None:
    """With ``similarity.full_matrices`` off, remove the ``similarity.tsv`` an earlier run wrote
    beside ``out_h5``: left behind, it would pass for this run's matrix. Returns what it removed.
    """
    from scalex.layout import OUTPUTS

    stale = Path(out_h5).with_name(Path(OUTPUTS["similarity_table"].template).name)
    if not stale.exists():
        return None
    stale.unlink()
    return stale


def main(smk: Any) -> None:
    # before the job memo, which may restore the other outputs without running the work
    removed = None if smk.output.get("tsv") else remove_stale_matrix(smk.output.h5)
    if removed is not None:
        print(
            f"removed {removed}: similarity.full_matrices no longer writes it (never, or auto "
            "above max_full_concepts)",
            file=sys.stderr,
        )
    run_rule(
        smk,
        lambda: run(
            smk.input,
            smk.output.h5,
            smk.output.neighbours,
            smk.params.settings_hash,
            out_tsv=smk.output.get("tsv"),
            neighbours=smk.params.neighbours,
        ),
    )
