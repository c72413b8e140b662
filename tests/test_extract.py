"""The batched H-space extractor against itself and against the stock diffusers pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES
from scalex.extract import (
    Activations,
    ExtractionError,
    HSpaceExtractor,
    SamplingSettings,
    check_finite,
)
from scalex.models import load_pipeline

#: Guidance per family: classifier-free guidance for SD-type models, the guidance embedding
#: for LCM (there is no unconditional branch).
GUIDANCE = {"sd1": 3.0, "sd2": 3.0, "sdxl": 3.0, "lcm": 3.0}
SAMPLES = [
    ("a photo of a doctor", 0),
    ("a photo of an engineer", 1),
    ("a photo of a doctor", 2),
    ("a portrait of a nurse", 3),
    ("a photo of a doctor", 0),
]


def _settings(family, **kw):
    base = {"steps": 3, "guidance_scale": GUIDANCE[family], "device": "cpu", "batch_size": 8}
    base["readouts"] = ("prompt",)  # the published readout, what the stock pipeline's hook sees
    return SamplingSettings(**(base | kw))


def _pooled(pipe, settings, samples=SAMPLES):
    return HSpaceExtractor(pipe, settings).run(samples, progress=False).data["mid_block"]["pooled"]


def _fp16_ulps_apart(a, b, atol=1e-5):
    """True where a and b, rounded to float16 (as stored), differ by more than one float16 ulp.

    Near zero a float16 ulp is far below float32 noise (5e-7 at 1e-3), so differences within
    ``atol`` also pass there.
    """
    a16, b16 = a.astype(np.float16), b.astype(np.float16)
    ulp = np.spacing(np.maximum(np.abs(a16), np.abs(b16))).astype(np.float32)
    diff = np.abs(a16.astype(np.float32) - b16.astype(np.float32))
    return diff > np.maximum(ulp, atol)


def stock_mid_block(
    pipe, prompt, seed, steps, guidance, branch="cond", scheduler_uses_cfg=True, eta=0.0
):
    """Pooled ``mid_block`` output of every step of the stock pipeline for one prompt."""
    outs = []

    def hook(_module, _inputs, output):
        outs.append((output[0] if isinstance(output, tuple) else output).detach().clone())

    handle = pipe.unet.mid_block.register_forward_hook(hook)
    try:
        pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="latent",
            eta=eta,
        )
    finally:
        handle.remove()
    rows = []
    for out in outs:
        if scheduler_uses_cfg:
            assert out.shape[0] == 2, "the stock pipeline should have batched uncond and cond"
            out = out[1:] if branch == "cond" else out[:1]
        else:
            assert out.shape[0] == 1
        rows.append(out.float().mean(dim=(2, 3))[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_invariance(tiny_pipes, family):
    pipe = tiny_pipes(family)
    batched = _pooled(pipe, _settings(family, batch_size=len(SAMPLES)))
    singles = _pooled(pipe, _settings(family, batch_size=1))
    pairs = _pooled(pipe, _settings(family, batch_size=2))
    assert batched.shape == (len(SAMPLES), 3, 64)
    for other in (singles, pairs):
        np.testing.assert_allclose(batched, other, rtol=1e-4, atol=1e-5)
        assert not _fp16_ulps_apart(batched, other).any()
    # the same (prompt, seed) gives the same activations wherever it lands
    np.testing.assert_allclose(batched[0], batched[4], rtol=1e-4, atol=1e-5)
    # ... and different seeds / prompts give different ones
    assert np.abs(batched[0] - batched[2]).max() > 1e-3
    assert np.abs(batched[0] - batched[1]).max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic(tiny_pipes, family):
    pipe = tiny_pipes(family)
    a = _pooled(pipe, _settings(family))
    b = _pooled(pipe, _settings(family))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_with_stock_pipeline(tiny_pipes, family):
    """The activations equal those the stock pipeline computes for the same prompt and seed."""
    pipe = tiny_pipes(family)
    guidance = GUIDANCE[family]
    ours = _pooled(pipe, _settings(family))
    assert HSpaceExtractor(pipe, _settings(family)).cfg == (family != "lcm")
    if family == "lcm":
        assert type(pipe.scheduler).__name__ == "LCMScheduler"  # noise injected between steps
    for i, (prompt, seed) in enumerate(SAMPLES[:4]):
        ref = stock_mid_block(pipe, prompt, seed, 3, guidance, scheduler_uses_cfg=family != "lcm")
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=1e-5, err_msg=f"sample {i}")


def test_parity_without_guidance(tiny_pipes):
    pipe = tiny_pipes("sd1")
    ours = _pooled(pipe, _settings("sd1", guidance_scale=1.0), SAMPLES[:2])
    for i, (prompt, seed) in enumerate(SAMPLES[:2]):
        ref = stock_mid_block(pipe, prompt, seed, 3, 1.0, scheduler_uses_cfg=False)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=1e-5)


def test_parity_uncond_branch(tiny_pipes):
    pipe = tiny_pipes("sd2")
    settings = _settings("sd2", branch="uncond")
    ours = _pooled(pipe, settings, SAMPLES[:2])
    cond = _pooled(pipe, _settings("sd2"), SAMPLES[:2])
    assert np.abs(ours - cond).max() > 1e-3
    for i, (prompt, seed) in enumerate(SAMPLES[:2]):
        ref = stock_mid_block(pipe, prompt, seed, 3, 3.0, branch="uncond")
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("scheduler", "kwargs"),
    [
        # init_noise_sigma depends on the timesteps set for the run ("leading" spacing)
        ("EulerDiscreteScheduler", {"timestep_spacing": "leading"}),
        # stochastic: each sample must step with its own generator
        ("EulerAncestralDiscreteScheduler", {}),
        # multistep: history kept across the batch
        ("DPMSolverMultistepScheduler", {}),
    ],
)
def test_parity_with_swapped_scheduler(tiny_models, scheduler, kwargs):
    pipe = load_pipeline(
        str(tiny_models["sd1"]), device="cpu", scheduler=scheduler, scheduler_kwargs=kwargs
    )
    ours = _pooled(pipe, _settings("sd1", guidance_scale=1.0), SAMPLES[:3])
    singles = _pooled(pipe, _settings("sd1", guidance_scale=1.0, batch_size=1), SAMPLES[:3])
    np.testing.assert_allclose(ours, singles, rtol=1e-4, atol=1e-5)
    for i, (prompt, seed) in enumerate(SAMPLES[:3]):
        ref = stock_mid_block(pipe, prompt, seed, 3, 1.0, scheduler_uses_cfg=False)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=1e-5, err_msg=f"sample {i}")


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_batched_equals_the_stock_pipeline_per_sample(tiny_models, eta):
    """DDIM at eta 0 is stepped batched (it draws nothing); at eta > 0 each sample's noise
    comes from its own generator. Both equal the stock pipeline run one sample at a time."""
    pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu", scheduler="DDIMScheduler")
    ours = _pooled(pipe, _settings("sd1", guidance_scale=1.0, eta=eta), SAMPLES[:3])
    for i, (prompt, seed) in enumerate(SAMPLES[:3]):
        ref = stock_mid_block(pipe, prompt, seed, 3, 1.0, scheduler_uses_cfg=False, eta=eta)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=1e-5, err_msg=f"sample {i}")
    if eta:
        plain = _pooled(pipe, _settings("sd1", guidance_scale=1.0), SAMPLES[:3])
        assert not np.allclose(ours[:, 1:], plain[:, 1:], atol=1e-4), "eta must inject noise"


@pytest.mark.parametrize("family", ["sd1", "lcm"])
def test_early_stop(tiny_pipes, family):
    pipe = tiny_pipes(family)
    calls, finished = [], []
    handles = [
        pipe.unet.register_forward_pre_hook(lambda *_: calls.append(1)),
        pipe.unet.conv_out.register_forward_hook(lambda *_: finished.append(1)),
    ]
    try:
        ex = HSpaceExtractor(pipe, _settings(family, steps=4, keep_steps=(1,)))
        early = ex.run(SAMPLES[:3], progress=False)
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == 2, "steps 0 and 1 only: the loop must stop after the last kept step"
    assert len(finished) == 1, "the last kept step's forward must end at the tap"
    full = HSpaceExtractor(pipe, _settings(family, steps=4)).run(SAMPLES[:3], progress=False)
    assert early.step_indices.tolist() == [1]
    assert full.step_indices.tolist() == [0, 1, 2, 3]
    assert early.timesteps.tolist() == [full.timesteps[1]]
    assert early.data["mid_block"]["pooled"].shape == (3, 1, 64)
    np.testing.assert_array_equal(
        early.data["mid_block"]["pooled"][:, 0], full.data["mid_block"]["pooled"][:, 1]
    )
    timesteps = list(full.timesteps)
    assert timesteps == sorted(timesteps, reverse=True) and len(set(timesteps)) == 4


def test_keep_steps_subset_and_range(tiny_pipes):
    pipe = tiny_pipes("sd1")
    full = HSpaceExtractor(pipe, _settings("sd1", steps=4)).run(SAMPLES[:2], progress=False)
    some = HSpaceExtractor(pipe, _settings("sd1", steps=4, keep_steps=(3, 0))).run(
        SAMPLES[:2], progress=False
    )
    assert some.step_indices.tolist() == [0, 3]
    np.testing.assert_array_equal(
        some.data["mid_block"]["pooled"], full.data["mid_block"]["pooled"][:, [0, 3]]
    )
    with pytest.raises(ExtractionError, match="keep_steps"):
        HSpaceExtractor(pipe, _settings("sd1", steps=4, keep_steps=(4,)))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_store_pooled_and_full(tiny_pipes, family):
    pipe = tiny_pipes(family)
    acts = HSpaceExtractor(pipe, _settings(family, store=("pooled", "full"))).run(
        SAMPLES[:3], progress=False
    )
    pooled, full = acts.data["mid_block"]["pooled"], acts.data["mid_block"]["full"]
    # 16 px images, VAE factor 2 -> 8x8 latents -> 4x4 at the mid block
    assert pooled.shape == (3, 3, 64) and pooled.dtype == np.float32
    assert full.shape == (3, 3, 64, 4, 4) and full.dtype == np.float16
    np.testing.assert_allclose(
        full.astype(np.float32).mean(axis=(3, 4)), pooled, rtol=2e-3, atol=2e-3
    )
    only_pooled = _pooled(pipe, _settings(family), SAMPLES[:3])
    np.testing.assert_array_equal(only_pooled, pooled)


def test_other_taps(tiny_pipes):
    pipe = tiny_pipes("sd1")
    taps = ("mid_block", "down_blocks.1", "up_blocks.1.attentions.0")
    acts = HSpaceExtractor(pipe, _settings("sd1", taps=taps)).run(SAMPLES[:2], progress=False)
    assert set(acts.data) == set(taps)
    assert acts.data["down_blocks.1"]["pooled"].shape == (2, 3, 64)
    assert acts.data["up_blocks.1.attentions.0"]["pooled"].shape == (2, 3, 32)
    mid = _pooled(pipe, _settings("sd1"), SAMPLES[:2])
    np.testing.assert_array_equal(acts.data["mid_block"]["pooled"], mid)
    assert np.abs(acts.data["down_blocks.1"]["pooled"] - mid).max() > 1e-3

    # the down block's hidden states are the first element of its output tuple
    seen = []
    handle = pipe.unet.down_blocks[1].register_forward_hook(
        lambda _m, _i, out: seen.append(out[0].float().mean(dim=(2, 3)))
    )
    try:
        HSpaceExtractor(pipe, _settings("sd1", taps=("down_blocks.1",))).run(
            SAMPLES[:1], progress=False
        )
    finally:
        handle.remove()
    # the batch is padded to the batch size; with guidance the conditional half comes second
    cond = _settings("sd1").batch_size
    np.testing.assert_allclose(
        acts.data["down_blocks.1"]["pooled"][0, 0], seen[0][cond].numpy(), rtol=1e-4, atol=1e-5
    )


def test_unknown_tap(tiny_pipes):
    ex = HSpaceExtractor(tiny_pipes("sd1"), _settings("sd1", taps=("mid_blok",)))
    with pytest.raises(ExtractionError, match="mid_blok"):
        ex.run(SAMPLES[:1], progress=False)


def test_check_finite_names_prompt_and_seed(tiny_pipes):
    pipe = tiny_pipes("sd1")
    samples = SAMPLES[:3]
    acts = HSpaceExtractor(pipe, _settings("sd1")).run(samples, progress=False)
    check_finite(acts, samples)  # all finite: no error

    def poison(_module, _inputs, output):  # NaN into the cond half of sample 1 at every step
        output = output.clone()
        output[output.shape[0] // 2 + 1, 0, 0, 0] = float("nan")  # the batch is padded
        return output

    handle = pipe.unet.mid_block.register_forward_hook(poison)
    try:
        bad = HSpaceExtractor(pipe, _settings("sd1")).run(samples, progress=False)
    finally:
        handle.remove()
    pooled = bad.data["mid_block"]["pooled"]
    assert np.isnan(pooled[1]).any() and np.isfinite(pooled[[0, 2]]).all()
    with pytest.raises(ExtractionError) as info:
        check_finite(bad, samples)
    message = str(info.value)
    assert repr(samples[1][0]) in message and "seed 1" in message and "mid_block" in message

    synthetic = Activations(
        np.array([10]), np.array([0]), {"t": {"full": np.zeros((3, 1, 2, 2, 2), np.float16)}}
    )
    synthetic.data["t"]["full"][2, 0, 1, 1, 1] = np.inf
    with pytest.raises(ExtractionError, match="'a portrait of a nurse'.*seed 3"):
        check_finite(synthetic, [("x", 0), ("y", 1), ("a portrait of a nurse", 3)])


@pytest.mark.parametrize(("family", "guidance"), [("sd1", 1.0), ("lcm", 3.0)])
def test_uncond_branch_needs_cfg(tiny_pipes, family, guidance):
    with pytest.raises(ExtractionError, match="uncond"):
        HSpaceExtractor(
            tiny_pipes(family), _settings(family, guidance_scale=guidance, branch="uncond")
        )
    with pytest.raises(ExtractionError, match="branch"):
        HSpaceExtractor(tiny_pipes(family), _settings(family, branch="both"))


def test_bad_size_and_empty_samples(tiny_pipes):
    pipe = tiny_pipes("sd1")
    with pytest.raises(ExtractionError, match="multiples of 2"):
        HSpaceExtractor(pipe, _settings("sd1", height=17))
    ex = HSpaceExtractor(pipe, _settings("sd1", height=24, width=32))
    acts = ex.run(SAMPLES[:1], progress=False)
    assert acts.data["mid_block"]["pooled"].shape == (1, 3, 64)
    with pytest.raises(ExtractionError, match="nothing to extract"):
        ex.run([], progress=False)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_prompts_encoded_once_and_together(tiny_pipes, guidance):
    """Each distinct prompt is a row of one text-encoder call, once per run: a batch's new
    prompts share a call; under CFG the negative prompt is encoded once, with the first."""
    pipe = tiny_pipes("sd1")
    rows = []
    handle = pipe.text_encoder.register_forward_hook(lambda _m, args, _o: rows.append(len(args[0])))
    try:
        ex = HSpaceExtractor(pipe, _settings("sd1", guidance_scale=guidance, batch_size=4))
        ex.run(SAMPLES, progress=False)
        ex.run(SAMPLES[:2], progress=False)
    finally:
        handle.remove()
    distinct = len({p for p, _ in SAMPLES})
    assert sum(rows) == distinct + (guidance > 1)
    assert max(rows) > 1, "new prompts of a batch must share a text-encoder call"


def test_out_of_memory_lowers_the_batch_and_keeps_every_sample(tiny_pipes, monkeypatch):
    """A batch that does not fit is redone smaller: no sample is lost or repeated."""
    import torch
    from scalex.extract import HSpaceExtractor, SamplingSettings

    pipe = tiny_pipes("sd1")
    samples = [(f"a photo of a thing{i % 3}", i) for i in range(11)]
    reference = HSpaceExtractor(
        pipe, SamplingSettings(steps=3, batch_size=1, readouts=("prompt",))
    ).run(samples, progress=False)
    extractor = HSpaceExtractor(pipe, SamplingSettings(steps=3, batch_size=8, readouts=("prompt",)))
    real = extractor.run_batch
    seen: list[int] = []

    def run_batch(prompts, seeds):
        seen.append(len(prompts))
        if len(prompts) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(prompts, seeds)

    monkeypatch.setattr(extractor, "run_batch", run_batch)
    acts = extractor.run(samples, progress=False)
    assert seen[:3] == [8, 4, 2]
    assert extractor.batch_size_used == 2
    got, want = acts.data["mid_block"]["pooled"], reference.data["mid_block"]["pooled"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_out_of_memory_at_batch_one_names_the_settings(tiny_pipes, monkeypatch):
    import torch
    from scalex.extract import ExtractionError, HSpaceExtractor, SamplingSettings

    extractor = HSpaceExtractor(
        tiny_pipes("sd1"), SamplingSettings(steps=2, batch_size=2, readouts=("prompt",))
    )

    def run_batch(prompts, seeds):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(extractor, "run_batch", run_batch)
    with pytest.raises(ExtractionError, match="batch size 1"):
        extractor.run([("a photo of a cat", 0), ("a photo of a dog", 1)], progress=False)


def test_compile_equals_eager_within_float16_storage(tiny_models):
    """``compile``: the repeated blocks are compiled, a block holding a tap stays eager (its hook
    stops the forward), and every readout equals eager within float16 storage."""
    eager_pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu")
    pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu")  # compiled in place
    taps = ("mid_block", "up_blocks.1.attentions.0")
    # without guidance both forwards of a step have one batch shape: one graph per block
    kw = {"taps": taps, "readouts": ("content", "prompt"), "content_prompt": "a photo"}
    kw["guidance_scale"] = 1.0
    compiled = HSpaceExtractor(pipe, _settings("sd1", compile=True, **kw))
    assert {"down_blocks.0.resnets.0", "mid_block.resnets.0"} <= set(compiled.compiled)
    assert taps[1] not in compiled.compiled  # a tap: its hook stops the forward
    eager = HSpaceExtractor(eager_pipe, _settings("sd1", **kw)).run_all(SAMPLES, progress=False)
    for readout, acts in compiled.run_all(SAMPLES, progress=False).items():
        for tap in taps:
            got, want = acts.data[tap]["pooled"], eager[readout].data[tap]["pooled"]
            assert got.shape == want.shape
            assert not _fp16_ulps_apart(got, want).any(), (readout, tap)
    assert not any(m._compiled_call_impl for m in eager_pipe.unet.modules())
