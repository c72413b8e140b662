"""Check the per-sample votes against the very images those samples generate.

The vote of a sample (prompt, seed) claims which identity value the model is drawing for it
(``sample_votes.tsv`` of the descriptors analysis). On a reference world that claim can be read
off the image: this module renders every voted sample with the stock pipeline of the run's model
(same prompt, seed, scheduler, steps and guidance, and the noise drawn as the extraction drew it,
so it is the trajectory whose H-space was read) and reads it with the world's attribute reader.
Then, per axis: how many votes equal their own image's reading (``agreement``), how far the
vote shares lie from the image shares of the same samples (``share_mae``), and the agreement
expected if the votes knew only each concept's share (``chance``), the control.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalex_refworld import world as W

log = logging.getLogger("scalex")

#: How a descriptor value of the config reads on the world's images, per reader attribute.
VOTE_READING = {
    "gender": {"female": "woman", "male": "man", "woman": "woman", "man": "man"},
    "age": {"young": "young", "old": "old"},
    "wealth": {"rich": "rich", "poor": "poor"},
}
#: The reader's attributes that a descriptor axis can name.
ATTRIBUTES = tuple(VOTE_READING)
IMAGE_COLUMNS = ["concept", "prompt", "seed", "profession", *ATTRIBUTES]
AGREEMENT_COLUMNS = ["axis", "agreement", "share_mae", "chance", "samples", "concepts"]


def samples_to_render(sample_votes: pd.DataFrame) -> pd.DataFrame:
    """Each (concept, prompt, seed) once, in a stable order."""
    unique = sample_votes[["concept", "prompt", "seed"]].drop_duplicates()
    return unique.sort_values(["concept", "prompt", "seed"], kind="stable").reset_index(drop=True)


def read_samples(samples: pd.DataFrame, images: np.ndarray, world: W.World) -> pd.DataFrame:
    """The world's reader on each rendered sample."""
    from scalex_refworld.reader import read

    readings = read(images, world)
    table = samples[["concept", "prompt", "seed"]].copy().reset_index(drop=True)
    table["profession"] = [r.profession for r in readings]
    for attr in ATTRIBUTES:
        table[attr] = [getattr(r, attr) for r in readings]
    return table[IMAGE_COLUMNS]


def agreement(
    sample_votes: pd.DataFrame, images: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per axis: agreement of each vote with its own image, MAE of the shares, chance.

    Returns the summary (one row per axis the reader can read) and the per-concept table
    (vote share and image share of the axis's first value, on the same samples). Axes whose
    name is not a reader attribute, or whose values it cannot map, are left out.
    """
    merged = sample_votes.merge(
        images, on=["concept", "prompt", "seed"], how="left", validate="many_to_one"
    )
    missing = merged["profession"].isna()
    if missing.any():
        first = merged[missing].iloc[0]
        raise ValueError(
            f"no image was read for sample {first['concept']!r} ({first['prompt']!r}, seed "
            f"{first['seed']}): the rendered samples are not the voted ones"
        )
    rows, per_concept = [], []
    for axis, block in merged.groupby("axis", sort=False):
        mapping = VOTE_READING.get(str(axis))
        if mapping is None or not set(block["vote"]) <= set(mapping):
            continue
        voted = block["vote"].map(mapping)
        seen = block[str(axis)]
        first = next(iter(mapping.values()))  # woman, young, rich
        frame = pd.DataFrame(
            {
                "concept": block["concept"],
                "vote": (voted == first).astype(float),
                "image": (seen == first).astype(float),
                "agree": (voted == seen).astype(float),
            }
        )
        by = frame.groupby("concept", sort=False).mean()
        chance = by["vote"] * by["image"] + (1 - by["vote"]) * (1 - by["image"])
        rows.append(
            {
                "axis": axis,
                "agreement": float(frame["agree"].mean()),
                "share_mae": float((by["vote"] - by["image"]).abs().mean()),
                "chance": float(chance.mean()),
                "samples": len(frame),
                "concepts": len(by),
            }
        )
        per_concept.append(
            pd.DataFrame(
                {
                    "concept": by.index,
                    "axis": axis,
                    "value": first,
                    "vote_share": by["vote"].to_numpy(),
                    "image_share": by["image"].to_numpy(),
                    "agreement": by["agree"].to_numpy(),
                }
            )
        )
    concepts = pd.concat(per_concept, ignore_index=True) if per_concept else pd.DataFrame()
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS), concepts


def run_job(smk: Any) -> None:
    """Rule sample_images: render and read every voted sample of the run."""
    from scalex.conditioning import render_samples
    from scalex.config import runtime_options
    from scalex.io import read_tsv, write_tsv
    from scalex.models import check_model_content, load_model
    from scalex.rulekit import run_rule

    def work() -> None:
        settings = json.loads(smk.params.settings)
        check_model_content(settings)
        world = W.World.from_table(smk.input.world)
        samples = samples_to_render(read_tsv(smk.input.sample_votes))
        runtime = runtime_options(smk.config)
        pipe, _ = load_model(settings, runtime)
        log.info("rendering %d samples with the stock pipeline", len(samples))
        images = render_samples(
            pipe,
            samples["prompt"].tolist(),
            samples["seed"].tolist(),
            settings["sampling"],
            batch_size=int(runtime.get("batch_size", 64)),
        )
        write_tsv(read_samples(samples, images, world), Path(smk.output.images))

    run_rule(smk, work)
