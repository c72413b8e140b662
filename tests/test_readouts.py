"""The content readout and the text-encoder control against manual computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES
from scalex.extract import ExtractionError, HSpaceExtractor, SamplingSettings

CONTENT = "a photo of a person"
SAMPLES = [
    ("a photo of a doctor", 0),
    ("a photo of an engineer", 1),
    ("a photo of a doctor", 2),
    ("a portrait of a nurse", 0),
]


def _settings(family, **kw):
    base = {
        "steps": 3,
        "guidance_scale": 3.0,
        "device": "cpu",
        "batch_size": 8,
        "readouts": ("content", "prompt", "text"),
        "content_prompt": CONTENT,
    }
    return SamplingSettings(**(base | kw))


def _manual_content(pipe, prompt, seed, steps, guidance, step):
    """Stock pipeline up to ``step``, then one UNet call on its latent under ``CONTENT``."""
    grabbed = {}

    def keep(_pipe, i, _t, kwargs):
        if i == step - 1:
            grabbed["latents"] = kwargs["latents"].clone()
        return kwargs

    pipe(
        prompt,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
        callback_on_step_end=keep,
    )
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    t = sched.timesteps[step]
    is_xl = getattr(pipe, "text_encoder_2", None) is not None
    kwargs = {}
    with torch.no_grad():
        if is_xl:
            embeds, _, pooled, _ = pipe.encode_prompt(CONTENT, device="cpu")
            size = (pipe.unet.config.sample_size * pipe.vae_scale_factor,) * 2
            time_ids = pipe._get_add_time_ids(
                size,
                (0, 0),
                size,
                dtype=embeds.dtype,
                text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim,
            )
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        else:
            embeds, _ = pipe.encode_prompt(CONTENT, "cpu", 1, False)
        if pipe.unet.config.get("time_cond_proj_dim") is not None:
            w = torch.tensor([guidance - 1.0])
            kwargs["timestep_cond"] = pipe.get_guidance_scale_embedding(
                w, embedding_dim=pipe.unet.config.time_cond_proj_dim
            )
        seen = []
        hook = pipe.unet.mid_block.register_forward_hook(lambda m, i, o: seen.append(o))
        try:
            pipe.unet(
                sched.scale_model_input(grabbed["latents"], t),
                t,
                encoder_hidden_states=embeds,
                **kwargs,
            )
        finally:
            hook.remove()
    return seen[0].float().mean(dim=(2, 3))[0].numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_content_readout_equals_manual_computation(tiny_pipes, family):
    pipe = tiny_pipes(family)
    ex = HSpaceExtractor(pipe, _settings(family))
    acts = ex.run_all(SAMPLES[:2], progress=False)
    content = acts["content"]
    assert content.step_indices.tolist() == [1, 2]  # step 0 is the seed's noise for every prompt
    for j, (prompt, seed) in enumerate(SAMPLES[:2]):
        for k, step in enumerate((1, 2)):
            want = _manual_content(pipe, prompt, seed, 3, 3.0, step)
            got = content.data["mid_block"]["pooled"][j, k]
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_content_readout_differs_from_prompt_readout_and_pairs_by_seed(tiny_pipes):
    pipe = tiny_pipes("sd1")
    acts = HSpaceExtractor(pipe, _settings("sd1")).run_all(SAMPLES, progress=False)
    content = acts["content"].data["mid_block"]["pooled"]
    prompt = acts["prompt"].data["mid_block"]["pooled"][:, 1:]
    assert np.abs(content - prompt).max() > 1e-3  # the text conditioning differs
    # same seed, other prompt: different trajectories, so different content (not zero)
    assert np.abs(content[0] - content[3]).max() > 1e-5


@pytest.mark.parametrize("family", ["sd1", "lcm"])
def test_content_readout_batch_invariance(tiny_pipes, family):
    pipe = tiny_pipes(family)
    big = HSpaceExtractor(pipe, _settings(family, batch_size=4)).run_all(SAMPLES, progress=False)
    one = HSpaceExtractor(pipe, _settings(family, batch_size=1)).run_all(SAMPLES, progress=False)
    for r in ("content", "prompt", "text"):
        a, b = big[r].data, one[r].data
        tap = next(iter(a))
        np.testing.assert_allclose(a[tap]["pooled"], b[tap]["pooled"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_control_is_the_text_conditioning_alone(tiny_pipes, family):
    """The text readout equals encode_prompt's token states, needs no UNet, ignores seeds."""
    pipe = tiny_pipes(family)
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        ex = HSpaceExtractor(pipe, _settings(family, readouts=("text",), store=("pooled", "full")))
        acts = ex.run_all(SAMPLES, progress=False)["text"]
    finally:
        hook.remove()
    assert calls == []
    pooled, full = acts.data["text_encoder"]["pooled"], acts.data["text_encoder"]["full"]
    np.testing.assert_array_equal(pooled[0], pooled[2])  # same prompt, other seed
    with torch.no_grad():
        if family == "sdxl":
            embeds = pipe.encode_prompt(SAMPLES[3][0], device="cpu")[0]
        else:
            embeds = pipe.encode_prompt(SAMPLES[3][0], "cpu", 1, False)[0]
    want = embeds[0].float().numpy()  # (tokens, channels)
    np.testing.assert_allclose(pooled[3, 0], want.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        full[3, 0, :, :, 0], want.T.astype(np.float16).astype(np.float32), rtol=1e-3, atol=1e-3
    )


def test_content_only_stops_early(tiny_pipes):
    """Content alone at step 1 costs one trajectory forward and one readout forward, which
    ends at the tap; with the prompt readout too, step 1's trajectory forward ends there too."""
    pipe = tiny_pipes("sd1")
    calls, finished = [], []
    hook = pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    tail = pipe.unet.conv_out.register_forward_hook(lambda *a: finished.append(1))
    try:
        s = _settings("sd1", steps=4, keep_steps=(1,), readouts=("content",))
        HSpaceExtractor(pipe, s).run_all(SAMPLES[:1], progress=False)
        assert len(calls) == 2 and len(finished) == 1
        calls.clear()
        finished.clear()
        s = _settings("sd1", steps=4, keep_steps=(1,), readouts=("content", "prompt"))
        HSpaceExtractor(pipe, s).run_all(SAMPLES[:1], progress=False)
        assert len(calls) == 3 and len(finished) == 1
    finally:
        hook.remove()
        tail.remove()


def test_bad_readouts_are_refused(tiny_pipes):
    pipe = tiny_pipes("sd1")
    with pytest.raises(ExtractionError, match="readouts"):
        HSpaceExtractor(pipe, _settings("sd1", readouts=("contents",)))
    with pytest.raises(ExtractionError, match="step 0"):
        HSpaceExtractor(pipe, _settings("sd1", keep_steps=(0,), readouts=("content",)))
