"""Image conditioning: check concept directions on images, by steering and by projection.

A direction read from prompts alone is only credible if it acts on images. Two checks, both
generic for any family scalex supports (the family adapter supplies what differs):

- **steering**: sample with the stock pipeline while a forward hook adds ``alpha * scale * d`` to
  the H-space tap (a UNet's ``mid_block``, a transformer's middle block's image tokens) at chosen
  denoising steps; the images should change along the concept as alpha grows. ``alpha = 0`` is
  the stock pipeline's image, bit for bit.
- **projection**: encode real images with the VAE, noise them to a step's timestep, run the
  denoiser once and project the tap's output on the directions; images that show the concept
  should score higher (AUC against labels).

The rules around them (reading directions, writing grids and tables) are
:mod:`scalex.steps.steering` and :mod:`scalex.steps.projection`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scalex.errors import ExtractionError
from scalex.hooks import Trace
from scalex.models import seed_generators
from scalex.vectors import combine, unit

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


def steering_edit(
    direction: np.ndarray | torch.Tensor, coefficient: float, steps: Sequence[int] | None = None
):
    """An ``edit_output`` for :class:`scalex.hooks.Trace` adding ``coefficient * direction`` to
    the tap's output at the chosen steps (its call count; all when None). ``coefficient`` is
    read at every call, so one trace serves every alpha: set ``edit.coefficient``."""
    d = torch.as_tensor(np.asarray(direction, dtype=np.float32))
    wanted = None if steps is None else {int(s) for s in steps}

    def edit(_name: str, hidden: torch.Tensor, call: int) -> torch.Tensor | None:
        if edit.coefficient == 0.0 or (wanted is not None and call not in wanted):
            return None  # untouched output: alpha = 0 is the stock pipeline exactly
        return hidden + edit.coefficient * _as_feature_map(d, hidden)

    edit.coefficient = float(coefficient)
    return edit


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
    from scalex.families import adapter_class

    d = np.asarray(direction, dtype=np.float32).reshape(-1)
    rows = []
    edit = steering_edit(d, 0.0, steps)
    family = adapter_class(pipe)(
        pipe, _device(pipe), guidance_scale=guidance_scale, cfg=False, height=height, width=width
    )
    with Trace(
        family.denoiser,
        [family.module_name(tap)],
        edit_output=edit,
        retain_output=False,
        what="steering tap",
        stream=family.stream,
    ) as trace:
        for alpha in alphas:
            edit.coefficient = float(alpha) * float(scale)
            parts = []
            for start in range(0, len(seeds), max(1, batch_size)):
                chunk = list(seeds[start : start + max(1, batch_size)])
                trace.reset()
                with torch.inference_mode():
                    out = pipe(
                        prompt,
                        num_images_per_prompt=len(chunk),
                        num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale,
                        height=height,
                        width=width,
                        generator=seed_generators(chunk, noise_device, family.denoiser.device),
                        output_type="np",
                        **family.stock_call_kwargs(),
                        # None is not every pipeline's default (PixArt's is "")
                        **({} if negative_prompt is None else {"negative_prompt": negative_prompt}),
                    )
                parts.append(np.asarray(out.images, dtype=np.float32))
            rows.append(np.concatenate(parts))
    return np.stack(rows)


def _device(pipe: Any) -> torch.device:
    """The device the pipeline's denoiser runs on."""
    from scalex.families import denoiser_of

    return denoiser_of(pipe).device


# -- projection ----------------------------------------------------------------------------------


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

    Each image is VAE-encoded, noised to the timestep of each chosen step index of the family's
    ``num_inference_steps`` schedule (``scheduler.add_noise``; interpolation for flow matching)
    and passed once through the denoiser with the prompt's conditional text conditioning (the
    family's added conditions included); the tap is pooled over h x w, or flattened when the
    directions are full maps. ``guidance_scale`` only matters for guidance embeddings (LCM
    UNets, Flux.1-dev). A batch of N images scores as N batches of one.
    """
    from scalex.families import adapter_class

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
    unit_directions = torch.as_tensor(
        unit(np.atleast_2d(directions), what="a projection direction")
    )  # (Q, D)
    # the family's conditioning alone (no extractor: nothing is denoised here)
    family = adapter_class(pipe)(
        pipe,
        _device(pipe),
        guidance_scale=guidance_scale,
        cfg=False,
        height=images.shape[1],
        width=images.shape[2],
    )
    denoiser, module = family.denoiser, family.module_name(tap)
    schedule = copy.deepcopy(pipe.scheduler)
    all_timesteps = family.set_timesteps(schedule, num_inference_steps)
    timesteps = [all_timesteps[int(i)] for i in step_indices]
    scores = np.zeros((len(images), len(timesteps), len(unit_directions)), dtype=np.float32)
    for start in range(0, len(images), max(1, batch_size)):
        batch = images[start : start + max(1, batch_size)]
        n = len(batch)
        latents = family.pack(encode_images(pipe, batch).to(denoiser.dtype))
        noise = image_noise(latents.shape[1:], seed, denoiser.dtype)
        noise = noise.to(denoiser.device).expand_as(latents)
        kwargs = family.conditioning([prompt] * n)
        with (
            Trace(denoiser, [module], what="projection tap", stream=family.stream) as trace,
            torch.inference_mode(),
        ):
            for k, t in enumerate(timesteps):
                # A fresh scheduler per step: Euler-type schedulers cache a step index.
                sched = copy.deepcopy(schedule)
                t_batch = t.reshape(1).expand(n).to(denoiser.device)
                noisy = family.noised(latents, noise, t_batch, sched)
                model_in = family.model_input(noisy, t, sched, cfg=False)
                trace.run_until_traced(family.call(model_in, t, kwargs))
                feats = _tap_features(trace.outputs[module], unit_directions.shape[1])
                scores[start : start + n, k] = (feats.cpu() @ unit_directions.T).numpy()
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


# -- directions and grids -----------------------------------------------------------------------
def combined_direction(
    directions: Mapping[str, Any], positive: Sequence[str], negative: Sequence[str] = ()
) -> tuple[np.ndarray, float]:
    """Unit direction and natural scale of ``sum(positive) - sum(negative)`` concepts.

    Built from the step-averaged ``mean_diff`` (not the unit directions) so that the returned
    norm is the H-space distance between the two sides' prompts: steering by alpha = 1 moves
    H-space as far as going from the negative prompts to the positive ones.
    ``directions`` is what :func:`scalex.io.read_directions` returns.
    """
    mean = np.asarray(directions["mean_diff"], dtype=np.float64).mean(axis=1)  # (N, D)
    return combine(
        dict(zip(directions["ids"], mean, strict=True)), positive, negative, what="steering"
    )


@dataclass(frozen=True)
class ConditioningJob:
    """What a steering or projection run needs besides its own files: the run's direction
    files, its hashed settings (sampling follows the extraction's, so the sampler is the one the
    directions came from), the settings hash, the named spec (``positive``, ``negative``, ...),
    the tap and the runtime options (device, batch size)."""

    direction_files: Sequence[str]
    settings: Mapping[str, Any]
    settings_hash: str
    spec: Mapping[str, Any]
    tap: str = "mid_block"
    runtime: Mapping[str, Any] = field(default_factory=dict)

    def direction(self) -> tuple[np.ndarray, float]:
        """:func:`combined_direction` of the spec, read from the run's direction files."""
        from scalex.io import read_directions

        positive, negative = list(self.spec["positive"]), list(self.spec.get("negative", []))
        d = read_directions(self.direction_files, self.settings_hash, concepts=positive + negative)
        return combined_direction(d, positive, negative)

    def pipeline(self, pipe: Any = None) -> Any:
        """``pipe``, or the configured model loaded on the runtime device."""
        if pipe is not None:
            return pipe
        from scalex.models import load_model

        return load_model(dict(self.settings), dict(self.runtime))[0]


def projection_scores(
    pipe, images: np.ndarray, direction: np.ndarray, steps: int, indices: Sequence[int], **kwargs
) -> tuple[np.ndarray, list[int]]:
    """Scores (N, T) of images on one direction at step ``indices`` of a ``steps``-step
    schedule (:func:`project_images`), and the timesteps of those steps."""
    from scalex.families import adapter_class

    scores = project_images(
        pipe, images, direction[None], step_indices=indices, num_inference_steps=steps, **kwargs
    )[:, :, 0]
    family = adapter_class(pipe)(
        pipe, _device(pipe), cfg=False, height=images.shape[1], width=images.shape[2]
    )
    return scores, family.timesteps_of(steps, indices)


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


def render_samples(
    pipe: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    sampling: Mapping[str, Any],
    batch_size: int = 64,
) -> np.ndarray:
    """Images ``(N, H, W, 3)`` in [0, 1]: the stock pipeline called for each (prompt, seed) with
    ``generator=torch.Generator(noise_device).manual_seed(seed)``, batched with a list of
    generators (which gives each sample the noise it gets alone)."""
    from scalex.families import denoiser_of, stock_call_kwargs
    from scalex.models import seed_generators

    noise_device = sampling.get("noise_device", "cpu")
    family_kwargs = stock_call_kwargs(pipe, sampling.get("negative_prompt") or None)
    vae = getattr(pipe, "vae", None)
    if hasattr(vae, "enable_slicing"):  # decode one image at a time: a batch's decode would
        vae.enable_slicing()  # need several times the denoiser's memory at 512 px and above
    out = []
    for start in range(0, len(prompts), max(1, batch_size)):
        chunk = slice(start, start + max(1, batch_size))
        gens = seed_generators(seeds[chunk], noise_device, denoiser_of(pipe).device)
        with torch.inference_mode():
            res = pipe(
                list(prompts[chunk]),
                num_inference_steps=int(sampling["steps"]),
                guidance_scale=float(sampling["guidance_scale"]),
                height=sampling.get("height"),
                width=sampling.get("width"),
                eta=float(sampling.get("eta", 0.0)),
                generator=gens,
                output_type="np",
                **family_kwargs,
            )
        out.append(np.asarray(res.images, dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, 1, 1, 3), np.float32)
