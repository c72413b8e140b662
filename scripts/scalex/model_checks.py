"""Checks of a local model folder's config files before the DAG runs, one per family.

Torch-free on purpose: the workflow plans its DAG (and runs the rules that need no model)
without importing torch, diffusers or transformers. Each family adapter points to its check here
(``FamilyAdapter.check_files``); :data:`CHECKS` finds it from ``model_index.json`` alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scalex.errors import ConfigError

#: the tap that names a transformer's middle block, as it names a UNet's bottleneck
MIDDLE = "mid_block"
#: a transformer's block stacks, in forward order, with the config key of their length
BLOCK_STACKS = (
    ("transformer_blocks", "num_layers"),
    ("single_transformer_blocks", "num_single_layers"),
)


#: the families whose denoiser is a transformer (``model.family``)
TRANSFORMER_FAMILIES = ("sd3", "flux", "pixart")
#: the denoisers on which the validated readout was validated (docs/validation.md)
VALIDATED_DENOISERS = ("unet",)


def denoiser_kind(model: dict[str, Any], folder: Path | None) -> str:
    """``unet``, ``transformer`` or ``unknown``: from ``model.family`` when it names one, else
    from the pipeline's ``model_index.json`` (a local folder's; for a hub id the local Hugging
    Face cache's, else that one small file downloaded unless ``HF_HUB_OFFLINE`` is set), without
    loading the model. ``unknown`` (nothing to read) counts as not validated."""
    family = model.get("family", "auto")
    if family != "auto":
        return "transformer" if family in TRANSFORMER_FAMILIES else "unet"
    index_file = folder / "model_index.json" if folder is not None else hub_index(model)
    if index_file is None or not index_file.is_file():
        return "unknown"
    index = json.loads(index_file.read_text())
    if "transformer" in index:
        return "transformer"
    return "unet" if "unet" in index else "unknown"


def hub_index(model: dict[str, Any]) -> Path | None:
    """A hub model's ``model_index.json``: the cached copy, or downloaded when online."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from scalex.config import hub_offline

    revision = model.get("revision")
    cached = try_to_load_from_cache(model["id"], "model_index.json", revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if hub_offline():
        return None
    try:
        return Path(hf_hub_download(model["id"], "model_index.json", revision=revision))
    except Exception:  # no network, no such repo: the model loader reports it in its own job
        return None


def block_names(config: dict[str, Any]) -> list[str]:
    """Every block of a transformer's stacks in forward order, from its config."""
    names = []
    for stack, key in BLOCK_STACKS:
        names += [f"{stack}.{i}" for i in range(int(config.get(key) or 0))]
    return names


def check_unet(cfg: dict[str, Any], configs: dict[str, Any]) -> None:
    """Check taps, image size and branch against a local UNet model's config files."""
    unet, vae = configs.get("unet/config.json"), configs.get("vae/config.json")
    if unet is None:
        return
    n_down = len(unet.get("down_block_types", []))
    n_up = len(unet.get("up_block_types", []))
    for tap in cfg["extraction"]["taps"]:
        head, _, rest = tap.partition(".")
        index = rest.split(".")[0]
        known = {
            "mid_block",
            "conv_in",
            "conv_out",
            "time_embedding",
            "down_blocks",
            "up_blocks",
        }
        bad = head not in known or (
            head in {"down_blocks", "up_blocks"}
            and (not index.isdigit() or int(index) >= (n_down if head == "down_blocks" else n_up))
        )
        if bad:
            raise ConfigError(
                f"extraction.taps: the UNet has no block {tap!r} (it has mid_block, "
                f"down_blocks.0-{n_down - 1}, up_blocks.0-{n_up - 1})"
            )
    scale = vae_scale_of(vae)
    multiple = scale * 2 ** max(0, len(unet.get("block_out_channels", [])) - 1)
    check_size(cfg, multiple, f"VAE scale {scale}, {len(unet['block_out_channels'])} UNet levels")
    if cfg["sampling"]["branch"] == "uncond" and unet.get("time_cond_proj_dim") is not None:
        raise ConfigError(
            "sampling.branch 'uncond': this model has guidance distilled into an embedding "
            "(no unconditional branch)"
        )


def check_transformer(cfg: dict[str, Any], configs: dict[str, Any], flux: bool = False) -> None:
    """Taps and image size against a local transformer model's config files (Flux: packed 2x2,
    no unconditional branch, no negative prompt)."""
    config = configs.get("transformer/config.json")
    if config is None:
        return
    names = block_names(config)
    for tap in cfg["extraction"]["taps"]:
        if tap != MIDDLE and tap not in names:
            stacks = ", ".join(
                f"{stack}.0-{int(config[key]) - 1}"
                for stack, key in BLOCK_STACKS
                if config.get(key)
            )
            raise ConfigError(
                f"extraction.taps: the transformer has no block {tap!r} (it has {MIDDLE}, "
                f"the middle block, and {stacks})"
            )
    scale = vae_scale_of(configs.get("vae/config.json"))
    patch = 2 if flux else int(config.get("patch_size") or 2)
    check_size(cfg, scale * patch, f"VAE scale {scale}, patch size {patch}")
    if cfg["sampling"]["branch"] == "uncond" and flux:
        raise ConfigError(
            "sampling.branch 'uncond': this model family samples without an unconditional branch"
        )
    if flux and cfg["sampling"].get("negative_prompt"):
        raise ConfigError(
            "sampling.negative_prompt: Flux samples without an unconditional branch here "
            "(its stock pipeline's default); leave it empty"
        )


def check_flux(cfg: dict[str, Any], configs: dict[str, Any]) -> None:
    check_transformer(cfg, configs, flux=True)


#: each pipeline class's check (any other: a UNet pipeline's)
CHECKS = {
    "StableDiffusion3Pipeline": check_transformer,
    "FluxPipeline": check_flux,
    "PixArtAlphaPipeline": check_transformer,
    "PixArtSigmaPipeline": check_transformer,
}


def check_files(cfg: dict[str, Any], configs: dict[str, Any]) -> None:
    """The check of the folder's family, by its ``model_index.json`` pipeline class."""
    CHECKS.get(configs["model_index.json"].get("_class_name", ""), check_unet)(cfg, configs)


def vae_scale_of(vae_config: dict[str, Any] | None) -> int:
    """The VAE's downsampling factor from its config (8 when there is none to read)."""
    if not vae_config:
        return 8
    return 2 ** (len(vae_config.get("block_out_channels", [0] * 4)) - 1)


def check_size(cfg: dict[str, Any], multiple: int, why: str) -> None:
    """``sampling.height``/``width``, when set, must be multiples of ``multiple``."""
    for key in ("height", "width"):
        value = cfg["sampling"].get(key)
        if value is not None and value % multiple:
            raise ConfigError(
                f"sampling.{key} {value} must be a multiple of {multiple} for this model ({why})"
            )
