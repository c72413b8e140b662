"""Rule projection: score labelled images on a concept direction (VAE-encode, noise to a step,
one UNet pass, project the H-space tap) and the AUC per step against the labels."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalex.io import read_labelled_images, write_tsv
from scalex.rulekit import run_rule
from scalex.steps.jobs import conditioning_job

if TYPE_CHECKING:  # torch is imported by the work only, not when a job memo is restored
    from scalex.conditioning import ConditioningJob

log = logging.getLogger("scalex")


def run(
    job: ConditioningJob,
    images_dir: str | Path,
    labels: str | Path,
    out_scores: str | Path,
    out_auc: str | Path,
    pipe=None,
):
    """Score labelled images on positive - negative and the AUC per step."""
    import pandas as pd

    from scalex.conditioning import auc, projection_scores

    spec = job.spec
    direction, _ = job.direction()
    names, images, flags = read_labelled_images(images_dir, labels)
    pipe = job.pipeline(pipe)
    steps = int(job.settings["sampling"]["steps"])
    indices = spec.get("step_indices") or list(range(steps))
    scores, timesteps = projection_scores(
        pipe,
        images,
        direction,
        steps,
        indices,
        prompt=spec.get("prompt", ""),
        seed=int(spec.get("seed", 0)),
        tap=job.tap,
        batch_size=int(job.runtime.get("batch_size", 32)),
        guidance_scale=float(job.settings["sampling"]["guidance_scale"]),
    )
    rows = [
        {
            "image": name,
            "label": "" if flag is None else int(flag),
            "step_index": idx,
            "timestep": t,
            "score": float(scores[i, k]),
        }
        for i, (name, flag) in enumerate(zip(names, flags, strict=True))
        for k, (idx, t) in enumerate(zip(indices, timesteps, strict=True))
    ]
    write_tsv(pd.DataFrame(rows), out_scores)
    known = [i for i, f in enumerate(flags) if f is not None]
    y = [flags[i] for i in known]
    curve = pd.DataFrame(
        {
            "step_index": indices,
            "timestep": timesteps,
            "auc": [auc(scores[known, k], y) for k in range(len(indices))],
            "n_positive": sum(y),
            "n_negative": len(y) - sum(y),
        }
    )
    write_tsv(curve, out_auc)
    log.info("projection AUC per step: %s", dict(zip(indices, curve["auc"].round(3), strict=True)))
    return curve


def main(smk: Any) -> None:
    spec = json.loads(smk.params.spec)

    def work() -> None:
        run(
            conditioning_job(smk),
            smk.params.images_dir,
            smk.input.labels,
            smk.output.scores,
            smk.output.auc,
        )

    run_rule(
        smk,
        work,
        scope={"directions": [*spec["positive"], *spec.get("negative", [])]},
    )
