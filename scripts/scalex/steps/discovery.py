"""Rule discovery: rank a vocabulary (thousands of terms, never labelled) by how well each
term's H-space difference aligns with query directions built from concepts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex.differences import load_concept_diffs
from scalex.io import (
    ACTIVATIONS,
    open_checked,
    read_directions,
    read_strings,
    shard_concepts,
    write_tsv,
)
from scalex.rulekit import run_rule
from scalex.vectors import combine


def query_directions(
    direction_files: Sequence[str | Path], settings_hash: str, queries: Mapping[str, Any]
) -> tuple[list[str], np.ndarray]:
    """Unit query vectors ``sum(positive) - sum(negative)`` of concept directions."""
    wanted = sorted({c for q in queries.values() for c in q["positive"] + q.get("negative", [])})
    d = read_directions(direction_files, settings_hash, concepts=wanted)
    vectors = dict(zip(d["ids"], d["aggregate"], strict=True))
    rows = [
        combine(
            vectors, q["positive"], q.get("negative", []), what=f"analysis.discovery.queries.{name}"
        )[0]
        for name, q in queries.items()
    ]
    return list(queries), np.stack(rows)


def vocabulary_latents(
    chunks: Sequence[str | Path],
    baseline: str | Path,
    settings_hash: str,
    tap: str,
    kind: str,
    readout: str = "prompt",
) -> tuple[list[str], list[str], np.ndarray]:
    """Seed-averaged, step-averaged differences to the baseline of every vocabulary prompt."""
    terms, prompts, rows = [], [], []
    for chunk in chunks:
        with open_checked(chunk, ACTIVATIONS, settings_hash) as f:
            (cid,) = shard_concepts(f)
            seeds = [int(s) for s in f.attrs["seeds"]]
            terms += read_strings(f[f"concepts/{cid}/terms"])
        data = load_concept_diffs(
            {cid: chunk}, baseline, settings_hash, tap, kind, seeds, readout=readout
        )
        rows.append(data["diffs"][cid].mean(axis=(1, 2)))
        prompts += data["prompts"][cid]
    return terms, prompts, np.concatenate(rows).astype(np.float32)


def run(
    chunks: Sequence[str | Path],
    baseline: str | Path,
    direction_files: Sequence[str | Path],
    out_dir: str | Path,
    settings_hash: str,
    queries: Mapping[str, Any],
    tap: str,
    kind: str,
    top_k: int,
    readout: str = "prompt",
) -> pd.DataFrame:
    """Rank a vocabulary by alignment with each query direction; table and figure."""
    from scalex.analysis import figures
    from scalex.analysis.discovery import rank_vocabulary

    out = Path(out_dir)
    names, qvec = query_directions(direction_files, settings_hash, queries)
    terms, _, latents = vocabulary_latents(
        chunks, baseline, settings_hash, tap, kind, readout=readout
    )
    table = rank_vocabulary(latents, terms, qvec, query_names=names, k=top_k)
    write_tsv(table, out / "discovery.tsv")
    figures.discovery_bars(table, out / "discovery.png", readout=readout)
    return table


def main(smk: Any) -> None:
    run_rule(
        smk,
        lambda: run(
            smk.input.chunks,
            smk.input.baseline,
            smk.input.directions,
            Path(smk.output.table).parent,
            smk.params.settings_hash,
            json.loads(smk.params.queries),
            smk.params.tap,
            smk.params.space,
            smk.params.top_k,
            readout=smk.wildcards.readout,
        ),
        scope={"directions": query_concepts(json.loads(smk.params.queries))},
    )


def query_concepts(queries: dict[str, Any]) -> list[str]:
    """The concepts whose directions the queries combine."""
    return sorted({c for q in queries.values() for c in [*q["positive"], *q.get("negative", [])]})
