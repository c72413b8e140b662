"""What differs between model families at the UNet call, one small adapter per family.

In the manner of diffusers' ``modular_pipelines``: the denoising loop is shared, and a family
supplies only its text conditioning (one text encoder, or SDXL's two with a pooled embedding),
its added conditions (SDXL's size and crop ids) and its timestep conditioning (the guidance
embedding of LCM-distilled UNets). Adding a family is adding an adapter here, its detection in
:func:`architecture` and its name in the schema's ``model.family`` enum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class FamilyAdapter:
    """Conditioning of a Stable-Diffusion-style UNet with one text encoder (SD 1.x, SD 2.x, the
    reference worlds). Prompts are encoded one at a time and cached, so a prompt's embedding
    never depends on its batch neighbours."""

    def __init__(
        self,
        pipe: Any,
        device: torch.device,
        *,
        cfg: bool,
        negative_prompt: str = "",
        height: int,
        width: int,
    ):
        self.pipe = pipe
        self.device = device
        self.cfg = cfg
        self.negative_prompt = negative_prompt or None
        self.height, self.width = height, width
        self._cache: dict[str, dict[str, torch.Tensor]] = {}
        self._uncond: dict[str, torch.Tensor] | None = None

    # -- text --------------------------------------------------------------------------------
    def _encode(self, prompt: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(conditional, unconditional) states of one prompt."""
        pe, npe = self.pipe.encode_prompt(
            [prompt], self.device, 1, self.cfg, negative_prompt=self.negative_prompt
        )
        return {"embeds": pe}, {"embeds": npe}

    def _encode_conditional(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Conditional states of several prompts in one text-encoder call (rows in order)."""
        pe, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
        return {"embeds": pe}

    def encode(self, prompt: str) -> dict[str, torch.Tensor]:
        """Cached text states of one prompt."""
        self.encode_all([prompt])
        return self._cache[prompt]

    def encode_all(self, prompts: Sequence[str]) -> None:
        """Encode the prompts not yet cached, in one text-encoder call.

        Prompts are padded to the encoder's full length, as the stock pipelines do, so a
        prompt's states do not depend on the others in its call beyond float rounding. The
        unconditional states come once, with the first prompt ever encoded.
        """
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        with torch.inference_mode():
            if missing and self.cfg and self._uncond is None:
                first = missing.pop(0)
                self._cache[first], self._uncond = self._encode(first)
            if missing:
                states = self._encode_conditional(missing)
                for row, prompt in enumerate(missing):
                    self._cache[prompt] = {k: v[row : row + 1] for k, v in states.items()}

    # -- the UNet's conditioning ---------------------------------------------------------------
    def added_conditions(self, encoded: Sequence[dict[str, torch.Tensor]]) -> dict | None:
        """The UNet's ``added_cond_kwargs`` for a batch (none for this family)."""
        return None

    def conditioning(
        self, prompts: Sequence[str], cfg: bool | None = None
    ) -> tuple[torch.Tensor, dict | None]:
        """``encoder_hidden_states`` and ``added_cond_kwargs`` of a batch of prompts, with the
        unconditional half first when ``cfg`` (default: the adapter's own setting)."""
        cfg = self.cfg if cfg is None else cfg
        self.encode_all(prompts)
        encoded = [self._cache[p] for p in prompts]
        embeds = torch.cat([e["embeds"] for e in encoded])
        added = self.added_conditions(encoded)
        if not cfg:
            return embeds, added
        if self._uncond is None:
            raise RuntimeError("classifier-free guidance asked of an adapter built without it")
        n = len(prompts)
        uncond_added = self.added_conditions([self._uncond] * n)
        embeds = torch.cat([self._uncond["embeds"].expand(n, -1, -1), embeds])
        if added is not None and uncond_added is not None:
            added = {key: torch.cat([uncond_added[key], added[key]]) for key in added}
        return embeds, added

    def timestep_conditioning(self, n: int, guidance_scale: float) -> torch.Tensor | None:
        """The guidance embedding of an LCM-distilled UNet (``time_cond_proj_dim``), else None."""
        unet = self.pipe.unet
        dim = unet.config.get("time_cond_proj_dim")
        if dim is None:
            return None
        w = torch.tensor(float(guidance_scale) - 1.0).repeat(n)
        return self.pipe.get_guidance_scale_embedding(w, embedding_dim=dim).to(
            device=self.device, dtype=unet.dtype
        )


class StableDiffusionXLAdapter(FamilyAdapter):
    """SDXL: two text encoders, a pooled text embedding and the size/crop ids as added
    conditions (original size = target size = the sampled image, no crop, as the stock
    pipeline's defaults)."""

    def _encode(self, prompt: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        pe, npe, pooled, npooled = self.pipe.encode_prompt(
            prompt=[prompt],
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=self.cfg,
            negative_prompt=self.negative_prompt,
        )
        return {"embeds": pe, "pooled": pooled}, {"embeds": npe, "pooled": npooled}

    def _encode_conditional(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        pe, _, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return {"embeds": pe, "pooled": pooled}

    def added_conditions(self, encoded: Sequence[dict[str, torch.Tensor]]) -> dict | None:
        pooled = torch.cat([e["pooled"].expand(1, -1) for e in encoded])
        ids = [self.height, self.width, 0, 0, self.height, self.width]
        time_ids = torch.tensor([ids], dtype=pooled.dtype, device=self.device)
        return {"text_embeds": pooled, "time_ids": time_ids.repeat(len(encoded), 1)}


#: The adapter of each architecture; a family not listed (a loader's own) uses the base one.
ADAPTERS: dict[str, type[FamilyAdapter]] = {
    "sd1": FamilyAdapter,
    "sd2": FamilyAdapter,
    "sdxl": StableDiffusionXLAdapter,
}
#: Families that take guidance distillation (LCM) on top of their architecture.
DISTILLABLE = ("sd1", "sd2", "sdxl")


def architecture(pipe: Any, loader_family: str | None = None) -> str:
    """The one family detection: SDXL by its second text encoder, else the family a model loader
    names (``reference``), else SD 2.x by its linear projections or 1024-wide cross-attention,
    else SD 1.x."""
    unet_cfg = pipe.unet.config
    if getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__:
        return "sdxl"
    if loader_family:
        return loader_family
    if unet_cfg.get("use_linear_projection") or unet_cfg.get("cross_attention_dim") == 1024:
        return "sd2"
    return "sd1"


def family(pipe: Any, arch: str) -> str:
    """``lcm`` for a guidance-distilled UNet (``time_cond_proj_dim``) or an ``LCMScheduler`` on
    a distillable architecture, else the architecture itself."""
    distilled = pipe.unet.config.get("time_cond_proj_dim") is not None or (
        type(pipe.scheduler).__name__ == "LCMScheduler"
    )
    return "lcm" if distilled and arch in DISTILLABLE else arch


def adapter_class(pipe: Any, arch: str | None = None) -> type[FamilyAdapter]:
    """The adapter of a loaded pipeline's architecture (:func:`architecture`)."""
    return ADAPTERS.get(arch or architecture(pipe), FamilyAdapter)
