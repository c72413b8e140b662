"""Model families: one adapter module each, found by one detection.

Adding a family is adding its adapter module (a :class:`FamilyAdapter` subclass overriding what
its stock pipeline does its own way), its line in :data:`ADAPTERS` and its name in the schema's
``model.family`` enum; the extractor, the hook and the image conditioning stay as they are.
"""

from __future__ import annotations

from typing import Any

from scalex.errors import ModelError
from scalex.families.base import FamilyAdapter
from scalex.families.flux import FluxAdapter
from scalex.families.pixart import PixArtAdapter
from scalex.families.sd3 import StableDiffusion3Adapter
from scalex.families.sdxl import StableDiffusionXLAdapter

__all__ = [
    "ADAPTERS",
    "DISTILLABLE",
    "FamilyAdapter",
    "adapter_class",
    "adapter_for_folder",
    "architecture",
    "denoiser_of",
    "family",
    "stock_call_kwargs",
]

#: The adapter of each architecture, in detection order; a family not listed (a loader's own,
#: e.g. ``reference``) uses the base UNet adapter.
ADAPTERS: dict[str, type[FamilyAdapter]] = {
    "sd3": StableDiffusion3Adapter,
    "flux": FluxAdapter,
    "pixart": PixArtAdapter,
    "sdxl": StableDiffusionXLAdapter,
    "sd1": FamilyAdapter,
    "sd2": FamilyAdapter,
}
#: Families that take guidance distillation (LCM) on top of their architecture.
DISTILLABLE = ("sd1", "sd2", "sdxl")
#: Architectures recognised by their adapter's ``matches`` (the rest by the UNet's config).
_MATCHED = ("sd3", "flux", "pixart", "sdxl")


def architecture(pipe: Any, loader_family: str | None = None) -> str:
    """The one family detection: a transformer family or SDXL by its pipeline, else the family a
    model loader names (``reference``), else SD 2.x by its linear projections or 1024-wide
    cross-attention, else SD 1.x."""
    for name in _MATCHED:
        if ADAPTERS[name].matches(pipe):
            return name
    if loader_family:
        return loader_family
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise ModelError(
            f"{type(pipe).__name__} has no UNet and is not a supported transformer family "
            f"({', '.join(n for n in _MATCHED if n != 'sdxl')})"
        )
    if unet.config.get("use_linear_projection") or unet.config.get("cross_attention_dim") == 1024:
        return "sd2"
    return "sd1"


def family(pipe: Any, arch: str) -> str:
    """``lcm`` for a guidance-distilled UNet (``time_cond_proj_dim``) or an ``LCMScheduler`` on
    a distillable architecture, else the architecture itself."""
    if arch not in DISTILLABLE:
        return arch
    distilled = pipe.unet.config.get("time_cond_proj_dim") is not None or (
        type(pipe.scheduler).__name__ == "LCMScheduler"
    )
    return "lcm" if distilled else arch


def adapter_class(pipe: Any, arch: str | None = None) -> type[FamilyAdapter]:
    """The adapter of a loaded pipeline's architecture (:func:`architecture`)."""
    return ADAPTERS.get(arch or architecture(pipe), FamilyAdapter)


def adapter_for_folder(model_index: dict[str, Any]) -> type[FamilyAdapter]:
    """The adapter of a model folder from its ``model_index.json`` alone (nothing loaded): by
    the pipeline class, else the UNet adapter (a pipeline with a ``unet``)."""
    pipeline = model_index.get("_class_name", "")
    for adapter in ADAPTERS.values():
        if pipeline in adapter.pipelines:
            return adapter
    return FamilyAdapter


def denoiser_of(pipe: Any) -> Any:
    """A loaded pipeline's denoiser (``pipe.unet`` or ``pipe.transformer``)."""
    return getattr(pipe, adapter_class(pipe).denoiser_attr)


def stock_call_kwargs(pipe: Any, negative_prompt: str | None = None) -> dict[str, Any]:
    """Extra arguments for calling the stock pipeline so that it samples as scalex does
    (PixArt: no resolution binning where the model has no bin table), with a negative prompt
    only when one is given (``None`` is not every pipeline's default)."""
    adapter = adapter_class(pipe)(pipe, denoiser_of(pipe).device, cfg=False)
    kwargs = adapter.stock_call_kwargs()
    if negative_prompt is not None:
        kwargs["negative_prompt"] = negative_prompt
    return kwargs
