"""Rule directions: the direction of every concept of one activation shard and readout, per kept
step and aggregated, from seed-paired differences to the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scalex.differences import load_concept_diffs
from scalex.directions import concept_direction
from scalex.io import write_directions
from scalex.rulekit import run_rule


def run(
    shard: str | Path,
    baseline: str | Path,
    out: str | Path,
    settings_hash: str,
    tap: str = "mid_block",
    kind: str = "pooled",
    readout: str = "prompt",
) -> None:
    """Directions of every concept of an activation shard, written to a directions file."""
    data = load_concept_diffs(shard, baseline, settings_hash, tap, kind, readout=readout)
    attrs = {
        "settings_hash": settings_hash,
        "readout": readout,
        "tap": tap,
        "space": kind,
        "step_indices": data["step_indices"],
        "timesteps": data["timesteps"],
        "seeds": data["seeds"],
    }
    directions = {}
    for cid, diffs in data["diffs"].items():
        d = concept_direction(diffs, cid)
        directions[cid] = {
            "set": data["sets"][cid],
            "split_half": d.split_half,
            "n_prompts": d.n_prompts,
            "n_seeds": d.n_seeds,
            "per_step": d.per_step,
            "aggregate": d.aggregate,
            "mean_diff": d.mean_diff,
        }
    write_directions(out, attrs, directions)


def main(smk: Any) -> None:
    run_rule(
        smk,
        lambda: run(
            smk.input.shard,
            smk.input.baseline,
            smk.output[0],
            smk.params.settings_hash,
            tap=smk.params.tap,
            kind=smk.params.space,
            readout=smk.wildcards.readout,
        ),
    )
