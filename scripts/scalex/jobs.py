"""The work of each workflow rule, as plain functions (the rule scripts only unpack arguments).

Keeping the work here makes every step callable from a notebook or a test without Snakemake,
and keeps the rule scripts thin enough that editing one rarely changes behaviour.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalex import __version__
from scalex.concepts import Concept
from scalex.config import canonical_json
from scalex.directions import concept_direction, paired_differences
from scalex.errors import StoreError
from scalex.store import (
    ACTIVATIONS,
    atomic_h5,
    atomic_text,
    open_checked,
    read_activations,
    read_dataset,
    read_strings,
    readout_steps,
    shard_concepts,
    write_concept_activations,
    write_readouts,
    write_strings,
)

log = logging.getLogger("scalex")
DIRECTIONS = "scalex.directions"
SIMILARITY = "scalex.similarity"


# -- prompts -------------------------------------------------------------------------------------
def prompt_record(concept: Concept, seeds: Sequence[int]) -> dict[str, Any]:
    """What the prompt file of a concept holds: its spec plus the seeds."""
    return concept.spec() | {"seeds": [int(s) for s in seeds]}


def write_prompts(record: dict[str, Any], out: str | Path) -> None:
    """A concept's prompts and seeds as canonical JSON (deterministic bytes)."""
    atomic_text(out, canonical_json(record) + "\n")


def read_prompts(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# -- extraction ----------------------------------------------------------------------------------
def package_versions() -> dict[str, str]:
    """Versions that can change activations, recorded in every shard."""
    import diffusers
    import h5py
    import torch
    import transformers

    return {
        "scalex": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "h5py": h5py.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def sampling_settings(settings: dict[str, Any], runtime: dict[str, Any]):
    """Build :class:`SamplingSettings` from the hashed settings plus device and batch size."""
    from scalex.extract import SamplingSettings

    s, e = settings["sampling"], settings["extraction"]
    return SamplingSettings(
        steps=s["steps"],
        guidance_scale=float(s["guidance_scale"]),
        branch=s["branch"],
        height=s.get("height"),
        width=s.get("width"),
        dtype=s["dtype"],
        device=runtime.get("device", "auto"),
        batch_size=int(runtime.get("batch_size", 32)),
        noise_device=s["noise_device"],
        eta=float(s["eta"]),
        keep_steps=tuple(e["keep_steps"]) if e.get("keep_steps") else None,
        taps=tuple(e["taps"]),
        store=tuple(e["store"]),
        negative_prompt=s.get("negative_prompt", ""),
        readouts=tuple(e.get("readouts", ("prompt",))),
        content_prompt=e.get("content_prompt") or "",
    )


def check_model_content(settings: dict[str, Any]) -> None:
    """Refuse to extract when the model's content is not the one the results tree names.

    The tree's hash was computed from the model's digest when the DAG was built; if the files
    changed since (a retraining in the same run, a re-download), the activations would be
    filed under the wrong model.
    """
    from scalex.errors import ModelError
    from scalex.provenance import model_content

    model = settings["model"]
    expected = model.get("content")
    if expected is None:
        return
    found = model_content(model["id"], model.get("revision"))
    if found != expected:
        raise ModelError(
            f"model.id {model['id']!r} changed since this run was planned (content {found}, "
            f"expected {expected}): rerun snakemake to file its results under a new tree"
        )


def load_model(settings: dict[str, Any], runtime: dict[str, Any]):
    """Load the configured pipeline and check its family against ``model.family``."""
    from scalex.models import ModelError, detect_family, load_pipeline

    model, sampling = settings["model"], settings["sampling"]
    pipe = load_pipeline(
        model["id"],
        revision=model.get("revision"),
        variant=model.get("variant"),
        dtype=sampling["dtype"],
        device=runtime.get("device", "auto"),
        scheduler=sampling.get("scheduler"),
        scheduler_kwargs=sampling.get("scheduler_kwargs"),
    )
    info = detect_family(pipe, model["id"])
    wanted = model.get("family", "auto")
    if wanted not in ("auto", info.family):
        raise ModelError(
            f"model.family is {wanted!r} but {model['id']!r} looks like {info.family!r} "
            f"({info.pipeline_class}); set model.family: auto or fix model.id"
        )
    return pipe, info


def extract_shard(
    prompt_files: Sequence[str | Path],
    out: str | Path,
    settings: dict[str, Any],
    settings_hash: str,
    runtime: dict[str, Any] | None = None,
    pipe_and_info: tuple[Any, Any] | None = None,
) -> dict[str, float]:
    """Extract the activations of every concept in ``prompt_files`` into one HDF5 shard.

    All (prompt, seed) samples of the shard run through one batched loop, so a shard pays for
    model loading once. Returns timings (seconds) for the overhead measurement.
    """
    from scalex.extract import HSpaceExtractor, check_finite
    from scalex.rulekit import configure_torch

    configure_torch()  # the rule's threads (no-op when not called from a rule)
    runtime = runtime or {}
    records = [read_prompts(p) for p in prompt_files]
    seeds = records[0]["seeds"]
    for rec, path in zip(records, prompt_files, strict=True):
        if rec["seeds"] != seeds:
            raise ValueError(f"{path}: seeds differ from the other concepts of this shard")
    check_model_content(settings)
    t0 = time.perf_counter()
    pipe, info = pipe_and_info or load_model(settings, runtime)
    t_load = time.perf_counter() - t0
    sampling = sampling_settings(settings, runtime)
    extractor = HSpaceExtractor(pipe, sampling)
    samples = [(prompt, seed) for rec in records for prompt in rec["prompts"] for seed in seeds]
    t1 = time.perf_counter()
    acts = extractor.run_all(
        samples,
        progress=bool(runtime.get("progress", True)),
        desc=Path(out).stem,
        unit_scale=1.0 / len(seeds),
    )
    t_extract = time.perf_counter() - t1
    check_finite(acts, samples)
    scheduler = pipe.scheduler
    header = {
        "settings_hash": settings_hash,
        "settings_json": canonical_json(settings),
        "model_id": info.model_id,
        "model_revision": settings["model"].get("revision"),
        "family": info.family,
        "architecture": info.architecture,
        "pipeline_class": info.pipeline_class,
        "prediction_type": info.prediction_type,
        "scheduler": type(scheduler).__name__,
        "scheduler_config": dict(scheduler.config),
        "num_inference_steps": sampling.steps,
        "timesteps": timesteps_of(pipe, sampling, extractor.kept),
        "step_indices": extractor.kept,
        "readouts": list(sampling.readouts),
        "device": str(extractor.device),
        # the noise of a seed depends on where its generator lives: never pair across sources
        "noise_source": extractor.noise_source,
        "content_prompt": sampling.content_prompt,
        "seeds": seeds,
        "height": extractor.height,
        "width": extractor.width,
        "guidance_scale": sampling.guidance_scale,
        "classifier_free_guidance": extractor.cfg,
        "branch": sampling.branch,
        "dtype": sampling.dtype,
        "taps": list(sampling.taps),
        "store": list(sampling.store),
        "versions": package_versions(),
        "concepts": [rec["id"] for rec in records],
    }
    t2 = time.perf_counter()
    with atomic_h5(out, ACTIVATIONS, header) as f:
        write_readouts(f, {r: (a.step_indices, a.timesteps) for r, a in acts.items()})
        start = 0
        for rec in records:
            n = len(rec["prompts"]) * len(seeds)
            arrays = {
                readout: {
                    tap: {
                        kind: arr[start : start + n].reshape(
                            len(rec["prompts"]), len(seeds), *arr.shape[1:]
                        )
                        for kind, arr in kinds.items()
                    }
                    for tap, kinds in a.data.items()
                }
                for readout, a in acts.items()
            }
            meta = {"set": rec["set"], "derived": rec.get("derived") or {}}
            write_concept_activations(
                f,
                rec["id"],
                meta,
                rec["prompts"],
                rec["template_index"],
                arrays,
                compression=runtime.get("compression"),
                terms=rec.get("terms"),
            )
            start += n
    return {
        "load_s": t_load,
        "extract_s": t_extract,
        "write_s": time.perf_counter() - t2,
        "samples": float(len(samples)),
    }


def check_same_noise(f, base_noise: str | None, baseline: str | Path) -> None:
    """Refuse to pair a shard with a baseline whose seeds drew noise elsewhere (cpu vs cuda):
    the same seed would then be different noise and the pairing would cancel nothing."""
    noise = f.attrs.get("noise_source")
    if noise != base_noise:
        raise StoreError(
            f"{f.filename}: noise drawn on {noise!r} but the baseline {baseline} drew it on "
            f"{base_noise!r}; rerun one of them with the same sampling.noise_device and device"
        )


def timesteps_of(pipe, sampling, kept: Sequence[int]) -> list[int]:
    """Scheduler timesteps of the kept step indices (as the extractor sets them)."""
    import copy

    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(sampling.steps)
    return [int(scheduler.timesteps[i]) for i in kept]


# -- directions ----------------------------------------------------------------------------------
def load_differences(
    shard: str | Path,
    baseline: str | Path,
    settings_hash: str,
    tap: str,
    kind: str,
    readout: str = "prompt",
) -> dict[str, dict[str, Any]]:
    """Seed-paired differences (P, S, T, D) of every concept in a shard, with prompt metadata."""
    with open_checked(baseline, ACTIVATIONS, settings_hash) as fb:
        base = read_activations(fb, "baseline", tap, kind, readout)
        base_noise = fb.attrs.get("noise_source")
    out = {}
    with open_checked(shard, ACTIVATIONS, settings_hash) as f:
        check_same_noise(f, base_noise, baseline)
        step_indices, timesteps = readout_steps(f, readout)
        for cid in shard_concepts(f):
            group = f[f"concepts/{cid}"]
            out[cid] = {
                "diffs": paired_differences(read_activations(f, cid, tap, kind, readout), base),
                "prompts": read_strings(group["prompts"]),
                "template_index": group["template_index"][()],
                "set": str(group.attrs["set"]),
                "step_indices": step_indices,
                "timesteps": timesteps,
                "seeds": f.attrs["seeds"],
            }
    return out


def compute_directions(
    shard: str | Path,
    baseline: str | Path,
    out: str | Path,
    settings_hash: str,
    tap: str = "mid_block",
    kind: str = "pooled",
    readout: str = "prompt",
) -> None:
    """Directions of every concept of an activation shard, written to a directions file."""
    records = load_differences(shard, baseline, settings_hash, tap, kind, readout)
    any_rec = next(iter(records.values()))
    attrs = {
        "settings_hash": settings_hash,
        "readout": readout,
        "tap": tap,
        "space": kind,
        "step_indices": any_rec["step_indices"],
        "timesteps": any_rec["timesteps"],
        "seeds": any_rec["seeds"],
        "concepts": list(records),
    }
    with atomic_h5(out, DIRECTIONS, attrs) as f:
        for cid, rec in records.items():
            d = concept_direction(rec["diffs"], cid)
            g = f.create_group(f"concepts/{cid}")
            g.attrs["set"] = rec["set"]
            g.attrs["split_half"] = d.split_half
            g.attrs["n_prompts"] = d.n_prompts
            g.attrs["n_seeds"] = d.n_seeds
            g.create_dataset("per_step", data=d.per_step)
            g.create_dataset("aggregate", data=d.aggregate)
            g.create_dataset("mean_diff", data=d.mean_diff)


DIRECTION_FIELDS = ("per_step", "aggregate", "mean_diff")


def read_directions(
    files: Sequence[str | Path],
    settings_hash: str,
    concepts: Sequence[str] | None = None,
    fields: Sequence[str] = DIRECTION_FIELDS,
) -> dict[str, Any]:
    """Directions of all concepts in ``files`` (optionally only ``concepts``), sorted by id.

    Returns ids, sets, the arrays named in ``fields`` (``per_step`` (N, T, D), ``aggregate``
    (N, D), ``mean_diff`` (N, T, D); read only when asked, since at 10,000 concepts each
    per-step array is hundreds of MB), ``split_half`` (N,) and the step indices.
    """
    unknown = sorted(set(fields) - set(DIRECTION_FIELDS))
    if unknown:
        raise ValueError(f"unknown direction fields {unknown}")
    wanted = None if concepts is None else set(concepts)
    rows: dict[str, dict[str, Any]] = {}
    steps = None
    for path in files:
        with open_checked(path, DIRECTIONS, settings_hash) as f:
            steps = f.attrs["step_indices"]
            for cid in shard_concepts(f):
                if wanted is not None and cid not in wanted:
                    continue
                g = f[f"concepts/{cid}"]
                split_half = float(g.attrs["split_half"])
                rows[cid] = {
                    "set": str(g.attrs["set"]),
                    "split_half": split_half,
                    **{name: read_dataset(f, f"concepts/{cid}/{name}") for name in fields},
                }
                for name in fields:
                    if not np.isfinite(rows[cid][name]).all():
                        raise StoreError(f"{path}: concepts/{cid}/{name} holds NaN or infinity")
    if wanted is not None:
        missing = sorted(wanted - set(rows))
        if missing:
            raise KeyError(f"no directions for concepts {missing}")
    ids = sorted(rows)
    out: dict[str, Any] = {
        "ids": ids,
        "sets": [rows[c]["set"] for c in ids],
        "split_half": np.array([rows[c]["split_half"] for c in ids]),
        "step_indices": np.asarray(steps),
    }
    for name in fields:
        out[name] = np.stack([rows[c][name] for c in ids]) if ids else np.zeros((0,))
    return out


# -- similarity and clusters ---------------------------------------------------------------------
def full_similarity(n_concepts: int, mode: str = "auto", max_concepts: int = 2000) -> bool:
    """Whether the N x N matrices (per step and aggregated; HDF5 and TSV) are written:
    ``always``, ``never``, or ``auto``: up to ``max_concepts`` concepts."""
    return mode == "always" or (mode == "auto" and n_concepts <= max_concepts)


def compute_similarity(
    direction_files: Sequence[str | Path],
    out_h5: str | Path,
    out_neighbours: str | Path,
    settings_hash: str,
    out_tsv: str | Path | None = None,
    neighbours: int = 10,
) -> None:
    """Each concept's nearest neighbours by cosine, and, when ``out_tsv`` is given, the full
    matrices per step and aggregated (HDF5 and TSV). Memory stays linear in N without them."""
    import pandas as pd

    from scalex.similarity import cosine_matrix, nearest_neighbours

    full = out_tsv is not None
    fields = ("aggregate", "per_step") if full else ("aggregate",)
    d = read_directions(direction_files, settings_hash, fields=fields)
    index, cosine = nearest_neighbours(d["aggregate"], neighbours)
    attrs = {
        "settings_hash": settings_hash,
        "step_indices": d["step_indices"],
        "matrices": full,
        # the manifest: the direction files (= buckets) of this run; older layouts' leftovers
        # in the same folder are not part of it
        "direction_files": [Path(p).name for p in direction_files],
    }
    with atomic_h5(out_h5, SIMILARITY, attrs) as f:
        write_strings(f, "ids", d["ids"])
        write_strings(f, "sets", d["sets"])
        f.create_dataset("split_half", data=d["split_half"])
        f.create_dataset("neighbours", data=index.astype(np.int32))
        f.create_dataset("neighbour_cosines", data=cosine)
        if full:
            aggregate = cosine_matrix(d["aggregate"])
            f.create_dataset("aggregate", data=aggregate)
            f.create_dataset("per_step", data=cosine_matrix(np.swapaxes(d["per_step"], 0, 1)))
    ids = np.asarray(d["ids"], dtype=object)
    table = pd.DataFrame({
        "concept": np.repeat(ids, index.shape[1]),
        "rank": np.tile(np.arange(1, index.shape[1] + 1), len(ids)),
        "neighbour": ids[index.ravel()] if len(ids) else [],
        "cosine": cosine.ravel().round(6),
    })  # fmt: skip
    atomic_text(out_neighbours, table.to_csv(sep="\t", index=False))
    if full:
        frame = pd.DataFrame(aggregate, index=d["ids"], columns=d["ids"]).round(6)
        frame.index.name = "concept"
        atomic_text(out_tsv, frame.to_csv(sep="\t"))


def read_similarity(
    path: str | Path, settings_hash: str | None = None, matrices: bool = True
) -> dict[str, Any]:
    """ids, sets, split-half stability and neighbours; with ``matrices`` also the aggregate and
    per-step matrices (``None`` when the run did not write them)."""
    with open_checked(path, SIMILARITY, settings_hash) as f:
        out = {
            "ids": read_strings(f["ids"]),
            "sets": read_strings(f["sets"]),
            "split_half": read_dataset(f, "split_half"),
            "step_indices": f.attrs["step_indices"],
            "neighbours": read_dataset(f, "neighbours"),
            "neighbour_cosines": read_dataset(f, "neighbour_cosines"),
            "aggregate": None,
            "per_step": None,
        }
        if matrices and "aggregate" in f:
            out["aggregate"] = read_dataset(f, "aggregate")
            out["per_step"] = read_dataset(f, "per_step")
        return out


def compute_clusters(
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

    from scalex.similarity import cluster_with_null, cosine_matrix, remove_axes

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
    frame = frame.round(6)
    frame.index.name = "concept"
    atomic_text(out_matrix, frame.to_csv(sep="\t"))
