"""Stochastic samplers keep the sample identity: a sample's noise comes from its seed alone.

A scheduler whose ``step`` draws noise (ancestral samplers, SA-Solver, the SDE variants of the
DPM-Solvers) must draw each sample's noise from that sample's own generator, as the stock
pipeline does when it is given one generator per prompt. Then a (prompt, seed) gives the same
activations whatever batch it lands in and whatever torch's global random state is, and they
equal the stock pipeline's. A scheduler whose step draws noise but takes no generator is refused.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler
from scalex.extract import ExtractionError, HSpaceExtractor, SamplingSettings
from scalex.models import load_pipeline

# diffusers' Karras sigmas go through numpy 2 deprecated array wrapping: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")

SAMPLES = [
    ("a photo of a doctor", 0),
    ("a photo of an engineer", 1),
    ("a portrait of a nurse", 2),
]
STEPS = 4

#: Schedulers whose step draws noise, with the settings that make it draw.
STOCHASTIC = [
    # second order, ancestral: noise after each completed second-order step
    ("KDPM2AncestralDiscreteScheduler", {}),
    # multistep with history, stochastic (tau > 0 in the middle of the schedule)
    ("SASolverScheduler", {}),
    ("SASolverScheduler", {"algorithm_type": "noise_prediction"}),
    # multistep / singlestep SDE variants
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min"},
    ),
    ("DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    ("EDMDPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    # single step: each sample stepped with its own generator
    ("EulerAncestralDiscreteScheduler", {}),
]
IDS = [f"{name}-{kw.get('algorithm_type', 'default')}" for name, kw in STOCHASTIC]


def _settings(**kw):
    base = {
        "steps": STEPS,
        "guidance_scale": 1.0,
        "device": "cpu",
        "batch_size": len(SAMPLES),
        "readouts": ("prompt",),
    }
    return SamplingSettings(**(base | kw))


def _pooled(pipe, settings, samples=SAMPLES):
    return HSpaceExtractor(pipe, settings).run(samples, progress=False).data["mid_block"]["pooled"]


def _stock(pipe, samples, steps, guidance):
    """Pooled ``mid_block`` output (cond branch) of the stock pipeline's first ``steps`` UNet
    calls, run once on all samples with one generator per sample, in sample order."""
    outs = []

    def hook(_module, _inputs, output):
        outs.append((output[0] if isinstance(output, tuple) else output).detach().clone())

    handle = pipe.unet.mid_block.register_forward_hook(hook)
    try:
        pipe(
            [p for p, _ in samples],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator("cpu").manual_seed(s) for _, s in samples],
            output_type="latent",
        )
    finally:
        handle.remove()
    n = len(samples)
    rows = [(o[n:] if o.shape[0] == 2 * n else o).float().mean(dim=(2, 3)) for o in outs[:steps]]
    return torch.stack(rows, dim=1).numpy()  # (N, steps, C)


@pytest.fixture(scope="module")
def stochastic_pipe(tiny_models):
    cache = {}

    def get(name, kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = load_pipeline(
                str(tiny_models["sd1"]), device="cpu", scheduler=name, scheduler_kwargs=kwargs
            )
        return cache[key]

    return get


def _watch_draws(monkeypatch, pipe):
    """Record the generator of every noise draw of the scheduler's module."""
    module = sys.modules[type(pipe.scheduler).__module__]
    seen = []
    original = module.randn_tensor

    def randn_tensor(*args, generator=None, **kwargs):
        seen.append(generator)
        return original(*args, generator=generator, **kwargs)

    monkeypatch.setattr(module, "randn_tensor", randn_tensor)
    return seen


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=IDS)
def test_noise_is_drawn_from_each_samples_generator(stochastic_pipe, monkeypatch, name, kwargs):
    pipe = stochastic_pipe(name, kwargs)
    seen = _watch_draws(monkeypatch, pipe)
    _pooled(pipe, _settings())
    assert seen, f"{name} drew no noise: the tests of this file would test nothing"
    assert all(g is not None for g in seen), "noise drawn from torch's global random state"


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=IDS)
def test_batch_invariance(stochastic_pipe, name, kwargs):
    """A sample alone, or in other company and order, gives the same values."""
    pipe = stochastic_pipe(name, kwargs)
    torch.manual_seed(0)
    batched = _pooled(pipe, _settings())
    torch.manual_seed(0)  # the same global state: only the batch differs
    singles = _pooled(pipe, _settings(batch_size=1))
    np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)
    reordered = _pooled(pipe, _settings(), SAMPLES[::-1])
    np.testing.assert_allclose(batched, reordered[::-1], rtol=1e-4, atol=1e-5)
    # different seeds are different samples
    other = _pooled(pipe, _settings(), [(p, s + 10) for p, s in SAMPLES])
    assert np.abs(batched[:, -1] - other[:, -1]).max() > 1e-3


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=IDS)
def test_global_seed_changes_nothing(stochastic_pipe, name, kwargs):
    """torch's global random state set beforehand changes nothing, bit for bit."""
    pipe = stochastic_pipe(name, kwargs)
    torch.manual_seed(123)
    first = _pooled(pipe, _settings())
    torch.manual_seed(987)
    np.testing.assert_array_equal(first, _pooled(pipe, _settings()))


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=IDS)
def test_equals_the_stock_pipeline(stochastic_pipe, name, kwargs):
    """The stock pipeline given the same seeds as a list of generators computes the same
    values at every kept step (the global state is the same for both: only the generators
    can make them agree)."""
    pipe = stochastic_pipe(name, kwargs)
    torch.manual_seed(0)
    ours = _pooled(pipe, _settings())
    torch.manual_seed(0)
    np.testing.assert_allclose(ours, _stock(pipe, SAMPLES, STEPS, 1.0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("KDPM2AncestralDiscreteScheduler", {}), ("SASolverScheduler", {})],
    ids=["KDPM2Ancestral", "SASolver"],
)
def test_stochastic_multistep_with_guidance_equals_the_stock_pipeline(
    stochastic_pipe, name, kwargs
):
    """With classifier-free guidance the step still draws one row per sample's generator."""
    pipe = stochastic_pipe(name, kwargs)
    torch.manual_seed(5)
    ours = _pooled(pipe, _settings(guidance_scale=3.0))
    torch.manual_seed(6)
    alone = _pooled(pipe, _settings(guidance_scale=3.0, batch_size=1))
    np.testing.assert_allclose(ours, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours, _stock(pipe, SAMPLES, STEPS, 3.0), rtol=1e-4, atol=1e-5)


class GlobalNoiseEulerScheduler(EulerDiscreteScheduler):
    """A step that draws noise from torch's global state: it takes no generator."""

    def step(self, model_output, timestep, sample, return_dict=True):
        prev = super().step(model_output, timestep, sample, return_dict=False)[0]
        return (prev + 0.01 * torch.randn_like(prev),)


def test_step_drawing_noise_without_a_generator_is_refused(tiny_models):
    pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu")
    pipe.scheduler = GlobalNoiseEulerScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ExtractionError, match="sampling.scheduler") as err:
        HSpaceExtractor(pipe, _settings())
    message = str(err.value)
    assert "GlobalNoiseEulerScheduler" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name",
    [
        "HeunDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "LMSDiscreteScheduler",
        "PNDMScheduler",
        "DEISMultistepScheduler",
        "UniPCMultistepScheduler",
        "DPMSolverMultistepScheduler",
    ],
)
def test_deterministic_steps_without_a_generator_are_accepted(tiny_models, name):
    """A step that takes no generator and draws nothing is batched as before."""
    pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu", scheduler=name)
    HSpaceExtractor(pipe, _settings())


def test_brownian_tree_sde_scheduler_is_refused(tiny_models):
    """DPMSolverSDEScheduler draws one Brownian tree over the whole batch: no per-sample seed."""
    pytest.importorskip("torchsde")
    pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu", scheduler="DPMSolverSDEScheduler")
    with pytest.raises(ExtractionError, match="sampling.scheduler DPMSolverSDEScheduler"):
        HSpaceExtractor(pipe, _settings())
