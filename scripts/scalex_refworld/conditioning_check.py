"""Image conditioning measured on the reference model, where the truth is known.

(i) Steering: sample "a photo of a doctor" while pushing H-space along woman - man; the attribute
reader says which images show a woman, so the woman fraction per alpha is measured, not judged
by eye. It should rise with alpha. (ii) Projection: ground-truth renderings of women and men of
every profession, projected on the same direction; the AUC per step says how well a direction
found from prompts alone separates real images.

The directions are computed here from prompts, as the workflow does (seed-paired differences to
the "person" baseline, mean over prompts, seeds and steps), or read from a workflow results tree
(``--directions``, direction files of a run on the reference model).

``python -m scalex_refworld.conditioning_check --model resources/worlds/stereotyped/model
--out results/reference/conditioning``
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("scalex_refworld.conditioning")

TEMPLATES = ("a photo of {}", "a portrait of {}")
ALPHAS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def prompt_directions(
    pipe,
    concepts: dict[str, Sequence[str]],
    baseline: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    guidance_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Step-averaged mean differences (C,) of each concept's prompts to the baseline prompts.

    Same definition as :func:`scalex.directions.concept_direction` (``mean_diff`` averaged over
    the steps), measured with the batched extractor on pooled mid-block activations.
    """
    from scalex.directions import concept_direction, paired_differences
    from scalex.extract import HSpaceExtractor, SamplingSettings

    ext = HSpaceExtractor(
        pipe,
        SamplingSettings(
            steps=steps,
            guidance_scale=guidance_scale,
            device="cpu",
            batch_size=64,
            readouts=("prompt",),
        ),
    )

    def acts(prompts: Sequence[str]) -> np.ndarray:
        samples = [(p, s) for p in prompts for s in seeds]
        a = ext.run(samples, progress=False).data["mid_block"]["pooled"]
        return a.reshape(len(prompts), len(seeds), *a.shape[1:])  # (P, S, T, C)

    base = acts(baseline)
    out = {}
    for cid, prompts in concepts.items():
        d = concept_direction(paired_differences(acts(prompts), base), cid)
        out[cid] = d.mean_diff.mean(axis=0)
    return out


def gender_direction(
    pipe, seeds: Sequence[int], steps: int, guidance_scale: float = 1.0
) -> tuple[np.ndarray, float]:
    """Unit woman - man direction and its natural scale (norm of the mean difference)."""
    from scalex_refworld.world import make_caption

    prompts = {g: [make_caption(t, g) for t in TEMPLATES] for g in ("woman", "man")}
    base = [make_caption(t, "person") for t in TEMPLATES]
    md = prompt_directions(pipe, prompts, base, seeds, steps, guidance_scale)
    v = md["woman"] - md["man"]
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32), norm


def directions_from_results(files: Sequence[str | Path]) -> tuple[np.ndarray, float]:
    """Woman - man from a workflow's direction files (any settings hash)."""
    import h5py
    from scalex.conditioning import combined_direction
    from scalex.io import read_directions

    with h5py.File(files[0], "r") as f:
        settings_hash = str(f.attrs["settings_hash"])
    d = read_directions(files, settings_hash, concepts=["woman", "man"])
    return combined_direction(d, ["woman"], ["man"])


def steering_curve(
    pipe,
    direction: np.ndarray,
    scale: float,
    *,
    prompt: str = "a photo of a doctor",
    target: str = "doctor",
    alphas: Sequence[float] = ALPHAS,
    seeds: Sequence[int] = range(64),
    steps: int = 10,
    guidance_scale: float = 3.0,
    batch_size: int = 64,
) -> tuple[list[dict], np.ndarray]:
    """Woman fraction (and kept-profession fraction) per alpha, read from the steered images."""
    from scalex.conditioning import steer

    from scalex_refworld.reader import read
    from scalex_refworld.world import load_world

    images = steer(
        pipe,
        prompt,
        direction,
        alphas,
        list(seeds),
        scale=scale,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        batch_size=batch_size,
    )
    rows = []
    for alpha, imgs in zip(alphas, images, strict=True):
        readings = read(imgs, load_world())
        rows.append(
            {
                "alpha": float(alpha),
                "n": len(readings),
                "woman_fraction": float(np.mean([r.gender == "woman" for r in readings])),
                "profession_kept": float(np.mean([r.profession == target for r in readings])),
            }
        )
    return rows, images


def world_images(copies: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth renderings of every identity (``copies`` jittered each), and is-woman labels."""
    from scalex_refworld.world import load_world

    world = load_world()
    attrs = world.all_combinations() * copies
    images = world.render_batch(attrs, seed=seed).astype(np.float32) / 255.0
    return images, np.array([a.gender == "woman" for a in attrs])


def projection_auc(
    pipe,
    direction: np.ndarray,
    *,
    steps: int = 10,
    step_indices: Sequence[int] | None = None,
    copies: int = 2,
    prompt: str = "",
    seed: int = 0,
) -> list[dict]:
    """AUC per step of woman-vs-man ground-truth images projected on ``direction``."""
    from scalex.conditioning import auc, projection_scores

    images, labels = world_images(copies)
    indices = list(range(steps)) if step_indices is None else list(step_indices)
    scores, timesteps = projection_scores(
        pipe, images, direction, steps, indices, prompt=prompt, seed=seed, batch_size=64
    )
    return [
        {
            "step_index": i,
            "timestep": timesteps[k],
            "auc": auc(scores[:, k], labels),
            "mean_woman": float(scores[labels, k].mean()),
            "mean_man": float(scores[~labels, k].mean()),
            "n_woman": int(labels.sum()),
            "n_man": int((~labels).sum()),
        }
        for k, i in enumerate(indices)
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure steering and projection on the reference model; write TSVs and a grid."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd
    import torch
    from scalex.io import write_tsv

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", default="resources/worlds/stereotyped/model")
    ap.add_argument("--out", default="results/reference/conditioning")
    ap.add_argument("--directions", nargs="*", help="direction files of a workflow run")
    ap.add_argument("--direction-seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=3.0, help="steering guidance scale")
    ap.add_argument("--seeds", type=int, default=64, help="steering seeds per alpha")
    ap.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    from PIL import Image
    from scalex.conditioning import image_grid
    from scalex.models import load_pipeline

    out = Path(args.out)
    pipe = load_pipeline(args.model, device="cpu")
    t0 = time.perf_counter()
    if args.directions:
        direction, scale = directions_from_results(args.directions)
    else:
        direction, scale = gender_direction(pipe, range(args.direction_seeds), args.steps)
    log.info("woman - man direction: scale %.4g (%.1f s)", scale, time.perf_counter() - t0)
    t1 = time.perf_counter()
    curve, images = steering_curve(
        pipe,
        direction,
        scale,
        alphas=args.alphas,
        seeds=range(args.seeds),
        steps=args.steps,
        guidance_scale=args.guidance,
    )
    log.info("steering: %.1f s", time.perf_counter() - t1)
    t2 = time.perf_counter()
    aucs = projection_auc(pipe, direction, steps=args.steps)
    log.info("projection: %.1f s", time.perf_counter() - t2)
    write_tsv(pd.DataFrame(curve), out / "steering_curve.tsv")
    write_tsv(pd.DataFrame(aucs), out / "projection_auc.tsv")
    Image.fromarray(image_grid(images, max_columns=16)).save(out / "steering_grid.png")
    import pandas as pd

    print(f"# steering 'a photo of a doctor' along woman - man (scale {scale:.4g})")
    print(pd.DataFrame(curve).to_string(index=False))
    print("# projection of ground-truth world images on woman - man")
    print(pd.DataFrame(aucs).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
