"""Rules extract and extract_vocabulary: the H-space activations of every sample of one prompt
file (a bucket of concepts, or a vocabulary chunk) into one HDF5 shard.

All (prompt, seed) samples of the shard run through one batched loop, so a shard pays for model
loading once. Device, batch size, progress and compression come from the config inside the job,
not from rule parameters: they never change a shard, so changing them reruns nothing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from scalex.config import canonical_json, runtime_options
from scalex.io import (
    ACTIVATIONS,
    atomic_h5,
    read_prompts,
    write_concept_activations,
    write_readouts,
)
from scalex.models import check_model_content, load_model
from scalex.provenance import package_versions
from scalex.rulekit import configure_torch, run_rule

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
        readouts=tuple(e.get("readouts", ("prompt",))),
        content_prompt=e.get("content_prompt") or "",
    )


def run(
    prompt_file: str | Path,
    out: str | Path,
    settings: dict[str, Any],
    settings_hash: str,
    runtime: dict[str, Any] | None = None,
    pipe_and_info: tuple[Any, Any] | None = None,
) -> dict[str, float]:
    """Extract the activations of every concept of ``prompt_file`` into one HDF5 shard.

    Returns timings (seconds) for the overhead measurement.
    """
    from scalex.extract import HSpaceExtractor, check_finite, schedule_timesteps

    configure_torch()  # the rule's threads (no-op when not called from a rule)
    runtime = runtime or {}
    doc = read_prompts(prompt_file)
    records, seeds = doc["concepts"], [int(s) for s in doc["seeds"]]
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
        "timesteps": schedule_timesteps(pipe.scheduler, sampling.steps, extractor.kept),
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


def main(smk: Any) -> None:
    def work() -> None:
        timings = run(
            smk.input[0],
            smk.output[0],
            json.loads(smk.params.settings),
            smk.params.settings_hash,
            runtime=runtime_options(smk.config),
        )
        log.info(
            "model load %.2f s, extraction %.2f s (%.1f samples/s), write %.2f s",
            timings["load_s"],
            timings["extract_s"],
            timings["samples"] / max(timings["extract_s"], 1e-9),
            timings["write_s"],
        )

    run_rule(smk, work)
