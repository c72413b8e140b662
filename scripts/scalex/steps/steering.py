"""Rule steering: images of a prompt steered along a concept direction (positive - negative
concepts) at several strengths, with the stock pipeline and a hook on the H-space tap. Sampling
follows the extraction settings, so the steered sampler is the one the directions came from.
The grid has one column per alpha and one row per seed, titled with the prompt, the direction
and the readout it came from."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scalex.io import write_npz
from scalex.rulekit import run_rule
from scalex.steps.jobs import conditioning_job

if TYPE_CHECKING:  # torch is imported by the work only, not when a job memo is restored
    from scalex.conditioning import ConditioningJob

log = logging.getLogger("scalex")


def _sampling_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    s = settings["sampling"]
    return {
        "num_inference_steps": int(s["steps"]),
        "guidance_scale": float(s["guidance_scale"]),
        "noise_device": s["noise_device"],
        "height": s.get("height"),
        "width": s.get("width"),
    }


def direction_readout(direction_files: Sequence[str | Path]) -> str | None:
    """The readout the direction files belong to (``<tree>/<readout>/directions/<bucket>.h5``),
    or None for files laid out otherwise."""
    parents = {Path(f).parent for f in direction_files}
    if len(parents) != 1:
        return None
    folder = parents.pop()
    return folder.parent.name if folder.name == "directions" and folder.parent.name else None


def run(
    job: ConditioningJob,
    out_grid: str | Path,
    out_npz: str | Path,
    pipe=None,
    readout: str | None = None,
) -> np.ndarray:
    """Images of the spec's prompt steered along positive - negative concepts.

    Alphas are in units of the mean-difference norm (``spec['unit'] == 'mean_diff'``, the
    default) or raw H-space units (``'raw'``). ``readout`` (default: read from the direction
    files' path) names the readout of the direction in the grid's title.
    """
    from scalex.analysis import figures
    from scalex.conditioning import steer, steering_seeds

    spec, settings = job.spec, job.settings
    direction, norm = job.direction()
    unit = spec.get("unit", "mean_diff")
    scale = norm if unit == "mean_diff" else 1.0
    pipe = job.pipeline(pipe)
    seeds = steering_seeds(spec["seeds"])
    alphas = [float(a) for a in spec["alphas"]]
    log.info(
        "steering %r along %s - %s: %d alphas x %d seeds, scale %.4g",
        spec["prompt"],
        spec["positive"],
        spec.get("negative", []),
        len(alphas),
        len(seeds),
        scale,
    )
    images = steer(
        pipe,
        spec["prompt"],
        direction,
        alphas,
        seeds,
        scale=scale,
        steps=spec.get("steps"),
        tap=job.tap,
        batch_size=int(job.runtime.get("batch_size", 64)),
        negative_prompt=settings["sampling"].get("negative_prompt") or None,
        **_sampling_kwargs(settings),
    )
    figures.steering_grid(
        images,
        alphas,
        seeds,
        out_grid,
        prompt=spec["prompt"],
        positive=list(spec["positive"]),
        negative=list(spec.get("negative", [])),
        readout=readout or direction_readout(job.direction_files),
        unit=unit,
        scale=scale if unit == "mean_diff" else None,
    )
    write_npz(
        out_npz,
        images=images.astype(np.float16),
        alphas=np.asarray(alphas),
        seeds=np.asarray(seeds),
        scale=np.float64(scale),
        direction=direction,
        prompt=np.str_(spec["prompt"]),
    )
    return images


def main(smk: Any) -> None:
    spec = json.loads(smk.params.spec)

    def work() -> None:
        run(conditioning_job(smk), smk.output.grid, smk.output.images)

    run_rule(
        smk,
        work,
        scope={"directions": [*spec["positive"], *spec.get("negative", [])]},
    )
