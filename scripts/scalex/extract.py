"""Read H-space activations with a batched denoising loop over a pipeline's components.

Why not call the pipeline once per prompt with a hook? Because an audit samples thousands of
(prompt, seed) pairs: this loop batches them, encodes each distinct prompt once, decodes no image
and stops every sample right after the last step it needs. It still draws each sample's initial
noise exactly as the stock pipeline does for one prompt with
``generator=torch.Generator(noise_device).manual_seed(seed)``, and, for schedulers that inject
noise between steps (LCM, ancestral samplers, SA-Solver, SDE solvers), draws each sample's noise
from its own generator (:func:`_step_mode`), so a user can render with the stock pipeline the very
image whose H-space was measured, and a (prompt, seed) gives the same activations whatever batch
it lands in and whatever torch's global random state. A scheduler whose step draws noise but
takes no generator is refused.

Three *readouts* can be stored from one trajectory (``SamplingSettings.readouts``):

- ``prompt``: the published SCALEX readout, the UNet's output at the tap while it denoises the
  sample under the sample's own prompt. It mixes what the sample's latent ``x_t`` holds with what
  the text encoder says about the prompt (cross-attention), so it carries the text encoder's
  associations as well as the model's generations.
- ``content``: the same trajectory ``x_t``, read by one extra UNet forward per kept step under a
  fixed text conditioning (``content_prompt``, by default the baseline's first prompt) for every
  sample. Differences between prompts then come only from ``x_t``: from what the model is
  generating. With classifier-free guidance the trajectory is the guided one, and the content
  readout is the conditional branch under ``content_prompt``. At the first step ``x_t`` is the
  seed's noise for every prompt, so the content readout skips step index 0 (its differences are
  zero by construction).
- ``text``: the text-encoder control. The prompt's text conditioning as the UNet receives it
  (``encode_prompt``'s token states; for SDXL both encoders' concatenated states), no UNet at
  all, stored as channels x tokens (pooled: the mean over tokens). Any finding that this readout
  reproduces is already in the text encoder.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scalex.config import schema_default
from scalex.errors import ExtractionError
from scalex.families import adapter_class
from scalex.hooks import Trace
from scalex.layout import CONTENT, PROMPT, READOUTS, TEXT, TEXT_TAP
from scalex.models import DTYPES, noise_source, resolve_device, seed_generators

log = logging.getLogger(__name__)


def _s(key: str) -> Any:
    return schema_default("sampling", key)


def _e(key: str) -> Any:
    value = schema_default("extraction", key)
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class SamplingSettings:
    """How samples are denoised and read (the workflow builds it from the validated config:
    ``scalex.steps.extract.sampling_settings``). Every default is the config schema's."""

    steps: int = _s("steps")
    guidance_scale: float = _s("guidance_scale")
    branch: str = _s("branch")
    height: int | None = _s("height")
    width: int | None = _s("width")
    dtype: str = _s("dtype")
    device: str = _s("device")
    batch_size: int = _s("batch_size")
    noise_device: str = _s("noise_device")
    eta: float = _s("eta")
    keep_steps: tuple[int, ...] | None = _e("keep_steps")
    taps: tuple[str, ...] = _e("taps")
    store: tuple[str, ...] = _e("store")
    negative_prompt: str = _s("negative_prompt")
    readouts: tuple[str, ...] = _e("readouts")
    #: the text the content readout reads under (the schema's null resolves to the baseline's
    #: first prompt in the config; here it must be given when ``content`` is read)
    content_prompt: str | None = _e("content_prompt")
    #: compile the UNet's repeated blocks (a runtime option: equal within float16 storage)
    compile: bool = _e("compile")

    def kept_steps(self) -> list[int]:
        """Indices of the denoising steps whose activations are kept (all when unset)."""
        kept = list(range(self.steps)) if self.keep_steps is None else sorted(set(self.keep_steps))
        if not kept or kept[0] < 0 or kept[-1] >= self.steps:
            raise ExtractionError(
                f"extraction.keep_steps {list(self.keep_steps or [])} must lie in "
                f"0..{self.steps - 1}"
            )
        return kept


@dataclass
class Activations:
    """Activations of N samples: ``data[tap][kind]`` has shape (N, T, C) or (N, T, C, h, w)."""

    timesteps: np.ndarray
    step_indices: np.ndarray
    data: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def readout_steps(readout: str, kept: Sequence[int]) -> list[int]:
    """The step indices a readout keeps: the text readout has one pseudo-step (-1), the content
    readout drops step 0 (zero differences by construction)."""
    if readout == TEXT:
        return [-1]
    if readout == CONTENT:
        return [i for i in kept if i > 0]
    return list(kept)


#: How a batch is stepped (:func:`_step_mode`).
BATCHED, GENERATORS, PER_SAMPLE = "batched", "generators", "per_sample"

#: Names whose use in a scheduler's ``step`` means it draws random numbers.
_RANDOM_CALLS = frozenset(
    {
        "randn",
        "randn_like",
        "randn_tensor",
        "rand",
        "rand_like",
        "randint",
        "randint_like",
        "normal",
        "normal_",
        "bernoulli",
        "multinomial",
        "noise_sampler",
        "BrownianTree",
        "BrownianTreeNoiseSampler",
    }
)


def _step_draws_noise(step) -> bool:
    """True when the source of a scheduler's ``step`` names a random draw (docstring aside)."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(step)))
    except (OSError, TypeError, SyntaxError):  # no source: nothing to tell
        return False
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return bool(names & _RANDOM_CALLS)


def _step_mode(scheduler, eta: float = 0.0) -> str:
    """How ``scheduler.step`` is called so each sample's noise comes from its own generator.

    - ``batched``: one call on the batch, no generator: the step draws nothing (DDIM at
      ``eta = 0``, deterministic flow-matching Euler, any step that takes no generator and draws
      nothing). Its arithmetic is elementwise, so batched is the same per sample.
    - ``generators``: one call on the batch with its generators as a list, in batch order, for
      solvers that keep state across steps (multistep, second order: KDPM2-Ancestral,
      SA-Solver, the DPM-Solvers' SDE variants). diffusers' ``randn_tensor`` then draws row
      ``j`` from generator ``j``: what the stock pipeline does given one generator per prompt,
      and, row by row, what it does for one prompt with its own generator.
    - ``per_sample``: single-step schedulers that take a generator (LCM, Euler-Ancestral, DDIM
      at ``eta > 0``) are stepped one sample at a time with that sample's generator, as the
      stock pipeline steps one prompt.

    A step that draws noise but takes no generator (``DPMSolverSDEScheduler``'s Brownian tree
    spans the whole batch) is refused: its noise would not belong to one (prompt, seed).
    """
    name = type(scheduler).__name__
    if "generator" not in inspect.signature(scheduler.step).parameters:
        if _step_draws_noise(type(scheduler).step):
            raise ExtractionError(
                f"sampling.scheduler {name} draws noise that no per-sample generator seeds, so "
                "a sample would not be its (prompt, seed); use a scheduler whose step takes a "
                "generator or a deterministic one"
            )
        return BATCHED
    if name == "DDIMScheduler" and eta == 0:
        return BATCHED
    if name == "FlowMatchEulerDiscreteScheduler" and not scheduler.config.get(
        "stochastic_sampling"
    ):
        return BATCHED  # a deterministic Euler step: elementwise
    if hasattr(scheduler, "model_outputs") or getattr(scheduler, "order", 1) > 1:
        return GENERATORS
    return PER_SAMPLE


class HSpaceExtractor:
    """Batched, early-stopping H-space reader for one loaded pipeline and sampling settings."""

    def __init__(self, pipe, settings: SamplingSettings):
        self.pipe = pipe
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = DTYPES[settings.dtype]
        #: what this model's family does its own way (conditioning, noise, schedule, blocks)
        self.family = adapter_class(pipe)(
            pipe,
            self.device,
            guidance_scale=settings.guidance_scale,
            negative_prompt=settings.negative_prompt,
            height=settings.height,
            width=settings.width,
        )
        self.denoiser = self.family.denoiser
        # As the stock pipeline decides: no unconditional branch for guidance-distilled (LCM)
        # UNets or Flux.
        self.cfg = self.family.cfg
        if settings.branch not in {"cond", "uncond"}:
            raise ExtractionError(
                f"sampling.branch must be 'cond' or 'uncond', not {settings.branch!r}"
            )
        if settings.branch == "uncond" and not self.cfg:
            raise ExtractionError(
                "sampling.branch 'uncond' needs classifier-free guidance (guidance_scale > 1 "
                "on a model that samples with an unconditional branch)"
            )
        # refuse a scheduler whose noise no sample's generator seeds before any work is done
        _step_mode(pipe.scheduler, settings.eta)
        self.height, self.width = self.family.height, self.family.width
        #: the denoiser submodule each configured tap names
        self.modules = {tap: self.family.module_name(tap) for tap in settings.taps}
        self.kept = settings.kept_steps()
        unknown = sorted(set(settings.readouts) - set(READOUTS))
        if unknown or not settings.readouts:
            raise ExtractionError(
                f"extraction.readouts {list(settings.readouts)} must be a non-empty subset of "
                f"{list(READOUTS)}"
            )
        if CONTENT in settings.readouts and not settings.content_prompt:
            raise ExtractionError(
                "the content readout needs a content_prompt (extraction.content_prompt; the "
                "config fills in the baseline's first prompt)"
            )
        if CONTENT in settings.readouts and not readout_steps(CONTENT, self.kept):
            raise ExtractionError(
                "extraction.readouts has 'content', which reads steps after the first, but "
                "extraction.keep_steps keeps only step 0"
            )
        self.denoiser_readouts = [r for r in settings.readouts if r != TEXT]
        # the last step whose UNet output is needed (early stop)
        self.last_step = max(
            (readout_steps(r, self.kept)[-1] for r in self.denoiser_readouts), default=-1
        )
        #: the batch size the last run ended with (lower than asked after running out of memory)
        self.batch_size_used = max(1, settings.batch_size)
        #: names of the UNet submodules compiled (empty unless ``settings.compile``)
        self.compiled = (
            compile_blocks(
                self.denoiser,
                list(self.modules.values()),
                self.device,
                self.family.repeated_blocks,
            )
            if settings.compile
            else []
        )

    def encode(self, prompt: str) -> dict[str, torch.Tensor]:
        """Cached text states of one prompt (see :class:`scalex.families.FamilyAdapter`)."""
        return self.family.encode(prompt)

    # -- noise ---------------------------------------------------------------------------------
    @property
    def noise_source(self) -> str:
        """The device type whose generators draw the noise (``cpu`` or e.g. ``cuda``)."""
        return noise_source(self.settings.noise_device, self.device)

    def initial_noise(self, generators: Sequence[torch.Generator], scheduler=None) -> torch.Tensor:
        """The samples' initial latents as the stock pipeline draws them (its family's
        ``prepare_latents``: one ``randn_tensor`` draw per sample, scaled or packed).

        ``scheduler`` must be the one whose timesteps were set for this run: its
        ``init_noise_sigma`` depends on them (Euler-type schedulers with "leading" spacing).
        """
        scheduler = scheduler if scheduler is not None else self.pipe.scheduler
        return self.family.initial_latents(generators, scheduler)

    def timesteps_of(self, indices: Sequence[int]) -> list[float]:
        """The timesteps of step ``indices`` of this run's schedule."""
        return self.family.timesteps_of(self.settings.steps, indices)

    # -- the loop ------------------------------------------------------------------------------
    def run_batch(self, prompts: Sequence[str], seeds: Sequence[int]) -> dict[str, Activations]:
        """Activations of the samples (prompts[i], seeds[i]) per readout at its kept steps."""
        import copy

        settings = self.settings
        n = len(prompts)
        out: dict[str, Activations] = {}
        if TEXT in settings.readouts:
            out[TEXT] = self._text_readout(prompts)
        if not self.denoiser_readouts:
            return out
        scheduler = copy.deepcopy(self.pipe.scheduler)  # per-batch state (step index, history)
        timesteps = self.family.set_timesteps(scheduler, settings.steps)
        mode = _step_mode(scheduler, settings.eta)
        generators = seed_generators(seeds, self.settings.noise_device, self.device)
        conditioning = self.family.conditioning(prompts)
        content = None
        if CONTENT in settings.readouts:
            content = self.family.conditioning([settings.content_prompt] * n, cfg=False)
        latents = self.initial_noise(generators, scheduler)
        step_kwargs: dict[str, Any] = {}
        if "eta" in inspect.signature(scheduler.step).parameters:
            step_kwargs["eta"] = settings.eta
        steps = {r: readout_steps(r, self.kept) for r in self.denoiser_readouts}
        collected = {
            r: {tap: {kind: [] for kind in settings.store} for tap in settings.taps}
            for r in self.denoiser_readouts
        }
        modules = self.modules
        with (
            Trace(self.denoiser, list(modules.values()), stream=self.family.stream) as trace,
            torch.inference_mode(),
        ):
            for i, t in enumerate(timesteps):
                # The trajectory's own forward is needed to step on, or for the prompt readout.
                if i < self.last_step or i in steps.get(PROMPT, ()):
                    model_in = self.family.model_input(latents, t, scheduler, self.cfg)
                    forward = self.family.call(model_in, t, conditioning)
                    if i == self.last_step:
                        # nothing steps on from here: the denoiser ends at the deepest tap
                        trace.run_until_traced(forward)
                    else:
                        noise_pred = self.family.prediction(forward(), self.cfg)
                    if i in steps.get(PROMPT, ()):
                        for tap in settings.taps:
                            h = trace.outputs[modules[tap]]
                            if self.cfg:
                                h = h[n:] if settings.branch == "cond" else h[:n]
                            self._collect(collected[PROMPT][tap], h)
                if content is not None and i in steps[CONTENT]:
                    # only the tap's state is read under the baseline's text
                    model_in = self.family.model_input(latents, t, scheduler, cfg=False)
                    trace.run_until_traced(self.family.call(model_in, t, content))
                    for tap in settings.taps:
                        self._collect(collected[CONTENT][tap], trace.outputs[modules[tap]])
                if i == self.last_step:
                    break
                latents = self._step(
                    scheduler, noise_pred, t, latents, generators, mode, step_kwargs
                )
        for r in self.denoiser_readouts:
            out[r] = Activations(
                timesteps=timesteps[steps[r]].detach().cpu().numpy().astype(np.float64),
                step_indices=np.asarray(steps[r], dtype=np.int64),
                data={
                    tap: {kind: _to_host(arrs) for kind, arrs in kinds.items()}
                    for tap, kinds in collected[r].items()
                },
            )
        return {r: out[r] for r in settings.readouts}

    def _text_readout(self, prompts: Sequence[str]) -> Activations:
        """The text-encoder control: each prompt's token states, as channels x tokens x 1."""
        embeds = self.family.text_states(prompts)  # (N, L, D)
        states = embeds.permute(0, 2, 1)[:, None, :, :, None]  # (N, 1, D, L, 1)
        sink: dict[str, list[torch.Tensor]] = {kind: [] for kind in self.settings.store}
        self._collect(sink, states[:, 0])
        return Activations(
            timesteps=np.asarray([-1], dtype=np.int64),
            step_indices=np.asarray([-1], dtype=np.int64),
            data={TEXT_TAP: {kind: _to_host(arrs) for kind, arrs in sink.items()}},
        )

    def _collect(self, sink: dict[str, list[torch.Tensor]], out: torch.Tensor) -> None:
        """Keep a step's output on the device; :func:`_to_host` copies a batch's steps at once,
        so the loop never waits for the accelerator between steps."""
        if "pooled" in sink:
            sink["pooled"].append(out.float().mean(dim=(2, 3)))
        if "full" in sink:
            sink["full"].append(out.to(torch.float16))

    @staticmethod
    def _step(scheduler, noise_pred, t, latents, generators, mode, kwargs):
        if mode == BATCHED:
            return scheduler.step(noise_pred, t, latents, **kwargs, return_dict=False)[0]
        if mode == GENERATORS:
            # one row of noise per generator, as the stock pipeline draws for a list of them
            return scheduler.step(
                noise_pred, t, latents, generator=list(generators), **kwargs, return_dict=False
            )[0]
        # Each sample continues its own generator, as the stock pipeline does for one prompt;
        # schedulers that count steps are rewound so every sample takes the same step.
        counted = hasattr(scheduler, "_step_index")
        start = scheduler._step_index if counted else None
        outs = []
        for j, gen in enumerate(generators):
            if counted and start is not None:
                scheduler._step_index = start
            outs.append(
                scheduler.step(
                    noise_pred[j : j + 1],
                    t,
                    latents[j : j + 1],
                    generator=gen,
                    **kwargs,
                    return_dict=False,
                )[0]
            )
            if counted and start is None:
                start = scheduler._step_index - 1
        return torch.cat(outs)

    def run_all(
        self,
        samples: Sequence[tuple[str, int]],
        progress: bool = True,
        desc: str = "extract",
        unit_scale: float = 1.0,
    ) -> dict[str, Activations]:
        """Activations of all samples per readout, in order, in batches of ``batch_size``.

        Every batch runs at the same shape (the last one padded), since kernels pick their
        arithmetic by shape: on one device and batch size, a (prompt, seed) gives the same bits
        in any run; across batch sizes, the same within float16 storage.

        The progress bar counts ``unit_scale`` prompts per sample (1 / number of seeds), so its
        rate reads in prompts per second.
        """
        from tqdm.auto import tqdm

        if not samples:
            raise ExtractionError("nothing to extract: no (prompt, seed) samples")
        bs = max(1, self.settings.batch_size)
        parts: list[dict[str, Activations]] = []
        bar = tqdm(
            total=round(len(samples) * unit_scale, 3),
            unit="prompt",
            desc=desc,
            disable=not progress,
        )
        start = 0
        with bar:
            while start < len(samples):
                chunk = samples[start : start + bs]
                # The last batch is padded to the full shape with copies of its last sample:
                # a sample's result then never depends on which run or batch computed it, so
                # samples reused from an earlier shard equal recomputed ones bit for bit.
                padded = list(chunk) + [chunk[-1]] * (bs - len(chunk))
                try:
                    part = self.run_batch([p for p, _ in padded], [s for _, s in padded])
                except torch.OutOfMemoryError as err:
                    # Activations do not depend on the batch, so a smaller batch redoes exactly
                    # this chunk: no sample is lost or duplicated.
                    if bs == 1:
                        raise ExtractionError(
                            f"out of memory on {self.device} at batch size 1; use a smaller "
                            "sampling.height/width, sampling.dtype float16 or another device"
                        ) from err
                    bs = max(1, bs // 2)
                    _release_memory(self.device)
                    log.warning("out of memory: batch size lowered to %d", bs)
                    continue
                parts.append({r: _head(a, len(chunk)) for r, a in part.items()})
                start += len(chunk)
                bar.update(len(chunk) * unit_scale)
        self.batch_size_used = bs
        return {r: _concatenate([p[r] for p in parts]) for r in parts[0]}

    def run(
        self,
        samples: Sequence[tuple[str, int]],
        progress: bool = True,
        desc: str = "extract",
        unit_scale: float = 1.0,
    ) -> Activations:
        """The first configured readout of all samples (see :meth:`run_all`)."""
        first = self.settings.readouts[0]
        return self.run_all(samples, progress, desc, unit_scale)[first]


#: the per-block children of a UNet block that repeat: compiled one by one (regional
#: compilation), so the tap hooks on the blocks themselves stay eager Python
_REPEATED = ("resnets", "attentions", "downsamplers", "upsamplers")


def compile_blocks(
    denoiser: torch.nn.Module,
    taps: Sequence[str],
    device: torch.device,
    repeated: Sequence[str] = _REPEATED,
) -> list[str]:
    """Compile the denoiser's repeated blocks (numbered children of the ModuleLists named in
    ``repeated``) in place with ``torch.compile``; channels-last on CUDA.

    Why regional: a tap's forward hook stops the forward early (:class:`scalex.hooks.Trace`),
    which a whole-graph compile cannot trace. Blocks of equal shapes share one compiled graph, so
    the compile cost is paid per distinct block shape, not per block. A block that is a tap or
    holds one stays eager. Every batch has one shape (:meth:`HSpaceExtractor.run_all` pads the
    last), so nothing recompiles after the first batch. Returns the compiled submodules' names.
    """
    if device.type == "cuda":
        denoiser.to(memory_format=torch.channels_last)
    names = []
    for name, module in denoiser.named_modules():
        parent, _, child = name.rpartition(".")
        if child.isdigit() and parent.rpartition(".")[2] in repeated:
            if any(tap == name or tap.startswith(name + ".") for tap in taps):
                continue
            if module._compiled_call_impl is None:  # a second extractor on this pipe reuses it
                module.compile(dynamic=False)
            names.append(name)
    if not names:
        log.warning("extraction.compile: no repeated block to compile; running eager")
    # Dynamo counts recompiles per code object (one ``forward`` for all resnets, whatever their
    # widths): allow one graph per compiled block and batch shape (trajectory, content readout).
    limit = 2 * len(names) + 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
    torch._dynamo.config.accumulated_recompile_limit = max(
        torch._dynamo.config.accumulated_recompile_limit, limit
    )
    return names


def _head(acts: Activations, n: int) -> Activations:
    """The first ``n`` samples of a batch's activations (drops the padding)."""
    data = {tap: {kind: arr[:n] for kind, arr in kinds.items()} for tap, kinds in acts.data.items()}
    return Activations(acts.timesteps, acts.step_indices, data)


def _concatenate(parts: Sequence[Activations]) -> Activations:
    merged = {
        tap: {kind: np.concatenate([p.data[tap][kind] for p in parts]) for kind in kinds}
        for tap, kinds in parts[0].data.items()
    }
    return Activations(parts[0].timesteps, parts[0].step_indices, merged)


def _to_host(steps: Sequence[torch.Tensor]) -> np.ndarray:
    """Stack a batch's per-step outputs to (N, T, ...) and copy them to the host in one go."""
    return torch.stack(list(steps), dim=1).cpu().numpy()


def _release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_finite(acts: Activations, samples: Sequence[tuple[str, int]]) -> None:
    """Raise naming the first (prompt, seed) whose activations hold NaN or infinity."""
    if isinstance(acts, dict):  # every readout of run_all
        for one in acts.values():
            check_finite(one, samples)
        return
    for tap, kinds in acts.data.items():
        for kind, arr in kinds.items():
            bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                prompt, seed = samples[i]
                raise ExtractionError(
                    f"non-finite activations at tap {tap!r} ({kind}) for prompt {prompt!r}, "
                    f"seed {seed} ({int(bad.sum())} samples affected); try sampling.dtype float32"
                )
