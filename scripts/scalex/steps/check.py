"""Rule check: the findings' votes against the images of the very samples that cast them.

A subsample of the voted samples (``check.seeds`` seeds of every concept and template) is
rendered with the stock pipeline of the audited model, with each sample's prompt, seed and the
run's scheduler and guidance (the extraction's own trajectory, whose H-space was read), and each
image is read by the check's image reader (:mod:`scalex.readers`) on every identity axis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex.analysis.check import (
    SAMPLE_COLUMNS,
    agreement_table,
    checked_subsample,
    confusion_table,
    shuffled,
)
from scalex.io import read_tsv, write_tsv
from scalex.rulekit import run_rule

log = logging.getLogger("scalex")


def read_checked(
    chosen: pd.DataFrame,
    images: np.ndarray,
    image_of: Mapping[tuple[str, int, int], int],
    reader: Any,
    axes: Mapping[str, Sequence[str]],
    variants: Mapping[str, Mapping[str, Mapping[str, Sequence[str]]]],
) -> pd.DataFrame:
    """Each chosen vote beside its image's reading on the vote's axis."""
    frames = []
    for axis, values in axes.items():
        block = chosen[chosen["axis"] == axis]
        if block.empty:
            continue
        rows = [
            image_of[(c, p, s)]
            for c, p, s in zip(block["concept"], block["prompt_index"], block["seed"], strict=True)
        ]
        texts = [
            [variants[c][axis][v][p] for v in values]
            for c, p in zip(block["concept"], block["prompt_index"], strict=True)
        ]
        readings = reader.read(images[rows], axis, list(values), texts)
        frame = block.copy()
        frame["reading"] = [r.value for r in readings]
        frame["margin"] = [r.margin for r in readings]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SAMPLE_COLUMNS]


def run(
    sample_votes: str | Path,
    spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    outputs: Mapping[str, str | Path],
    runtime: Mapping[str, Any],
    world: Path | None = None,
    pipe: Any = None,
    reader: Any = None,
) -> pd.DataFrame:
    """Render, read and tabulate the check; returns the per-axis agreement table."""
    from scalex.analysis import figures
    from scalex.conditioning import render_samples
    from scalex.models import check_model_content, load_model
    from scalex.readers import load_reader

    check, axes, variants = spec["check"], spec["axes"], spec["variants"]
    chosen = checked_subsample(read_tsv(sample_votes), int(check["seeds"]))
    unique = chosen[["concept", "prompt_index", "prompt", "seed"]].drop_duplicates()
    unique = unique.reset_index(drop=True)
    if pipe is None:
        check_model_content(dict(settings))
        pipe, _ = load_model(dict(settings), dict(runtime))
    log.info("rendering %d checked samples with the stock pipeline", len(unique))
    images = render_samples(
        pipe,
        unique["prompt"].tolist(),
        [int(s) for s in unique["seed"]],
        settings["sampling"],
        batch_size=int(runtime.get("batch_size", 32)),
    )
    image_of = {
        (c, int(p), int(s)): i
        for i, (c, p, s) in enumerate(
            zip(unique["concept"], unique["prompt_index"], unique["seed"], strict=True)
        )
    }
    reader = reader or load_reader(check, world)
    checked = read_checked(chosen, images, image_of, reader, axes, variants)
    if check.get("shuffle"):
        checked = shuffled(checked, int(spec["seed"]))
    table = agreement_table(checked, {a: list(v) for a, v in axes.items()}, spec["level"])
    write_tsv(checked, outputs["samples"])
    write_tsv(table, outputs["agreement"])
    write_tsv(confusion_table(checked, {a: list(v) for a, v in axes.items()}), outputs["confusion"])
    figures.check_figure(table, spec["reader_name"], outputs["figure"])
    return table


def main(smk: Any) -> None:
    from scalex.config import runtime_options

    def work() -> None:
        world = smk.input.get("world")
        run(
            smk.input.sample_votes,
            json.loads(smk.params.spec),
            json.loads(smk.params.settings),
            dict(smk.output.items()),
            runtime_options(smk.config),
            world=Path(world) if world else None,
        )

    run_rule(smk, work)
