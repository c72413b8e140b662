"""What transformer denoisers (DiT, MMDiT) share: their blocks, their H-space and their checks.

A transformer has no bottleneck, so scalex reads **the output of one transformer block, its image
tokens only, as the map of their patch grid** (pooled: the mean over image tokens). The tap
``mid_block`` names the middle block of the denoiser's block stack, ``blocks[len(blocks) // 2]``
counting Flux's double-stream blocks then its single-stream blocks; any block can be named as the
denoiser names it (``transformer_blocks.7``, ``single_transformer_blocks.20``). MMDiT joint
blocks (SD3, Flux) return ``(text stream, image stream)``: only the image stream is read or
steered, the text stream passes through.
"""

from __future__ import annotations

from typing import Any

import torch

from scalex.families.base import FamilyAdapter
from scalex.hooks import Stream
from scalex.model_checks import BLOCK_STACKS, MIDDLE, block_names


class TransformerAdapter(FamilyAdapter):
    """A transformer denoiser over patchified latents (SD3, Flux, PixArt)."""

    denoiser_attr = "transformer"
    repeated_blocks = tuple(stack for stack, _ in BLOCK_STACKS)
    #: which element of a block's tuple output is the image stream (joint blocks: 1)
    image_stream_index = 0
    #: latent pixels per image token along each side, when the config does not say
    default_patch = 2

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        return type(pipe).__name__ in cls.pipelines

    @classmethod
    def patch_of(cls, config: dict[str, Any]) -> int:
        """Latent pixels per image token along each side."""
        return int(config.get("patch_size") or cls.default_patch)

    @property
    def patch(self) -> int:
        return self.patch_of(dict(self.denoiser.config))

    def size_multiple(self) -> int:
        return self.vae_scale * self.patch

    def uses_cfg(self, guidance_scale: float) -> bool:
        return guidance_scale > 1.0

    def module_name(self, tap: str) -> str:
        if tap != MIDDLE:
            return tap
        names = block_names(dict(self.denoiser.config))
        return names[len(names) // 2]

    @property
    def stream(self) -> Stream:
        grid = (
            self.height // self.vae_scale // self.patch,
            self.width // self.vae_scale // self.patch,
        )
        return Stream(index=self.image_stream_index, grid=grid)

    def call_timestep(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """The timestep as the stock pipeline passes it: one per row."""
        return t.expand(rows)

    @classmethod
    def check_files(cls, cfg: dict[str, Any], configs: dict[str, Any]) -> None:
        from scalex.model_checks import check_transformer

        check_transformer(cfg, configs, flux=not cls.has_uncond_branch())

    @classmethod
    def has_uncond_branch(cls) -> bool:
        """Whether the family's stock pipeline runs classifier-free guidance at all."""
        return True


class FlowMatchingAdapter(TransformerAdapter):
    """A rectified-flow transformer (SD3, Flux): pure noise at the start (no ``init_noise_sigma``),
    no input scaling, and images noised by interpolation (``scale_noise``)."""

    def initial_latents(self, generators, scheduler) -> torch.Tensor:
        return self.pack(self.draw_noise(generators))

    def model_input(self, latents, t, scheduler, cfg):
        return torch.cat([latents] * 2) if cfg else latents

    def noised(self, latents, noise, t, scheduler):
        """``sigma * noise + (1 - sigma) * latents`` at the schedule's sigma of each row's
        timestep (the scheduler's ``scale_noise`` would use its begin index, not ``t``)."""
        rows = [
            int((scheduler.timesteps == ti.to(scheduler.timesteps.device)).nonzero()[0]) for ti in t
        ]
        sigma = scheduler.sigmas[rows].to(device=latents.device, dtype=latents.dtype)
        sigma = sigma.reshape(-1, *([1] * (latents.ndim - 1)))
        return sigma * noise + (1.0 - sigma) * latents
