"""Model loading and family detection on tiny random pipelines of every family."""

from __future__ import annotations

import shutil

import pytest
import torch
from scalex.config import extraction_settings, validate_config
from scalex.models import (
    ModelError,
    check_model_source,
    detect_family,
    load_model,
    load_pipeline,
    resolve_device,
)

EXPECTED = {
    "sd1": ("sd1", "sd1", "StableDiffusionPipeline", "epsilon"),
    "sd2": ("sd2", "sd2", "StableDiffusionPipeline", "v_prediction"),
    "sdxl": ("sdxl", "sdxl", "StableDiffusionXLPipeline", "epsilon"),
    "lcm": ("lcm", "sd1", "LatentConsistencyModelPipeline", "epsilon"),
}


@pytest.mark.parametrize("family", list(EXPECTED))
def test_detect_family(tiny_models, tiny_pipes, family):
    folder = str(tiny_models[family])
    pipe = tiny_pipes(family)
    info = detect_family(pipe, folder)
    assert (info.family, info.architecture, info.pipeline_class, info.prediction_type) == (
        EXPECTED[family]
    )
    assert info.model_id == folder
    assert info.sample_size == 8 and info.vae_scale_factor == 2
    assert pipe.unet.device.type == "cpu" and pipe.unet.dtype == torch.float32
    assert not pipe.unet.training
    assert not any(p.requires_grad for p in pipe.unet.parameters())


def test_scheduler_swap_makes_lcm(tiny_models):
    pipe = load_pipeline(str(tiny_models["sd1"]), device="cpu", scheduler="LCMScheduler")
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    # training-time settings of the model's own scheduler carry over
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    info = detect_family(pipe, str(tiny_models["sd1"]))
    assert (info.family, info.architecture) == ("lcm", "sd1")


def test_scheduler_kwargs_and_unknown_scheduler(tiny_models):
    pipe = load_pipeline(
        str(tiny_models["sd1"]),
        device="cpu",
        scheduler="EulerDiscreteScheduler",
        scheduler_kwargs={"timestep_spacing": "trailing"},
    )
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    with pytest.raises(ModelError, match="NoSuchScheduler"):
        load_pipeline(str(tiny_models["sd1"]), device="cpu", scheduler="NoSuchScheduler")


def test_dtype(tiny_models):
    pipe = load_pipeline(str(tiny_models["sd2"]), device="cpu", dtype="bfloat16")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match="does not exist") as info:
        load_pipeline(str(missing), device="cpu")
    assert str(missing) in str(info.value)
    with pytest.raises(ModelError, match="does not exist"):
        check_model_source("./relative/missing-model")


def test_folder_without_model_index_names_the_path(tmp_path, tiny_models):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["sd1"], broken)
    (broken / "model_index.json").unlink()
    with pytest.raises(ModelError, match="model_index.json") as info:
        load_pipeline(str(broken), device="cpu")
    assert str(broken) in str(info.value)


def test_unloadable_folder_names_the_path(tmp_path, tiny_models):
    broken = tmp_path / "no-unet-weights"
    shutil.copytree(tiny_models["sd1"], broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelError) as info:
        load_pipeline(str(broken), device="cpu")
    assert str(broken) in str(info.value)


def test_hub_ids_are_not_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert check_model_source("runwayml/stable-diffusion-v1-5") is None
    # offline, a hub id must already be in the local cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="scalex-test/not-cached"):
        check_model_source("scalex-test/not-cached")


def test_uncached_hub_id_fails_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError, match="scalex-test/does-not-exist"):
        load_pipeline("scalex-test/does-not-exist", device="cpu")


def _settings(model_id, family):
    cfg = validate_config(
        {
            "model": {"id": str(model_id), "family": family},
            "concepts": {"sheets": [__file__]},
            "sampling": {"device": "cpu"},
        }
    )
    return extraction_settings(cfg)


def test_load_model_checks_family(tiny_models):
    pipe, info = load_model(_settings(tiny_models["sdxl"], "sdxl"), {"device": "cpu"})
    assert info.family == "sdxl" and type(pipe).__name__ == "StableDiffusionXLPipeline"
    _, info = load_model(_settings(tiny_models["lcm"], "auto"), {"device": "cpu"})
    assert info.family == "lcm"
    with pytest.raises(ModelError, match="model.family is 'sd2'") as err:
        load_model(_settings(tiny_models["sd1"], "sd2"), {"device": "cpu"})
    assert "'sd1'" in str(err.value) and str(tiny_models["sd1"]) in str(err.value)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():  # pragma: no cover - this suite runs on CPU machines
        pytest.skip("CUDA is available here")
    assert resolve_device("auto").type in {"cpu", "mps"}
    with pytest.raises(ModelError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ModelError, match="cuda:1"):
        resolve_device("cuda:1")
