"""Stable Diffusion 3 / 3.5: an MMDiT over two CLIP encoders and T5, sampled by flow matching."""

from __future__ import annotations

import functools

import torch

from scalex.families.base import DenoiserKwargs
from scalex.families.transformer import FlowMatchingAdapter


class StableDiffusion3Adapter(FlowMatchingAdapter):
    """SD3: the token states of both CLIPs (channel-concatenated, padded to T5's width) followed
    by T5's, the CLIPs' pooled embeddings as ``pooled_projections``; joint blocks return
    ``(text, image)``; the schedule shifts by the image's token count when the scheduler has
    dynamic shifting (SD 3.5), as the stock pipeline does."""

    pipelines = ("StableDiffusion3Pipeline",)
    image_stream_index = 1
    #: the stock pipeline's default T5 length
    max_sequence_length = 256

    def _encode(self, prompt):
        pe, npe, pooled, npooled = self.pipe.encode_prompt(
            prompt=[prompt],
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=self.cfg,
            negative_prompt=self.negative_prompt,
            max_sequence_length=self.max_sequence_length,
        )
        return {"embeds": pe, "pooled": pooled}, {"embeds": npe, "pooled": npooled}

    def _encode_conditional(self, prompts):
        pe, _, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return {"embeds": pe, "pooled": pooled}

    def text_states(self, prompts):
        """Every encoder's tokens, each with the pooled CLIP embedding the transformer also gets
        (N, L, D + pooled)."""
        states = self._stacked(prompts, cfg=False)
        embeds, pooled = states["embeds"], states["pooled"]
        return torch.cat([embeds, pooled[:, None, :].expand(-1, embeds.shape[1], -1)], dim=2)

    def denoiser_kwargs(self, states) -> DenoiserKwargs:
        return {"encoder_hidden_states": states["embeds"], "pooled_projections": states["pooled"]}

    def set_timesteps(self, scheduler, steps):
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
            calculate_shift,
            retrieve_timesteps,
        )

        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            h, w = self.height // self.vae_scale, self.width // self.vae_scale
            kwargs["mu"] = calculate_shift(
                (h // self.patch) * (w // self.patch),
                scheduler.config.get("base_image_seq_len", 256),
                scheduler.config.get("max_image_seq_len", 4096),
                scheduler.config.get("base_shift", 0.5),
                scheduler.config.get("max_shift", 1.16),
            )
        timesteps, _ = retrieve_timesteps(scheduler, steps, self.device, **kwargs)
        return timesteps

    def call(self, model_in, t, kwargs):
        return functools.partial(
            self.denoiser,
            hidden_states=model_in,
            timestep=self.call_timestep(t, len(model_in)),
            **kwargs,
            return_dict=False,
        )
