"""Flux.1: an MMDiT over CLIP's pooled embedding and T5, on packed latents, by flow matching."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from scalex.families.base import DenoiserKwargs
from scalex.families.transformer import FlowMatchingAdapter


class FluxAdapter(FlowMatchingAdapter):
    """Flux: T5's token states and CLIP's pooled embedding; latents packed in 2x2 patches (one
    token each) with their position ids; a shifted flow-matching schedule over ``1 .. 1/steps``;
    guidance as an embedding (Flux.1-dev; none for schnell) and no unconditional branch, as the
    stock pipeline samples by default (its "true CFG" needs a negative prompt, refused here)."""

    pipelines = ("FluxPipeline",)
    image_stream_index = 1
    #: the stock pipeline's default T5 length
    max_sequence_length = 512
    #: the stock pipeline's ``default_sample_size`` (latent pixels; 1024 px images)
    default_sample_size = 128

    @classmethod
    def patch_of(cls, config: dict[str, Any]) -> int:
        return 2  # the pipeline packs 2x2 latent pixels into one token

    def default_size(self) -> tuple[int, int]:
        size = self.default_sample_size * self.vae_scale
        return size, size

    def uses_cfg(self, guidance_scale: float) -> bool:
        return False

    def _encode(self, prompt):
        return self._encode_conditional([prompt]), {}

    def _encode_conditional(self, prompts):
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            device=self.device,
            num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
        )
        return {"embeds": embeds, "pooled": pooled}

    def text_states(self, prompts):
        """T5's tokens, each with CLIP's pooled embedding beside it (N, L, D_t5 + D_clip)."""
        states = self._stacked(prompts, cfg=False)
        embeds, pooled = states["embeds"], states["pooled"]
        return torch.cat([embeds, pooled[:, None, :].expand(-1, embeds.shape[1], -1)], dim=2)

    def denoiser_kwargs(self, states) -> DenoiserKwargs:
        embeds = states["embeds"]
        rows = len(embeds)
        guidance = None
        if self.denoiser.config.get("guidance_embeds"):
            guidance = torch.full([1], self.guidance_scale, device=self.device, dtype=torch.float32)
            guidance = guidance.expand(rows)
        h, w = self.latent_shape()[1:]
        return {
            "encoder_hidden_states": embeds,
            "pooled_projections": states["pooled"],
            "guidance": guidance,
            "txt_ids": torch.zeros(embeds.shape[1], 3, device=self.device, dtype=embeds.dtype),
            "img_ids": self.pipe._prepare_latent_image_ids(
                rows, h // 2, w // 2, self.device, embeds.dtype
            ),
        }

    def latent_shape(self) -> tuple[int, ...]:
        # packing needs even latent sides: the stock pipeline rounds down to a multiple of 2
        h = 2 * (self.height // (self.vae_scale * 2))
        w = 2 * (self.width // (self.vae_scale * 2))
        return int(self.denoiser.config.in_channels) // 4, h, w

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        n, c, h, w = latents.shape
        return self.pipe._pack_latents(latents, n, c, h, w)

    def set_timesteps(self, scheduler, steps):
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        sigmas = np.linspace(1.0, 1 / steps, steps)
        if getattr(scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        h, w = self.latent_shape()[1:]
        mu = calculate_shift(
            (h // 2) * (w // 2),
            scheduler.config.get("base_image_seq_len", 256),
            scheduler.config.get("max_image_seq_len", 4096),
            scheduler.config.get("base_shift", 0.5),
            scheduler.config.get("max_shift", 1.15),
        )
        timesteps, _ = retrieve_timesteps(scheduler, steps, self.device, sigmas=sigmas, mu=mu)
        scheduler.set_begin_index(0)
        return timesteps

    def call(self, model_in, t, kwargs):
        return functools.partial(
            self.denoiser,
            hidden_states=model_in,
            timestep=self.call_timestep(t, len(model_in)).to(model_in.dtype) / 1000,
            **kwargs,
            return_dict=False,
        )

    @classmethod
    def has_uncond_branch(cls) -> bool:
        return False
