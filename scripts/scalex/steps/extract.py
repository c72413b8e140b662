"""Rules extract and extract_vocabulary: the H-space activations of every sample of one prompt
file (a bucket of concepts, or a vocabulary chunk) into one HDF5 shard.

All (prompt, seed) samples of the shard run through one batched loop, so a shard pays for model
loading once. Device, batch size, progress, compression, reuse and compile come from the config
inside the job, not from rule parameters: they never change a shard, so changing them reruns
nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalex.config import canonical_json, runtime_options
from scalex.io import (
    ACTIVATIONS,
    atomic_h5,
    read_prompts,
    write_concept_activations,
    write_readouts,
)
from scalex.models import check_model_content, load_model
from scalex.provenance import MODEL_LIBRARIES, package_versions
from scalex.reuse import Identity, SampleStore, keep, tree_of
from scalex.rulekit import configure_torch, may_reuse, run_rule

log = logging.getLogger("scalex")


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
        readouts=tuple(e["readouts"]),
        content_prompt=e.get("content_prompt") or "",
        compile=bool(runtime.get("compile", False)),
    )


def run(
    prompt_file: str | Path | Sequence[str | Path],
    out: str | Path | Sequence[str | Path],
    settings: dict[str, Any],
    settings_hash: str,
    runtime: dict[str, Any] | None = None,
    pipe_and_info: tuple[Any, Any] | None = None,
) -> dict[str, float]:
    """Extract the activations of every concept of each prompt file into its HDF5 shard.

    ``prompt_file`` and ``out`` are one path each, or equal-length lists (one job, several
    shards: a small run's bucket and baseline share one model load). Samples that an earlier
    shard of the tree holds are reused (:mod:`scalex.reuse`); the model runs on the rest, and is
    not even loaded when nothing is left. Returns timings (seconds) and sample counts.
    """
    from scalex.errors import ExtractionError

    configure_torch()  # the rule's threads (no-op when not called from a rule)
    runtime = runtime or {}
    files = [prompt_file] if isinstance(prompt_file, (str, Path)) else list(prompt_file)
    outs = [out] if isinstance(out, (str, Path)) else list(out)
    if len(files) != len(outs):
        raise ValueError(f"{len(files)} prompt files for {len(outs)} shards")
    docs = [read_prompts(f) for f in files]
    shard_samples = [
        [(p, int(seed)) for rec in doc["concepts"] for p in rec["prompts"] for seed in doc["seeds"]]
        for doc in docs
    ]
    unique = list(dict.fromkeys(s for samples in shard_samples for s in samples))
    check_model_content(settings)
    tree = tree_of(outs[0], settings_hash)
    sampling = sampling_settings(settings, runtime)
    t0 = time.perf_counter()
    store = SampleStore.scan(
        tree if runtime.get("reuse", True) else None,
        Identity(settings_hash, noise_source(sampling), versions()),
    )
    # read before the model runs: a sample whose kept shard has changed since the scan is
    # simply computed with the rest
    reused = store.read(store.find(unique))
    missing = [s for s in unique if s not in reused.row]
    t_scan = time.perf_counter() - t0
    log.info(
        "%d samples: %d reused from earlier shards, %d to extract",
        len(unique),
        len(reused.row),
        len(missing),
    )
    if not unique:
        raise ExtractionError("nothing to extract: no (prompt, seed) samples")
    t_load = t_extract = 0.0
    computed: dict[str, Any] = {}
    header: dict[str, Any] | None = None
    steps = reused.readouts
    if missing:
        from scalex.extract import check_finite

        t1 = time.perf_counter()
        pipe, info = pipe_and_info or load_model(settings, runtime)
        t_load = time.perf_counter() - t1
        extractor = _extractor(pipe, sampling)
        header = run_header(settings, settings_hash, sampling, pipe, info, extractor)
        t2 = time.perf_counter()
        acts = extractor.run_all(
            missing,
            progress=bool(runtime.get("progress", True)),
            desc=Path(outs[0]).stem,
            unit_scale=1.0 / max(1, len(docs[0]["seeds"])),
        )
        t_extract = time.perf_counter() - t2
        check_finite(acts, missing)
        steps = {r: (a.step_indices.tolist(), a.timesteps.tolist()) for r, a in acts.items()}
        computed = {
            r: {
                t: {k: v.astype(np.float16) for k, v in kinds.items()}
                for t, kinds in a.data.items()
            }
            for r, a in acts.items()
        }
    rows = {s: ("computed", i) for i, s in enumerate(missing)}
    rows.update({s: ("reused", i) for s, i in reused.row.items()})
    t3 = time.perf_counter()
    for doc, samples, path in zip(docs, shard_samples, outs, strict=True):
        arrays = _gather(samples, rows, computed, reused.arrays)
        own = header if any(rows[s][0] == "computed" for s in samples) else None
        stored = [reused.header[s] for s in samples if s in reused.header]
        _write_shard(
            path, doc, shard_header(own, stored), steps, arrays, runtime.get("compression")
        )
        if tree is not None:
            keep(path, tree)
    return {
        "scan_s": t_scan,
        "load_s": t_load,
        "extract_s": t_extract,
        "write_s": time.perf_counter() - t3,
        "samples": float(len(unique)),
        "reused": float(len(reused.row)),
        "extracted": float(len(missing)),
    }


def noise_source(sampling: Any) -> str:
    """Where the seeds' generators live (:attr:`HSpaceExtractor.noise_source`)."""
    from scalex.models import noise_source as source
    from scalex.models import resolve_device

    return source(sampling.noise_device, resolve_device(sampling.device))


def versions() -> dict[str, str]:
    """The library versions as a shard header stores them (JSON round trip)."""
    return json.loads(json.dumps(package_versions(MODEL_LIBRARIES), sort_keys=True))


def _extractor(pipe: Any, sampling: Any) -> Any:
    from scalex.extract import HSpaceExtractor

    return HSpaceExtractor(pipe, sampling)


def run_header(
    settings: dict[str, Any],
    settings_hash: str,
    sampling: Any,
    pipe: Any,
    info: Any,
    extractor: Any,
) -> dict[str, Any]:
    """What a shard says about the run that made it (every shard of the run says the same)."""
    scheduler = pipe.scheduler
    return {
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
        "timesteps": extractor.timesteps_of(extractor.kept),
        "step_indices": extractor.kept,
        "readouts": list(sampling.readouts),
        "device": str(extractor.device),
        "compiled": bool(extractor.compiled),
        # the noise of a seed depends on where its generator lives: never pair across sources
        "noise_source": extractor.noise_source,
        "content_prompt": sampling.content_prompt,
        "height": extractor.height,
        "width": extractor.width,
        "guidance_scale": sampling.guidance_scale,
        "classifier_free_guidance": extractor.cfg,
        "branch": sampling.branch,
        "dtype": sampling.dtype,
        "taps": list(sampling.taps),
        "store": list(sampling.store),
        "versions": package_versions(MODEL_LIBRARIES),
    }


def shard_header(
    computed: dict[str, Any] | None, stored: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """A shard's header: this run's (``computed``, when it computed any of the shard's samples)
    or else that of a kept shard its samples were read from (``stored``), with ``device`` and
    ``compiled`` saying what computed this shard's own samples (devices joined by ``,``)."""
    distinct = list({id(h): h for h in stored}.values())
    sources = ([computed] if computed is not None else []) + distinct
    header = dict(sources[0])
    header["device"] = ",".join(sorted({d for h in sources for d in str(h["device"]).split(",")}))
    header["compiled"] = any(bool(h["compiled"]) for h in sources)
    return header


def _gather(samples, rows, computed, reused) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """One shard's arrays, one row per sample in order, from the computed and reused blocks."""
    blocks = {"computed": computed, "reused": reused}
    template = computed or reused
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for readout, taps in template.items():
        for tap, kinds in taps.items():
            for kind, arr in kinds.items():
                dest = np.empty((len(samples), *arr.shape[1:]), dtype=np.float16)
                for i, sample in enumerate(samples):
                    block, row = rows[sample]
                    dest[i] = blocks[block][readout][tap][kind][row]
                out.setdefault(readout, {}).setdefault(tap, {})[kind] = dest
    return out


def _write_shard(path, doc, header, steps, arrays, compression) -> None:
    seeds = [int(s) for s in doc["seeds"]]
    records = doc["concepts"]
    header = {**header, "seeds": seeds, "concepts": [rec["id"] for rec in records]}
    with atomic_h5(path, ACTIVATIONS, header) as f:
        write_readouts(f, steps)
        start = 0
        for rec in records:
            n = len(rec["prompts"]) * len(seeds)
            per_concept = {
                readout: {
                    tap: {
                        kind: arr[start : start + n].reshape(
                            len(rec["prompts"]), len(seeds), *arr.shape[1:]
                        )
                        for kind, arr in kinds.items()
                    }
                    for tap, kinds in taps.items()
                }
                for readout, taps in arrays.items()
            }
            meta = {"set": rec["set"], "derived": rec.get("derived") or {}}
            write_concept_activations(
                f,
                rec["id"],
                meta,
                rec["prompts"],
                rec["template_index"],
                per_concept,
                compression=compression,
                terms=rec.get("terms"),
            )
            start += n


def main(smk: Any) -> None:
    def work() -> None:
        timings = run(
            list(smk.input),
            list(smk.output),
            json.loads(smk.params.settings),
            smk.params.settings_hash,
            runtime={**runtime_options(smk.config), "reuse": may_reuse(smk)},
        )
        log.info(
            "reuse scan %.2f s, model load %.2f s, extraction of %d samples %.2f s, write %.2f s",
            timings["scan_s"],
            timings["load_s"],
            timings["extracted"],
            timings["extract_s"],
            timings["write_s"],
        )

    run_rule(smk, work, memo=False)  # samples are reused instead (scalex.reuse)
