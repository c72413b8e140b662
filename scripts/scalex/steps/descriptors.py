"""Rule descriptors: rank identity descriptors (e.g. "young", "elderly") of each target concept
by how far its "<descriptor> <concept>" prompts move H-space along each descriptor axis."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scalex.io import write_tsv
from scalex.layout import descriptor_slug
from scalex.rulekit import run_rule
from scalex.steps.jobs import job_diffs


def run(
    data: dict[str, Any],
    targets: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    out_dir: str | Path,
    boot: Mapping[str, Any],
    readout: str | None = None,
) -> pd.DataFrame:
    """Descriptor ranking per concept and axis (table, top-1 table, heatmap), each sample's vote
    (``sample_votes.tsv``: prompt, seed and the nearest described variant) and the share of each
    concept's samples voting for each value (``votes.tsv``)."""
    from scalex.analysis import figures
    from scalex.analysis.descriptors import (
        descriptor_alignment,
        sample_votes,
        top_descriptors,
        vote_shares,
    )

    out = Path(out_dir)
    slug_axes = {axis: [descriptor_slug(v) for v in values] for axis, values in axes.items()}
    table = descriptor_alignment(
        data["diffs"],
        list(targets),
        slug_axes,
        templates=data["templates"],
        n_boot=boot["bootstrap"],
        level=boot["confidence"],
        seed=boot["seed"],
    )
    write_tsv(table, out / "descriptors.tsv")
    write_tsv(top_descriptors(table), out / "top_descriptors.tsv")
    samples = sample_votes(data["diffs"], list(targets), slug_axes, data["templates"])
    votes = vote_shares(
        samples, slug_axes, n_boot=boot["bootstrap"], level=boot["confidence"], seed=boot["seed"]
    )
    write_tsv(votes, out / "votes.tsv")
    write_tsv(with_prompts_and_seeds(samples, data), out / "sample_votes.tsv")
    figures.descriptor_heatmap(table, out / "descriptors.png", readout=readout)
    return table


def with_prompts_and_seeds(samples: pd.DataFrame, data: Mapping[str, Any]) -> pd.DataFrame:
    """Name each sample by its prompt text and seed, so its image can be rendered."""
    seeds = list(data["seeds"])
    named = samples.copy()
    named.insert(
        2,
        "prompt",
        [
            data["prompts"][c][p]
            for c, p in zip(named["concept"], named["prompt_index"], strict=True)
        ],
    )
    named.insert(3, "seed", [seeds[i] for i in named["seed_index"]])
    return named


def main(smk: Any) -> None:
    def work() -> None:
        data = job_diffs(smk)
        run(
            data,
            smk.params.targets,
            json.loads(smk.params.axes)["axes"],
            Path(smk.output.table).parent,
            json.loads(smk.params.bootstrap),
            readout=smk.wildcards.readout,
        )

    run_rule(smk, work, scope={"shards": list(smk.params.concepts)})
