"""SDXL: two text encoders, a pooled text embedding and the size/crop ids."""

from __future__ import annotations

from typing import Any

import torch

from scalex.families.base import DenoiserKwargs, FamilyAdapter


class StableDiffusionXLAdapter(FamilyAdapter):
    """SDXL: both encoders' token states concatenated, the second's pooled embedding and the
    size/crop ids as added conditions (original size = target size = the sampled image, no
    crop, as the stock pipeline's defaults)."""

    pipelines = ("StableDiffusionXLPipeline",)

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        if getattr(pipe, "unet", None) is None:
            return False
        return getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__

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

    def denoiser_kwargs(self, states: dict[str, torch.Tensor]) -> DenoiserKwargs:
        kwargs = super().denoiser_kwargs(states)
        pooled = states["pooled"]
        ids = [self.height, self.width, 0, 0, self.height, self.width]
        time_ids = torch.tensor([ids], dtype=pooled.dtype, device=self.device)
        kwargs["added_cond_kwargs"] = {
            "text_embeds": pooled,
            "time_ids": time_ids.repeat(len(pooled), 1),
        }
        return kwargs
