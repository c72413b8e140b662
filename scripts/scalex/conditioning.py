"""Image conditioning: check concept directions on images, by steering and by projection.

A direction read from prompts alone is only credible if it acts on images. Two checks, both
generic for any diffusers SD-family pipeline:

- **steering**: sample with the stock pipeline while a forward hook adds ``alpha * scale * d`` to
  the H-space tap (``unet.mid_block``) at chosen denoising steps; the images should change along
  the concept as alpha grows. ``alpha = 0`` is the stock pipeline's image, bit for bit.
- **projection**: encode real images with the VAE, noise them to a step's timestep, run the UNet
  once and project the tap's output on the directions; images that show the concept should score
  higher (AUC against labels).

The workflow side (directions from the results tree, the rules' outputs) is at the end.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalex.concepts import check_conditioning_config  # noqa: F401  (re-exported)
from scalex.errors import ConfigError, ExtractionError
from scalex.store import durable_replace

log = logging.getLogger("scalex")


# -- steering ------------------------------------------------------------------------------------
def _as_feature_map(direction: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A (C,) pooled or (C*h*w,) full direction as a tensor that broadcasts onto ``out``."""
    c, h, w = out.shape[1:]
    d = direction.to(device=out.device, dtype=out.dtype).reshape(-1)
    if d.numel() == c:
        return d.view(1, c, 1, 1)
    if d.numel() == c * h * w:
        return d.view(1, c, h, w)
    raise ExtractionError(
        f"direction has {d.numel()} values but the tap's output is {c}x{h}x{w}: give {c} "
        f"(pooled) or {c * h * w} (full) values"
    )


class SteeringHook(contextlib.AbstractContextManager):
    """Forward hook adding ``coefficient * direction`` to a UNet block's output at chosen steps.

    The step is the number of UNet calls seen so far (one call per denoising step in the stock
    pipelines, the classifier-free-guidance halves batched together, so both halves get the push).
    ``reset()`` before each pipeline call.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        direction: np.ndarray | torch.Tensor,
        coefficient: float,
        steps: Sequence[int] | None = None,
        tap: str = "mid_block",
    ):
        try:
            module = unet.get_submodule(tap)
        except AttributeError as err:
            raise ExtractionError(f"steering tap: the UNet has no submodule {tap!r}") from err
        self.direction = torch.as_tensor(np.asarray(direction, dtype=np.float32))
        self.coefficient = float(coefficient)
        self.steps = None if steps is None else {int(s) for s in steps}
        self.calls = 0
        self._handle = module.register_forward_hook(self._hook)

    def reset(self) -> None:
        self.calls = 0

    def _hook(self, _module, _inputs, output):
        step = self.calls
        self.calls += 1
        if self.coefficient == 0.0 or (self.steps is not None and step not in self.steps):
            return None  # untouched output: alpha = 0 is the stock pipeline exactly
        hidden = output[0] if isinstance(output, tuple) else output
        steered = hidden + self.coefficient * _as_feature_map(self.direction, hidden)
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def _generators(seeds: Sequence[int], noise_device: str, device: torch.device):
    where = "cpu" if noise_device == "cpu" else device
    return [torch.Generator(where).manual_seed(int(s)) for s in seeds]


def steer(
    pipe,
    prompt: str,
    direction: np.ndarray,
    alphas: Sequence[float],
    seeds: Sequence[int],
    *,
    scale: float = 1.0,
    steps: Sequence[int] | None = None,
    tap: str = "mid_block",
    num_inference_steps: int = 10,
    guidance_scale: float = 1.0,
    noise_device: str = "cpu",
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 64,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """Images (A, S, H, W, 3) in [0, 1] of ``prompt`` steered by ``alpha * scale * direction``.

    Each (alpha, seed) image is the stock pipeline call with ``generator`` seeded by ``seed``
    (seeds batched with a list of generators, ``batch_size`` at a time), so alpha = 0 gives the
    unsteered stock image. ``steps`` are the denoising step indices that get the push (all when
    None). ``scale`` expresses alpha in a natural unit, e.g. the norm of the concept's mean
    H-space difference, so that alpha = 1 moves H-space as far as the concept's prompts do.
    """
    if not seeds:
        raise ValueError("steer: no seeds")
    if steps is not None and any(not 0 <= s < num_inference_steps for s in steps):
        raise ValueError(f"steer: steps {list(steps)} must lie in 0..{num_inference_steps - 1}")
    d = np.asarray(direction, dtype=np.float32).reshape(-1)
    rows = []
    with SteeringHook(pipe.unet, d, 0.0, steps, tap) as hook:
        for alpha in alphas:
            hook.coefficient = float(alpha) * float(scale)
            parts = []
            for start in range(0, len(seeds), max(1, batch_size)):
                chunk = list(seeds[start : start + max(1, batch_size)])
                hook.reset()
                with torch.inference_mode():
                    out = pipe(
                        prompt,
                        negative_prompt=negative_prompt,
                        num_images_per_prompt=len(chunk),
                        num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale,
                        height=height,
                        width=width,
                        generator=_generators(chunk, noise_device, pipe.unet.device),
                        output_type="np",
                    )
                parts.append(np.asarray(out.images, dtype=np.float32))
            rows.append(np.concatenate(parts))
    return np.stack(rows)


# -- projection ----------------------------------------------------------------------------------
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def encode_images(pipe, images: np.ndarray) -> torch.Tensor:
    """VAE latents of images (N, H, W, 3) in [0, 1]: ``latent_dist.mean * scaling_factor``.

    The mean, not a sample: the latent of an image should not depend on a random draw.
    """
    vae = pipe.vae
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    x = (x * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    with torch.inference_mode():
        mean = vae.encode(x).latent_dist.mean
    shift = vae.config.get("shift_factor")
    if shift is not None:
        mean = mean - shift
    return mean * vae.config.scaling_factor


def image_noise(shape: Sequence[int], seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Noise of one image from a seeded CPU generator (device-independent, reproducible).

    Every image gets the same draw (seed-paired, as the directions are), so score differences
    between images come from their content, not from their noise.
    """
    gen = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, *shape), generator=gen, dtype=torch.float32).to(dtype)


def _unit_rows(directions: np.ndarray) -> np.ndarray:
    d = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("project_images: a direction has zero length")
    return (d / norms).astype(np.float32)


def _tap_features(out: torch.Tensor, dim: int) -> torch.Tensor:
    """Pooled (N, C) or flattened full (N, C*h*w) features, whichever matches ``dim``."""
    c, h, w = out.shape[1:]
    if dim == c:
        return out.float().mean(dim=(2, 3))
    if dim == c * h * w:
        return out.float().reshape(len(out), -1)
    raise ExtractionError(
        f"directions have {dim} values but the tap's output is {c}x{h}x{w}: "
        f"need {c} (pooled) or {c * h * w} (full)"
    )


def project_images(
    pipe,
    images: np.ndarray,
    directions: np.ndarray,
    *,
    step_indices: Sequence[int],
    num_inference_steps: int,
    prompt: str = "",
    seed: int = 0,
    tap: str = "mid_block",
    batch_size: int = 32,
    guidance_scale: float = 1.0,
) -> np.ndarray:
    """Scores (N, T, Q): dot products of each image's H-space at each step with unit directions.

    Each image is VAE-encoded, noised to the timestep of each chosen step index of the
    scheduler's ``num_inference_steps`` schedule (``scheduler.add_noise``) and passed once
    through the UNet with the prompt's conditional embedding (SDXL's added conditions included);
    the tap is pooled over h x w, or flattened when the directions are full maps.
    ``guidance_scale`` only matters for guidance-embedding (LCM) UNets. A batch of N images
    scores as N batches of one.
    """
    from scalex.extract import HSpaceExtractor, SamplingSettings, TraceModules

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"project_images: images must be (N, H, W, 3), got {images.shape}")
    if not len(step_indices):
        raise ValueError("project_images: no step_indices")
    if any(not 0 <= s < num_inference_steps for s in step_indices):
        raise ValueError(
            f"project_images: step_indices {list(step_indices)} must lie in "
            f"0..{num_inference_steps - 1}"
        )
    unit = torch.as_tensor(_unit_rows(directions))  # (Q, D)
    unet = pipe.unet
    guidance_embedding = unet.config.get("time_cond_proj_dim") is not None
    settings = SamplingSettings(
        steps=num_inference_steps,
        guidance_scale=float(guidance_scale) if guidance_embedding else 1.0,  # cond branch only
        height=images.shape[1],
        width=images.shape[2],
        dtype=_DTYPE_NAMES.get(unet.dtype, "float32"),
        device=str(unet.device),
    )
    extractor = HSpaceExtractor(pipe, settings)
    schedule = copy.deepcopy(pipe.scheduler)
    schedule.set_timesteps(num_inference_steps, device=unet.device)
    timesteps = [schedule.timesteps[int(i)] for i in step_indices]
    scores = np.zeros((len(images), len(timesteps), len(unit)), dtype=np.float32)
    for start in range(0, len(images), max(1, batch_size)):
        batch = images[start : start + max(1, batch_size)]
        n = len(batch)
        latents = encode_images(pipe, batch).to(unet.dtype)
        noise = image_noise(latents.shape[1:], seed, unet.dtype).to(unet.device).expand_as(latents)
        embeds, added = extractor._conditioning([prompt] * n)
        cond = None
        if guidance_embedding:
            w = torch.tensor(settings.guidance_scale - 1.0).repeat(n)
            cond = pipe.get_guidance_scale_embedding(
                w, embedding_dim=unet.config.time_cond_proj_dim
            ).to(device=unet.device, dtype=unet.dtype)
        with TraceModules(unet, [tap]) as trace, torch.inference_mode():
            for k, t in enumerate(timesteps):
                # A fresh scheduler per step: Euler-type schedulers cache a step index.
                sched = copy.deepcopy(schedule)
                t_batch = t.reshape(1).expand(n).to(unet.device)
                noisy = sched.add_noise(latents, noise, t_batch)
                model_in = sched.scale_model_input(noisy, t)
                unet(
                    model_in,
                    t,
                    encoder_hidden_states=embeds,
                    timestep_cond=cond,
                    added_cond_kwargs=added,
                    return_dict=False,
                )
                feats = _tap_features(trace.outputs[tap], unit.shape[1])
                scores[start : start + n, k] = (feats.cpu() @ unit.T).numpy()
    return scores


def auc(scores: Sequence[float], labels: Sequence[Any]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half.

    The Mann-Whitney statistic divided by n_pos * n_neg; ``labels`` are truthy for positives.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray([bool(v) for v in labels])
    s = np.asarray(scores, dtype=np.float64)
    if len(y) != len(s):
        raise ValueError(f"auc: {len(s)} scores but {len(y)} labels")
    if y.all() or not y.any():
        raise ValueError("auc: needs at least one positive and one negative label")
    return float(roc_auc_score(y, s))


# -- workflow side -------------------------------------------------------------------------------
def combined_direction(
    directions: Mapping[str, Any], positive: Sequence[str], negative: Sequence[str] = ()
) -> tuple[np.ndarray, float]:
    """Unit direction and natural scale of ``sum(positive) - sum(negative)`` concepts.

    Built from the step-averaged ``mean_diff`` (not the unit directions) so that the returned
    norm is the H-space distance between the two sides' prompts: steering by alpha = 1 moves
    H-space as far as going from the negative prompts to the positive ones.
    ``directions`` is what :func:`scalex.jobs.read_directions` returns.
    """
    index = {cid: i for i, cid in enumerate(directions["ids"])}
    missing = sorted(set(positive) - set(index) | set(negative) - set(index))
    if missing:
        raise ConfigError(f"no directions for concepts {missing}")
    mean = np.asarray(directions["mean_diff"], dtype=np.float64).mean(axis=1)  # (N, D)
    v = sum((mean[index[c]] for c in positive), np.zeros(mean.shape[1])) - sum(
        (mean[index[c]] for c in negative), np.zeros(mean.shape[1])
    )
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise ConfigError(f"direction {list(positive)} - {list(negative)} has zero length")
    return (v / norm).astype(np.float32), norm


def steering_seeds(spec: int | Sequence[int]) -> list[int]:
    """``N`` means seeds 0..N-1 (the stock pipeline's ``manual_seed``); a list is taken as is."""
    return list(range(int(spec))) if isinstance(spec, int) else [int(s) for s in spec]


def image_grid(images: np.ndarray, max_columns: int = 16, min_size: int = 64) -> np.ndarray:
    """(A, S, H, W, 3) in [0, 1] -> one uint8 image, rows alpha, columns seeds (1 px gaps).

    Small images are enlarged by pixel repetition so that a 32 px model stays readable.
    """
    a, s, h, w, _ = images.shape
    s = min(s, max_columns)
    zoom = max(1, -(-min_size // max(h, w)))
    tiles = np.repeat(np.repeat(images[:, :s], zoom, axis=2), zoom, axis=3)
    th, tw = h * zoom, w * zoom
    grid = np.ones((a * (th + 1) - 1, s * (tw + 1) - 1, 3), dtype=np.float32)
    for i in range(a):
        for j in range(s):
            grid[i * (th + 1) : i * (th + 1) + th, j * (tw + 1) : j * (tw + 1) + tw] = tiles[i, j]
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


def _sampling_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    s = settings["sampling"]
    return {
        "num_inference_steps": int(s["steps"]),
        "guidance_scale": float(s["guidance_scale"]),
        "noise_device": s["noise_device"],
        "height": s.get("height"),
        "width": s.get("width"),
    }


def run_steering(
    direction_files: Sequence[str | Path],
    out_grid: str | Path,
    out_npz: str | Path,
    settings: dict[str, Any],
    settings_hash: str,
    spec: Mapping[str, Any],
    tap: str = "mid_block",
    runtime: dict[str, Any] | None = None,
    pipe=None,
) -> np.ndarray:
    """Rule steering: images of the spec's prompt steered along positive - negative concepts.

    Alphas are in units of the mean-difference norm (``spec['unit'] == 'mean_diff'``, the
    default) or raw H-space units (``'raw'``). Sampling follows the extraction settings, so the
    steered sampler is the one the directions were measured with.
    """
    from PIL import Image

    from scalex.jobs import load_model, read_directions

    runtime = runtime or {}
    wanted = [*spec["positive"], *spec.get("negative", [])]
    d = read_directions(direction_files, settings_hash, concepts=wanted)
    direction, norm = combined_direction(d, spec["positive"], spec.get("negative", []))
    scale = norm if spec.get("unit", "mean_diff") == "mean_diff" else 1.0
    if pipe is None:
        pipe, _ = load_model(settings, runtime)
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
        tap=tap,
        batch_size=int(runtime.get("batch_size", 64)),
        negative_prompt=settings["sampling"].get("negative_prompt") or None,
        **_sampling_kwargs(settings),
    )
    Path(out_grid).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images)).save(out_grid)
    tmp = Path(out_npz).with_name(f".{Path(out_npz).name}.tmp.npz")
    np.savez_compressed(
        tmp,
        images=images.astype(np.float16),
        alphas=np.asarray(alphas),
        seeds=np.asarray(seeds),
        scale=np.float64(scale),
        direction=direction,
        prompt=np.str_(spec["prompt"]),
    )
    durable_replace(tmp, out_npz)
    return images


def read_labelled_images(
    folder: str | Path, labels: str | Path
) -> tuple[list[str], np.ndarray, list]:
    """PNG images of a folder (sorted by name) and their labels from a TSV ``image, label``.

    Labels are 1/0 (or true/false); an image missing from the TSV gets no label (None) and is
    scored but left out of the AUC. A TSV row naming no existing image is an error.
    """
    import pandas as pd
    from PIL import Image

    folder = Path(folder)
    names = sorted(p.name for p in folder.glob("*.png"))
    if not names:
        raise ConfigError(f"analysis.projection: no PNG images in {folder}")
    table = pd.read_csv(labels, sep="\t", dtype=str)
    if list(table.columns[:2]) != ["image", "label"]:
        raise ConfigError(f"{labels}: expected columns image, label")
    unknown = sorted(set(table["image"]) - set(names))
    if unknown:
        raise ConfigError(f"{labels}: images not in {folder}: {unknown[:5]}")
    truth = {"1": True, "true": True, "0": False, "false": False}
    bad = sorted({v for v in table["label"].str.lower() if v not in truth})
    if bad:
        raise ConfigError(f"{labels}: labels must be 1/0 or true/false, not {bad}")
    by_name = dict(zip(table["image"], (truth[v.lower()] for v in table["label"]), strict=True))
    arrays = [
        np.asarray(Image.open(folder / n).convert("RGB"), dtype=np.float32) / 255 for n in names
    ]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ConfigError(f"analysis.projection: images in {folder} differ in size: {shapes}")
    return names, np.stack(arrays), [by_name.get(n) for n in names]


def run_projection(
    direction_files: Sequence[str | Path],
    images_dir: str | Path,
    labels: str | Path,
    out_scores: str | Path,
    out_auc: str | Path,
    settings: dict[str, Any],
    settings_hash: str,
    spec: Mapping[str, Any],
    tap: str = "mid_block",
    runtime: dict[str, Any] | None = None,
    pipe=None,
):
    """Rule projection: score labelled images on positive - negative and the AUC per step."""
    import pandas as pd

    from scalex.analyze import write_tsv
    from scalex.jobs import load_model, read_directions

    runtime = runtime or {}
    wanted = [*spec["positive"], *spec.get("negative", [])]
    d = read_directions(direction_files, settings_hash, concepts=wanted)
    direction, _ = combined_direction(d, spec["positive"], spec.get("negative", []))
    names, images, flags = read_labelled_images(images_dir, labels)
    if pipe is None:
        pipe, _ = load_model(settings, runtime)
    steps = int(settings["sampling"]["steps"])
    indices = spec.get("step_indices") or list(range(steps))
    scores = project_images(
        pipe,
        images,
        direction[None],
        step_indices=indices,
        num_inference_steps=steps,
        prompt=spec.get("prompt", ""),
        seed=int(spec.get("seed", 0)),
        tap=tap,
        batch_size=int(runtime.get("batch_size", 32)),
        guidance_scale=float(settings["sampling"]["guidance_scale"]),
    )[:, :, 0]
    sched = copy.deepcopy(pipe.scheduler)
    sched.set_timesteps(steps)
    timesteps = [int(sched.timesteps[i]) for i in indices]
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
