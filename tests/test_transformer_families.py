"""SD3, Flux and PixArt through their family adapters, against their stock diffusers pipelines.

Tiny random-weight models of each architecture (``tests/random_models.py``), saved and loaded
back like a user's model: a (prompt, seed) sample's H-space equals what a hook on the stock
pipeline's block sees, in any batch, and every readout, steering and projection runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from random_models import TRANSFORMER_FAMILIES, save_random_pipeline
from scalex.config import check_model_settings
from scalex.errors import ConfigError
from scalex.extract import HSpaceExtractor, SamplingSettings
from scalex.families import ADAPTERS, adapter_class
from scalex.layout import TEXT_TAP
from scalex.models import detect_family, load_pipeline

SIZE = 32  # px: a 16x16 latent, an 8x8 token grid
GUIDANCE = {"sd3": 3.0, "flux": 3.5, "pixart": 3.0}
SAMPLES = [
    ("a photo of a doctor", 0),
    ("a photo of an engineer", 1),
    ("a photo of a doctor", 2),
    ("a portrait of a nurse", 3),
    ("a photo of a doctor", 0),
]
#: the middle block each tiny model's ``mid_block`` names (blocks[len // 2])
MIDDLE = {
    "sd3": "transformer_blocks.1",
    "flux": "single_transformer_blocks.0",
    "pixart": "transformer_blocks.1",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-transformers")
    return {fam: save_random_pipeline(fam, root / fam) for fam in TRANSFORMER_FAMILIES}


@pytest.fixture(scope="module")
def pipes(models):
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = load_pipeline(str(models[family]), device="cpu")
        return cache[family]

    return get


def _settings(family, **kw):
    base = {
        "steps": 3,
        "guidance_scale": GUIDANCE[family],
        "device": "cpu",
        "batch_size": 8,
        "height": SIZE,
        "width": SIZE,
        "readouts": ("prompt",),
    }
    return SamplingSettings(**(base | kw))


def _pooled(pipe, settings, samples=SAMPLES, tap="mid_block"):
    return HSpaceExtractor(pipe, settings).run(samples, progress=False).data[tap]["pooled"]


def stock_block(pipe, family, module, prompt, seed, steps, guidance):
    """Pooled image tokens of ``module`` at every step of the stock pipeline for one prompt."""
    outs = []

    def hook(_module, _inputs, output):
        image = output[1] if isinstance(output, tuple) else output
        outs.append(image.detach().float().mean(dim=1))

    extra = {"use_resolution_binning": False} if family == "pixart" else {}
    handle = pipe.transformer.get_submodule(module).register_forward_hook(hook)
    try:
        pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=SIZE,
            width=SIZE,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="latent",
            **extra,
        )
    finally:
        handle.remove()
    cfg = family != "flux" and guidance > 1
    return np.stack([(o[1] if cfg else o[0]).numpy() for o in outs])


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_detection_and_middle_block(models, pipes, family):
    pipe = pipes(family)
    info = detect_family(pipe, str(models[family]))
    assert info.family == info.architecture == family
    assert adapter_class(pipe) is ADAPTERS[family]
    adapter = adapter_class(pipe)(pipe, torch.device("cpu"), height=SIZE, width=SIZE)
    assert adapter.module_name("mid_block") == MIDDLE[family]
    assert adapter.module_name("transformer_blocks.0") == "transformer_blocks.0"
    assert not pipe.transformer.training


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_parity_with_stock_pipeline(pipes, family):
    """Each sample's H-space at the middle block and at the first block equals the stock
    pipeline's for the same prompt and seed (noise drawn and, for Flux, packed as it does)."""
    pipe = pipes(family)
    guidance = GUIDANCE[family]
    taps = ("mid_block", "transformer_blocks.0")
    ext = HSpaceExtractor(pipe, _settings(family, taps=taps))
    assert ext.cfg == (family != "flux")
    acts = ext.run(SAMPLES, progress=False)
    adapter = ext.family
    for tap in taps:
        ours = acts.data[tap]["pooled"]
        assert ours.shape[:2] == (len(SAMPLES), 3)
        for i, (prompt, seed) in enumerate(SAMPLES[:4]):
            ref = stock_block(pipe, family, adapter.module_name(tap), prompt, seed, 3, guidance)
            np.testing.assert_allclose(
                ours[i], ref, rtol=1e-4, atol=1e-5, err_msg=f"{tap} sample {i}"
            )


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_batch_invariance_and_full_maps(pipes, family):
    pipe = pipes(family)
    batched = HSpaceExtractor(pipe, _settings(family, store=("pooled", "full"))).run(
        SAMPLES, progress=False
    )
    singles = _pooled(pipe, _settings(family, batch_size=1))
    pooled, full = batched.data["mid_block"]["pooled"], batched.data["mid_block"]["full"]
    np.testing.assert_allclose(pooled, singles, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled[0], pooled[4], rtol=1e-4, atol=1e-5)
    assert np.abs(pooled[0] - pooled[2]).max() > 1e-4  # seeds differ
    # the full store is the token grid as a map: (N, T, C, h, w), its mean the pooled value
    assert full.shape[:2] == (len(SAMPLES), 3) and full.shape[-2:] == (8, 8)
    np.testing.assert_allclose(
        full.astype(np.float32).mean(axis=(3, 4)), pooled, rtol=2e-2, atol=2e-3
    )


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_content_and_text_readouts(pipes, family):
    pipe = pipes(family)
    settings = _settings(
        family, readouts=("prompt", "content", "text"), content_prompt="a photo of a person"
    )
    acts = HSpaceExtractor(pipe, settings).run_all(SAMPLES, progress=False)
    content = acts["content"].data["mid_block"]["pooled"]
    assert content.shape[:2] == (len(SAMPLES), 2)  # step 0 is the seed's noise for every prompt
    # same seed, other prompt: the trajectories differ only through the prompt (seed 0 twice)
    np.testing.assert_allclose(content[0], content[4], rtol=1e-4, atol=1e-5)
    text = acts["text"].data[TEXT_TAP]["pooled"][:, 0]
    # the text control depends on the prompt only
    np.testing.assert_allclose(text[0], text[2], rtol=1e-5, atol=1e-6)
    assert np.abs(text[0] - text[1]).max() > 1e-4
    widths = {"sd3": 64 + 64, "flux": 64 + 32, "pixart": 64}  # T5 (+ the pooled CLIP)
    assert text.shape[1] == widths[family]


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_steering_zero_is_the_stock_image_and_a_push_changes_it(pipes, family):
    from scalex.conditioning import steer

    pipe = pipes(family)
    adapter = adapter_class(pipe)(pipe, torch.device("cpu"), height=SIZE, width=SIZE)
    width = pipe.transformer.get_submodule(adapter.module_name("mid_block"))
    channels = _pooled(pipe, _settings(family), SAMPLES[:1]).shape[-1]
    assert width is not None
    direction = np.random.default_rng(0).standard_normal(channels).astype(np.float32)
    kwargs = {"num_inference_steps": 2, "guidance_scale": GUIDANCE[family], "height": SIZE}
    images = steer(pipe, "a photo of a doctor", direction, [0.0, 5.0], [0, 1], width=SIZE, **kwargs)
    assert images.shape == (2, 2, SIZE, SIZE, 3)
    extra = {"use_resolution_binning": False} if family == "pixart" else {}
    stock = pipe(
        "a photo of a doctor",
        num_inference_steps=2,
        guidance_scale=GUIDANCE[family],
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(1),
        output_type="np",
        **extra,
    ).images[0]
    np.testing.assert_allclose(images[0, 1], stock, atol=1e-5)
    assert np.abs(images[1] - images[0]).max() > 1e-3


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_projection_scores_images(pipes, family):
    from scalex.conditioning import project_images

    pipe = pipes(family)
    channels = _pooled(pipe, _settings(family), SAMPLES[:1]).shape[-1]
    images = np.random.default_rng(1).uniform(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    directions = np.random.default_rng(2).standard_normal((2, channels))
    scores = project_images(
        pipe, images, directions, step_indices=[0, 1], num_inference_steps=3, batch_size=2
    )
    assert scores.shape == (3, 2, 2) and np.isfinite(scores).all()
    single = project_images(
        pipe, images[1:2], directions, step_indices=[0, 1], num_inference_steps=3
    )
    np.testing.assert_allclose(scores[1], single[0], rtol=1e-4, atol=1e-5)
    assert np.abs(scores[0] - scores[1]).max() > 1e-5  # images differ


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_config_checks_name_the_transformer_blocks(models, family):
    from scalex.config import validate_config

    folder = models[family]
    cfg = validate_config({"model": {"id": str(folder)}, "concepts": {"sheets": [__file__]}})
    cfg["extraction"]["taps"] = ["mid_block", "transformer_blocks.1"]
    check_model_settings(cfg, folder)
    cfg["extraction"]["taps"] = ["down_blocks.0"]
    with pytest.raises(ConfigError, match="extraction.taps: the transformer has no block"):
        check_model_settings(cfg, folder)
    cfg["extraction"]["taps"] = ["mid_block"]
    cfg["sampling"]["height"] = 34  # not a multiple of VAE scale x patch (2 x 2)
    with pytest.raises(ConfigError, match="sampling.height 34 must be a multiple of 4"):
        check_model_settings(cfg, folder)


@pytest.mark.slow
def test_workflow_runs_on_every_transformer_family_and_the_dit_world(models, tmp_path):
    """The Snakemake workflow end to end, concurrently, on the tiny SD3, Flux and PixArt models
    and on the committed DiT world as its shipped config names it: every readout's similarity
    and clusters, shards that name the family and hold the middle block's pooled image tokens,
    and the world's findings, labelled not validated."""
    import subprocess

    import h5py
    import pandas as pd
    import yaml
    from conftest import CONCEPT_ROWS, ROOT, workflow_config, write_sheet
    from scalex import layout
    from scalex.config import results_tree, validate_config
    from test_workflow import ENV, core_targets, snakemake_command, tree_of

    world_name = "stereotyped-dit"
    world = yaml.safe_load((ROOT / "config" / "models" / f"{world_name}.yaml").read_text())
    cases = {  # name: (family, model, overrides)
        fam: (
            fam,
            models[fam],
            {"sampling": {"guidance_scale": GUIDANCE[fam], "height": SIZE, "width": SIZE}},
        )
        for fam in TRANSFORMER_FAMILIES
    }
    # the world's run also writes its findings: gender shares from descriptor votes
    descriptors = {"targets": ["professions"], "axes": {"gender": ["female", "male"]}}
    cases[world_name] = (
        "pixart",
        ROOT / world["model"]["id"],
        {"sampling": {"guidance_scale": 2.0}, "concepts": {"descriptors": descriptors}},
    )
    runs = {}
    for name, (_, model, overrides) in cases.items():
        workdir = tmp_path / name
        sheet = write_sheet(workdir / "concepts.tsv", CONCEPT_ROWS)
        cfg = workflow_config(model, sheet.resolve(), extraction={"buckets": 1}, **overrides)
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = (workdir / "snakemake.out").open("w")
        targets = core_targets(config)
        if name == world_name:
            targets.append(layout.path("findings", tree_of(config)))
        cmd = snakemake_command(workdir, config, targets=targets)
        runs[name] = (
            workdir,
            config,
            subprocess.Popen(cmd, cwd=workdir, env=ENV, stdout=log, stderr=subprocess.STDOUT),
            log,
        )
    for _, _, proc, log in runs.values():
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    for name, (workdir, config, proc, _) in runs.items():
        family = cases[name][0]
        out = (workdir / "snakemake.out").read_text()
        assert proc.returncode == 0, f"snakemake failed for {name}:\n{out[-6000:]}"
        cfg = validate_config(yaml.safe_load(config.read_text()))
        tree = workdir / results_tree(cfg)
        assert tree.name.startswith(name)
        for readout in ("prompt", "content", "text"):
            assert (tree / readout / "similarity" / "similarity.tsv").is_file()
            assert (tree / readout / "clusters" / "raw" / "clusters.tsv").is_file()
        with h5py.File(tree / "activations" / "baseline.h5") as f:
            assert f.attrs["family"] == family and f.attrs["complete"]
            assert bool(f.attrs["classifier_free_guidance"]) == (family != "flux")
            timesteps = list(f.attrs["timesteps"])
            assert timesteps[0] > timesteps[1] >= 0
            pooled = f["concepts/baseline/prompt/mid_block/pooled"]
            assert pooled.shape[:3] == (1, 2, 2)  # prompts, seeds, steps
    # a transformer's findings are labelled not validated (the readout missed its targets)
    world_config = runs[world_name][1]
    findings = pd.read_csv(
        tmp_path / world_name / layout.path("findings", tree_of(world_config)), sep="\t"
    )
    assert set(findings["concept"]) == {"doctor", "nurse", "engineer"}
    assert (findings["readout"] == "content").all() and not findings["validated"].any()


def test_the_denoiser_is_known_before_the_model_loads(models, tmp_path):
    """Which denoiser a model has (so whether its findings are validated), torch-free, from
    ``model.family`` or the folder's ``model_index.json``."""
    from conftest import ROOT
    from scalex.model_checks import TRANSFORMER_FAMILIES as NAMED
    from scalex.model_checks import denoiser_kind

    assert set(NAMED) == {n for n, a in ADAPTERS.items() if a.denoiser_attr == "transformer"}
    for family, folder in models.items():
        assert denoiser_kind({"id": str(folder), "family": "auto"}, folder) == "transformer"
        assert denoiser_kind({"id": "any/id", "family": family}, None) == "transformer"
    worlds = ROOT / "resources" / "worlds"
    for world, denoiser in (("stereotyped", "unet"), ("stereotyped-dit", "transformer")):
        folder = worlds / world / "model"
        assert denoiser_kind({"id": str(folder), "family": "auto"}, folder) == denoiser
    assert denoiser_kind({"id": "any/id", "family": "sdxl"}, None) == "unet"
    (tmp_path / "model_index.json").write_text('{"_class_name": "SomePipeline"}')
    assert denoiser_kind({"id": str(tmp_path), "family": "auto"}, tmp_path) == "unknown"


def test_a_hub_models_denoiser_is_read_from_the_local_cache(models, tmp_path, monkeypatch):
    """A hub id: its cached ``model_index.json`` decides; not cached and offline: unknown."""
    import huggingface_hub
    from scalex.model_checks import denoiser_kind

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--someone--tiny-flux"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "model_index.json").write_text((models["flux"] / "model_index.json").read_text())
    assert denoiser_kind({"id": "someone/tiny-flux", "family": "auto"}, None) == "transformer"
    assert denoiser_kind({"id": "someone/not-cached", "family": "auto"}, None) == "unknown"


@pytest.mark.parametrize(
    ("name", "family"),
    [("sd35-medium", "sd3"), ("flux-schnell", "flux"), ("pixart-sigma", "pixart")],
)
def test_ready_made_configs_validate_with_a_local_model_in_place(models, tmp_path, name, family):
    """The shipped transformer configs, with the tiny model of their family in place of the hub
    id, pass every check the workflow makes before its DAG."""
    import yaml
    from conftest import ROOT
    from scalex.config import load_configs

    override = tmp_path / "model.yaml"
    override.write_text(yaml.safe_dump({"model": {"id": str(models[family])}}))
    shipped = ROOT / "config" / "models"
    cfg = load_configs([shipped / "common-sd.yaml", shipped / f"{name}.yaml", override], base=ROOT)
    assert cfg["model"]["family"] == family
    check_model_settings(cfg, models[family])


def test_stream_reads_and_writes_the_image_tokens_as_a_map():
    from scalex.errors import ExtractionError
    from scalex.hooks import Stream

    tokens = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # N, L = 2 x 3, C
    text = torch.zeros(2, 4, 3)
    stream = Stream(index=1, grid=(2, 3))
    state = stream.read((text, tokens))
    assert state.shape == (2, 3, 2, 3)
    # row-major token order: token (row 1, column 2) is token 5
    torch.testing.assert_close(state[:, :, 1, 2], tokens[:, 5])
    out = stream.write((text, tokens), state + 1.0)
    assert out[0] is text  # the text stream passes through
    torch.testing.assert_close(out[1], tokens + 1.0)
    # a plain tensor output (PixArt's blocks) and a UNet block's tuple
    torch.testing.assert_close(Stream(grid=(2, 3)).write(tokens, state), tokens)
    unet_out = (torch.ones(1, 3, 2, 2), "rest")
    assert Stream().write(unet_out, torch.zeros(1, 3, 2, 2))[1] == "rest"
    with pytest.raises(ExtractionError, match="6 image tokens, not the 2x2 patch grid"):
        Stream(index=1, grid=(2, 2)).read((text, tokens))


def test_unsupported_transformer_pipeline_is_refused_by_name():
    from scalex.errors import ModelError
    from scalex.families import architecture

    class SanaPipeline:
        transformer = object()

    with pytest.raises(ModelError, match="SanaPipeline has no UNet and is not a supported"):
        architecture(SanaPipeline())


def test_pixart_alpha_resolution_conditioning_and_binning_as_the_stock_pipeline():
    """PixArt-alpha at its 1024 px size (``sample_size`` 128) conditions on the resolution and
    aspect ratio, and snaps the requested size to its aspect-ratio bins: a non-square request is
    sampled at the bin's size, and the H-space equals the stock pipeline's."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        PixArtAlphaPipeline,
    )
    from random_models import _t5_text, _tokenizer, pixart_transformer

    torch.manual_seed(0)
    transformer = pixart_transformer(sample_size=128, patch_size=8, num_layers=2)
    assert transformer.use_additional_conditions
    vae = AutoencoderKL(  # scale 8, as PixArt's: a 1024 px image is a 128 x 128 latent
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
    )
    pipe = PixArtAlphaPipeline(
        tokenizer=_tokenizer(),
        text_encoder=_t5_text(),
        vae=vae,
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.transformer, pipe.vae, pipe.text_encoder):
        part.eval()  # no dropout: built in memory, not loaded
    settings = SamplingSettings(
        steps=2, guidance_scale=2.0, device="cpu", height=1000, width=1000, readouts=("prompt",)
    )
    ext = HSpaceExtractor(pipe, settings)
    binned = (ext.height, ext.width)
    assert binned == (1024, 1024)  # the 1.0 bin
    kwargs = ext.family.conditioning(["a photo of a doctor"])
    resolution = kwargs["added_cond_kwargs"]["resolution"]
    assert resolution.tolist() == [[float(binned[0]), float(binned[1])]] * 2  # uncond, cond
    ours = ext.run([("a photo of a doctor", 0)], progress=False).data["mid_block"]["pooled"][0]
    outs = []
    module = pipe.transformer.get_submodule(ext.family.module_name("mid_block"))
    handle = module.register_forward_hook(lambda _m, _i, o: outs.append(o[1].float().mean(0)))
    try:
        pipe(
            "a photo of a doctor",
            num_inference_steps=2,
            guidance_scale=2.0,
            height=1000,
            width=1000,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="latent",
        )
    finally:
        handle.remove()
    np.testing.assert_allclose(ours, torch.stack(outs).numpy(), rtol=1e-4, atol=1e-5)


def test_flux_schnell_shape_without_guidance_embedding_matches_the_stock_pipeline():
    """FLUX.1-schnell has no guidance embedding: the guidance scale changes nothing, as in the
    stock pipeline, and the H-space still equals the stock pipeline's."""
    from random_models import build_transformer_pipeline

    torch.manual_seed(0)
    pipe = build_transformer_pipeline("flux", guidance_embeds=False)
    for part in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        part.eval()
    pipe.set_progress_bar_config(disable=True)
    samples = SAMPLES[:2]
    ours = _pooled(pipe, _settings("flux", guidance_scale=0.0), samples)
    other_scale = _pooled(pipe, _settings("flux", guidance_scale=7.0), samples)
    np.testing.assert_array_equal(ours, other_scale)
    for i, (prompt, seed) in enumerate(samples):
        ref = stock_block(pipe, "flux", MIDDLE["flux"], prompt, seed, 3, 0.0)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4, atol=1e-5)
