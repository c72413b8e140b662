"""The family adapter: everything a model family does differently around its denoiser.

In the manner of diffusers' ``modular_pipelines``: the denoising loop (:mod:`scalex.extract`),
the hook (:mod:`scalex.hooks`) and the image conditioning (:mod:`scalex.conditioning`) are shared,
and a family supplies only what its stock pipeline does its own way:

- its denoiser (``pipe.unet`` or ``pipe.transformer``), its default size and size multiple;
- its text conditioning (one encoder, SDXL's two with a pooled embedding, SD3's three, ...) as
  the keyword arguments of one denoiser call, and the text control's token states;
- its initial noise (Flux packs it) and its schedule (flow-matching shifts);
- the denoiser call itself, classifier-free guidance and the output's post-processing;
- where its blocks keep the image's hidden state (:class:`scalex.hooks.Stream`) and which block
  ``mid_block`` names;
- the checks of a local model's config files before anything loads.

This module's :class:`FamilyAdapter` is the Stable-Diffusion UNet with one text encoder (SD 1.x,
SD 2.x, LCM-distilled UNets and the reference worlds); other families override what differs.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from scalex.errors import ExtractionError
from scalex.hooks import UNET_STREAM, Stream

#: The keyword arguments of one denoiser call besides its latents and timestep.
DenoiserKwargs = dict[str, Any]


class FamilyAdapter:
    """A Stable-Diffusion-style UNet with one text encoder (SD 1.x, SD 2.x, the reference
    worlds; LCM through the guidance embedding). Prompts are encoded one at a time and cached, so
    a prompt's embedding never depends on its batch neighbours."""

    #: the pipeline component that denoises
    denoiser_attr = "unet"
    #: the ModuleLists whose numbered children repeat (compiled one by one)
    repeated_blocks: tuple[str, ...] = ("resnets", "attentions", "downsamplers", "upsamplers")
    #: the stock pipelines this adapter reproduces (detection; empty: any UNet pipeline)
    pipelines: tuple[str, ...] = ()

    def __init__(
        self,
        pipe: Any,
        device: torch.device,
        *,
        guidance_scale: float = 1.0,
        cfg: bool | None = None,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
    ):
        self.pipe = pipe
        self.device = device
        self.guidance_scale = float(guidance_scale)
        self.cfg = self.uses_cfg(self.guidance_scale) if cfg is None else cfg
        self.negative_prompt = negative_prompt or None
        default_h, default_w = self.default_size()
        self.height, self.width = self.resolve_size(height or default_h, width or default_w)
        multiple = self.size_multiple()
        if self.height % multiple or self.width % multiple:
            raise ExtractionError(
                f"sampling.height/width must be multiples of {multiple} for this model"
            )
        self._cache: dict[str, dict[str, torch.Tensor]] = {}
        self._uncond: dict[str, torch.Tensor] | None = None

    # -- the denoiser --------------------------------------------------------------------------
    @classmethod
    def matches(cls, pipe: Any) -> bool:
        """Whether ``pipe`` is this family's (see :func:`scalex.families.architecture`)."""
        return type(pipe).__name__ in cls.pipelines

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_attr)

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def vae_scale(self) -> int:
        vae = getattr(self.pipe, "vae", None)
        return 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8

    def default_size(self) -> tuple[int, int]:
        """The stock pipeline's image size when none is given."""
        size = int(self.denoiser.config.sample_size) * self.vae_scale
        return size, size

    def size_multiple(self) -> int:
        """What the image height and width must be multiples of."""
        return self.vae_scale

    def resolve_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the stock pipeline really samples at for a requested size."""
        return height, width

    def stock_call_kwargs(self) -> dict[str, Any]:
        """Extra arguments for a stock pipeline call (steering) so it samples as this adapter."""
        return {}

    def uses_cfg(self, guidance_scale: float) -> bool:
        """Classifier-free guidance, as the stock pipeline decides it: not for a UNet with
        guidance distilled into an embedding (LCM)."""
        return guidance_scale > 1.0 and self.denoiser.config.get("time_cond_proj_dim") is None

    def module_name(self, tap: str) -> str:
        """The denoiser submodule a configured tap names (a UNet's taps are its own names)."""
        return tap

    @property
    def stream(self) -> Stream:
        """Where a tapped block's output holds the image state (a UNet block: the first
        element, already a map)."""
        return UNET_STREAM

    # -- text ------------------------------------------------------------------------------------
    def _encode(self, prompt: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(conditional, unconditional) states of one prompt, one row each."""
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

    def text_states(self, prompts: Sequence[str]) -> torch.Tensor:
        """The text control: the prompts' token states as the denoiser receives them (N, L, D)."""
        return self._stacked(prompts, cfg=False)["embeds"]

    def _stacked(self, prompts: Sequence[str], cfg: bool) -> dict[str, torch.Tensor]:
        """The cached states of a batch, row-stacked per key, unconditional rows first."""
        self.encode_all(prompts)
        rows = [self._cache[p] for p in prompts]
        if cfg:
            if self._uncond is None:
                raise RuntimeError("classifier-free guidance asked of an adapter built without it")
            rows = [self._uncond] * len(prompts) + rows
        return {key: torch.cat([r[key] for r in rows]) for key in rows[0]}

    def conditioning(self, prompts: Sequence[str], cfg: bool | None = None) -> DenoiserKwargs:
        """The denoiser's keyword arguments for a batch of prompts, with the unconditional half
        first when ``cfg`` (default: the adapter's own setting)."""
        cfg = self.cfg if cfg is None else cfg
        return self.denoiser_kwargs(self._stacked(prompts, cfg))

    def denoiser_kwargs(self, states: dict[str, torch.Tensor]) -> DenoiserKwargs:
        """A batch's stacked text states as the denoiser's keyword arguments."""
        return {
            "encoder_hidden_states": states["embeds"],
            "timestep_cond": self.timestep_conditioning(len(states["embeds"])),
            "added_cond_kwargs": None,
        }

    def timestep_conditioning(self, n: int) -> torch.Tensor | None:
        """The guidance embedding of an LCM-distilled UNet (``time_cond_proj_dim``), else None."""
        unet = self.denoiser
        dim = unet.config.get("time_cond_proj_dim")
        if dim is None:
            return None
        w = torch.tensor(self.guidance_scale - 1.0).repeat(n)
        return self.pipe.get_guidance_scale_embedding(w, embedding_dim=dim).to(
            device=self.device, dtype=unet.dtype
        )

    # -- latents and schedule ----------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one sample's initial noise draw (without the batch dimension)."""
        return (
            int(self.denoiser.config.in_channels),
            self.height // self.vae_scale,
            self.width // self.vae_scale,
        )

    def initial_latents(
        self, generators: Sequence[torch.Generator], scheduler: Any
    ) -> torch.Tensor:
        """One ``randn_tensor`` draw per sample, as the stock pipeline's ``prepare_latents``.

        ``scheduler`` must be the one whose timesteps were set for this run: its
        ``init_noise_sigma`` depends on them (Euler-type schedulers with "leading" spacing).
        """
        return self.draw_noise(generators) * scheduler.init_noise_sigma

    def draw_noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The seeds' standard normal draws, one ``randn_tensor`` call per sample."""
        from diffusers.utils.torch_utils import randn_tensor

        shape = (1, *self.latent_shape())
        return torch.cat(
            [
                randn_tensor(shape, generator=g, device=self.device, dtype=self.dtype)
                for g in generators
            ]
        )

    def set_timesteps(self, scheduler: Any, steps: int) -> torch.Tensor:
        """Set ``scheduler``'s schedule as the stock pipeline does; return its timesteps."""
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler.timesteps

    def timesteps_of(self, steps: int, indices: Sequence[int]) -> list[float]:
        """The timesteps of step ``indices`` in a ``steps``-step schedule (scheduler untouched)."""
        timesteps = self.set_timesteps(copy.deepcopy(self.pipe.scheduler), steps)
        return [float(timesteps[i]) for i in indices]

    # -- one denoiser call -------------------------------------------------------------------------
    def model_input(self, latents: torch.Tensor, t: torch.Tensor, scheduler: Any, cfg: bool):
        """The denoiser's input at timestep ``t`` (both guidance halves when ``cfg``)."""
        model_in = torch.cat([latents] * 2) if cfg else latents
        return scheduler.scale_model_input(model_in, t)

    def call(
        self, model_in: torch.Tensor, t: torch.Tensor, kwargs: DenoiserKwargs
    ) -> Callable[[], Any]:
        """The denoiser's forward on ``model_in`` at ``t``, ready to run (or to run until a tap)."""
        return functools.partial(self.denoiser, model_in, t, **kwargs, return_dict=False)

    def prediction(self, output: Any, cfg: bool) -> torch.Tensor:
        """The denoiser's output as the scheduler steps on it (guidance mixed when ``cfg``)."""
        pred = output[0]
        if cfg:
            uncond, cond = pred.chunk(2)
            pred = uncond + self.guidance_scale * (cond - uncond)
        return pred

    # -- images (projection) -----------------------------------------------------------------------
    def noised(
        self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler: Any
    ) -> torch.Tensor:
        """Clean latents noised to timestep ``t`` (one per row) as the scheduler's training did."""
        return scheduler.add_noise(latents, noise, t)

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents (N, C, h, w) in the layout the denoiser takes (a UNet: as they are)."""
        return latents

    # -- config checks before loading --------------------------------------------------------------
    @classmethod
    def check_files(cls, cfg: dict[str, Any], configs: dict[str, Any]) -> None:
        """The local-folder checks of this family (torch-free: :mod:`scalex.model_checks`)."""
        from scalex.model_checks import check_unet

        check_unet(cfg, configs)
