"""Model loading and family detection on tiny random pipelines of every family."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from scalex.config import check_model_settings, extraction_settings, validate_config
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
    # one detection: the extractor's adapter follows the architecture detect_family reports
    from scalex.families import ADAPTERS, FamilyAdapter, adapter_class

    assert adapter_class(pipe) is ADAPTERS.get(info.architecture, FamilyAdapter)
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


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled_unet(tmp_path, tiny_models):
    """The tiny SD 1.x model whose UNet weights are a pickle carrying a payload."""
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models["sd1"], folder)
    marker = tmp_path / "payload-ran"
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    torch.save({"payload": _Payload(marker)}, folder / "unet" / "diffusion_pytorch_model.bin")
    return folder, marker


def test_pickled_weights_are_refused_before_unpickling(tmp_path, tiny_models):
    folder, marker = _pickled_unet(tmp_path, tiny_models)
    with pytest.raises(ModelError, match="model.allow_pickle") as info:
        load_pipeline(str(folder), device="cpu")
    assert "diffusion_pytorch_model.bin" in str(info.value) and not marker.exists()
    cfg = validate_config({"model": {"id": str(folder)}, "concepts": {"sheets": [__file__]}})
    with pytest.raises(ModelError, match="model.allow_pickle"):
        check_model_settings(cfg, folder)  # the workflow's parse-time check
    assert not marker.exists()


def test_allowed_pickled_weights_load_like_safetensors(tmp_path, tiny_models):
    from diffusers import UNet2DConditionModel

    folder = tmp_path / "bin"
    shutil.copytree(tiny_models["sd1"], folder)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert not list((folder / "unet").glob("*.safetensors"))
    with pytest.raises(ModelError, match="model.allow_pickle"):
        load_pipeline(str(folder), device="cpu")
    pipe = load_pipeline(str(folder), device="cpu", allow_pickle=True)
    want = unet.state_dict()
    for name, got in pipe.unet.state_dict().items():
        assert torch.equal(got, want[name]), name


def test_model_code_is_refused_before_import(tmp_path, tiny_models):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_models["sd1"], folder)
    marker = tmp_path / "module-imported"
    (folder / "unet" / "my_unet.py").write_text(f"open({str(marker)!r}, 'w')\n")
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["my_unet", "MyUNet"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="model.allow_custom_code") as info:
        load_pipeline(str(folder), device="cpu")
    assert "my_unet.py" in str(info.value) and not marker.exists()
    (folder / "unet" / "my_unet.py").unlink()  # the index alone still names foreign code
    with pytest.raises(ModelError, match="'my_unet'"):
        load_pipeline(str(folder), device="cpu")
    assert not marker.exists()


def test_a_script_nothing_names_is_accepted_and_never_imported(tmp_path, tiny_models):
    """Hub repos ship legacy pipeline scripts beside a diffusers layout (``lcm_pipeline.py``):
    no config names them, so loading never imports them, and the model is accepted."""
    folder = tmp_path / "legacy"
    shutil.copytree(tiny_models["sd1"], folder)
    marker = tmp_path / "module-imported"
    (folder / "legacy_pipeline.py").write_text(f"open({str(marker)!r}, 'w')\n")
    pipe = load_pipeline(str(folder), device="cpu")
    assert pipe.unet is not None and not marker.exists()


def test_trust_settings_are_not_hashed(tiny_models):
    base = {"model": {"id": str(tiny_models["sd1"])}, "concepts": {"sheets": [__file__]}}
    allowed = {**base, "model": {**base["model"], "allow_pickle": True, "allow_custom_code": True}}
    plain = extraction_settings(validate_config(base))
    assert extraction_settings(validate_config(allowed)) == plain
    assert "allow_pickle" not in plain["model"]
