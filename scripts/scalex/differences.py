"""Seed-paired differences to the baseline, read from activation shards: the input of the
directions and of every bootstrap analysis (defaults, descriptors, discovery).

Pairing is by seed: each concept sample minus the baseline's mean at the same seed and step, so
the part of the activation that the seed's noise explains cancels. Shards whose noise was drawn
on another device than the baseline's are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalex.directions import paired_differences
from scalex.errors import ConfigError
from scalex.io import (
    ACTIVATIONS,
    check_same_noise,
    open_checked,
    read_activations,
    read_dataset,
    read_strings,
    readout_steps,
    shard_concepts,
)


def locate_concepts(shards: Sequence[str | Path], concept_ids: Sequence[str]) -> dict[str, str]:
    """Which of ``shards`` holds each concept; a concept in none of them is an error."""
    where: dict[str, str] = {}
    for shard in shards:
        with open_checked(shard, ACTIVATIONS) as f:
            for cid in shard_concepts(f):
                where.setdefault(cid, str(shard))
    missing = sorted(set(concept_ids) - set(where))
    if missing:
        raise ConfigError(f"no activation shard holds the concepts {missing}")
    return {cid: where[cid] for cid in concept_ids}


def load_concept_diffs(
    shards: Mapping[str, str | Path] | str | Path,
    baseline: str | Path,
    settings_hash: str,
    tap: str,
    kind: str,
    seeds: Sequence[int] | None = None,
    readout: str = "prompt",
) -> dict[str, Any]:
    """Paired differences (P, S, T, D), prompts, template indices and sets of concepts, by id.

    ``shards`` maps each concept id to the shard that holds it (see :func:`locate_concepts`),
    or is one shard, meaning all of its concepts. ``seeds`` keeps only those seeds (default
    all). Also returns the readout's step indices and timesteps and the seeds used.
    """
    if isinstance(shards, (str, Path)):
        with open_checked(shards, ACTIVATIONS, settings_hash) as f:
            shards = dict.fromkeys(shard_concepts(f), str(shards))
    with open_checked(baseline, ACTIVATIONS, settings_hash) as fb:
        base = read_activations(fb, "baseline", tap, kind, readout)
        base_noise = fb.attrs.get("noise_source")
        all_seeds = [int(s) for s in fb.attrs["seeds"]]
        step_indices, timesteps = readout_steps(fb, readout)
    wanted = all_seeds if seeds is None else [int(s) for s in seeds]
    base = base[:, _seed_positions(all_seeds, wanted, baseline)]
    diffs, templates, prompts, sets = {}, {}, {}, {}
    by_shard: dict[str, list[str]] = {}
    for cid, shard in shards.items():
        by_shard.setdefault(str(shard), []).append(cid)
    for shard, ids in by_shard.items():
        with open_checked(shard, ACTIVATIONS, settings_hash) as f:
            check_same_noise(f, base_noise, baseline)
            pick = _seed_positions([int(x) for x in f.attrs["seeds"]], wanted, shard)
            for cid in ids:
                if f"concepts/{cid}" not in f:
                    raise ConfigError(f"{shard}: holds no concept {cid!r}")
                acts = read_activations(f, cid, tap, kind, readout)[:, pick]
                diffs[cid] = paired_differences(acts, base)
                templates[cid] = read_dataset(f, f"concepts/{cid}/template_index")
                prompts[cid] = read_strings(f[f"concepts/{cid}/prompts"])
                sets[cid] = str(f[f"concepts/{cid}"].attrs["set"])
    return {
        "diffs": diffs,
        "templates": templates,
        "prompts": prompts,
        "sets": sets,
        "step_indices": step_indices,
        "timesteps": timesteps,
        "seeds": wanted,
    }


def _seed_positions(have: Sequence[int], wanted: Sequence[int], path: str | Path) -> list[int]:
    """Where each wanted seed sits in a file's seed list; a missing seed is an error, since
    pairing by seed is what cancels the noise."""
    missing = sorted(set(wanted) - set(have))
    if missing:
        raise ConfigError(f"{path}: has no samples for seeds {missing[:10]}")
    return [list(have).index(s) for s in wanted]
