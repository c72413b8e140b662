"""PixArt-alpha and PixArt-Sigma: a DiT over T5, with resolution binning and conditioning."""

from __future__ import annotations

import functools

import torch

from scalex.families.base import DenoiserKwargs
from scalex.families.transformer import TransformerAdapter


class PixArtAdapter(TransformerAdapter):
    """PixArt: T5's token states with their attention mask; the requested size snapped to the
    pipeline's aspect-ratio bins (its default ``use_resolution_binning``); PixArt-alpha at 1024 px
    conditions on the resolution and aspect ratio; a learned-sigma output is cut to its noise
    half. Captions are preprocessed as the stock pipeline's ``clean_caption=True`` does (which
    falls back to lower-casing when ``bs4``/``ftfy`` are not installed)."""

    pipelines = ("PixArtAlphaPipeline", "PixArtSigmaPipeline")

    @property
    def sigma(self) -> bool:
        return type(self.pipe).__name__ == "PixArtSigmaPipeline"

    @property
    def max_sequence_length(self) -> int:
        return 300 if self.sigma else 120

    def resolve_size(self, height: int, width: int) -> tuple[int, int]:
        """The stock pipeline's resolution binning; sizes without a bin table (models other than
        256, 512, 1024, 2048 px) are sampled as asked."""
        table = self._bins()
        if table is None:
            return height, width
        return self.pipe.image_processor.classify_height_width_bin(height, width, ratios=table)

    def _bins(self) -> dict | None:
        from diffusers.pipelines.pixart_alpha import pipeline_pixart_alpha as alpha
        from diffusers.pipelines.pixart_alpha import pipeline_pixart_sigma as sigma

        bins = {
            128: alpha.ASPECT_RATIO_1024_BIN,
            64: alpha.ASPECT_RATIO_512_BIN,
            32: alpha.ASPECT_RATIO_256_BIN,
        }
        if self.sigma:
            bins[256] = sigma.ASPECT_RATIO_2048_BIN
        return bins.get(int(self.denoiser.config.sample_size))

    def stock_call_kwargs(self):
        return {"use_resolution_binning": self._bins() is not None, "clean_caption": _clean()}

    def _prompt(self, prompts, cfg):
        return self.pipe.encode_prompt(
            prompts,
            cfg,
            negative_prompt=self.negative_prompt or "",
            num_images_per_prompt=1,
            device=self.device,
            clean_caption=_clean(),
            max_sequence_length=self.max_sequence_length,
        )

    def _encode(self, prompt):
        pe, mask, npe, nmask = self._prompt([prompt], self.cfg)
        return {"embeds": pe, "mask": mask}, {"embeds": npe, "mask": nmask}

    def _encode_conditional(self, prompts):
        pe, mask, _, _ = self._prompt(prompts, False)
        return {"embeds": pe, "mask": mask}

    def denoiser_kwargs(self, states) -> DenoiserKwargs:
        embeds = states["embeds"]
        added = {"resolution": None, "aspect_ratio": None}
        if not self.sigma and int(self.denoiser.config.sample_size) == 128:
            rows = len(embeds)
            resolution = torch.tensor([self.height, self.width]).repeat(rows, 1)
            ratio = torch.tensor([float(self.height / self.width)]).repeat(rows, 1)
            added = {
                "resolution": resolution.to(dtype=embeds.dtype, device=self.device),
                "aspect_ratio": ratio.to(dtype=embeds.dtype, device=self.device),
            }
        return {
            "encoder_hidden_states": embeds,
            "encoder_attention_mask": states["mask"],
            "added_cond_kwargs": added,
        }

    def call(self, model_in, t, kwargs):
        timestep = t[None] if t.ndim == 0 else t
        return functools.partial(
            self.denoiser,
            model_in,
            timestep=self.call_timestep(timestep.to(model_in.device), len(model_in)),
            **kwargs,
            return_dict=False,
        )

    def prediction(self, output, cfg):
        pred = super().prediction(output, cfg)
        channels = int(self.denoiser.config.in_channels)
        if int(self.denoiser.config.out_channels) // 2 == channels:
            pred = pred.chunk(2, dim=1)[0]  # learned sigma: keep the noise half
        return pred


def _clean() -> bool:
    """The stock default ``clean_caption=True`` as it takes effect: it falls back to False
    (with a warning at every call) when ``bs4`` or ``ftfy`` is not installed."""
    from diffusers.utils import is_bs4_available, is_ftfy_available

    return is_bs4_available() and is_ftfy_available()
