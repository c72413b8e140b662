"""Which model a run names, and which it loads.

- A comparison (``compare:``) of a model with itself is refused, however it is spelled (a copy of
  the folder, another ``family`` label, a ``revision`` on a folder, a hub id and a local copy of
  its snapshot), unless ``compare.seeds`` asks for the null check on other seeds.
- A hub model is loaded at the commit its results tree was named from, even when its branch
  moves between planning and loading.

The hub cases use a real Hugging Face cache layout in a temporary folder (blobs named as the hub
names them, snapshots of symlinks, ``refs/main``), offline.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from scalex.config import compared_config, extraction_settings, results_tree, validate_config
from scalex.errors import ConfigError, ModelError
from scalex.models import check_model_content, load_model

REPO = "scalex-test/tiny-sd1"
COMMIT_A = hashlib.sha1(b"commit A").hexdigest()
COMMIT_B = hashlib.sha1(b"commit B").hexdigest()
LFS_SUFFIXES = (".safetensors", ".bin")


def hub_repo(cache: Path, repo_id: str, snapshots: dict[str, Path], main: str) -> Path:
    """A model in a Hugging Face cache as the hub client writes it: every file once under
    ``blobs/`` (weights by their sha256, as LFS files are; other files by their git blob sha1),
    ``snapshots/<commit>/`` of relative symlinks to them, and ``refs/main`` naming ``main``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for commit, folder in snapshots.items():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            if path.suffix in LFS_SUFFIXES:
                name = hashlib.sha256(data).hexdigest()
            else:
                name = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            blob = repo / "blobs" / name
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                shutil.copyfile(path, blob)
            link = repo / "snapshots" / commit / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(main)
    return repo


@pytest.fixture(scope="module")
def other_sd1(tmp_path_factory) -> Path:
    """A tiny SD 1.x model of the same shape as ``tiny_models['sd1']``, other weights."""
    from random_models import save_random_pipeline

    return save_random_pipeline("sd1", tmp_path_factory.mktemp("other-sd1") / "model", seed=1)


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_models, other_sd1) -> Path:
    """``scalex-test/tiny-sd1`` in an offline hub cache: commit A (the tiny SD 1.x model) and
    commit B (other weights), ``main`` at A."""
    import huggingface_hub

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_repo(cache, REPO, {COMMIT_A: tiny_models["sd1"], COMMIT_B: other_sd1}, COMMIT_A)


def config(model: dict, **extra) -> dict:
    return validate_config(
        {"model": model, "concepts": {"sheets": [__file__]}, "sampling": {"device": "cpu"}, **extra}
    )


def unet_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(next((folder / "unet").glob("*.safetensors")))


# -- B: a moved branch -------------------------------------------------------------------------


def test_a_branch_moved_after_planning_loads_the_planned_commit(hub, tiny_models, other_sd1):
    settings = extraction_settings(config({"id": REPO}))
    tree = results_tree(config({"id": REPO}))
    assert settings["model"]["content"] == f"commit:{COMMIT_A}"
    (hub / "refs" / "main").write_text(COMMIT_B)  # the branch moves while the run goes on
    pipe, info = load_model(settings, {"device": "cpu"})
    assert info.family == "sd1"
    loaded = pipe.unet.state_dict()
    assert all((loaded[k] == v).all() for k, v in unet_weights(tiny_models["sd1"]).items())
    assert not all((loaded[k] == v).all() for k, v in unet_weights(other_sd1).items())
    # a new plan names the new commit: another tree
    moved = extraction_settings(config({"id": REPO}))
    assert moved["model"]["content"] == f"commit:{COMMIT_B}"
    assert results_tree(config({"id": REPO})) != tree


def test_a_branch_moved_after_planning_passes_the_content_check(hub):
    """The planned commit is still in the cache: the content the tree names is what loads."""
    settings = extraction_settings(config({"id": REPO}))
    (hub / "refs" / "main").write_text(COMMIT_B)
    check_model_content(settings)


def test_a_planned_commit_gone_from_the_offline_cache_is_named(hub):
    settings = extraction_settings(config({"id": REPO}))
    (hub / "refs" / "main").write_text(COMMIT_B)
    shutil.rmtree(hub / "snapshots" / COMMIT_A)
    with pytest.raises(ModelError) as err:
        check_model_content(settings)
    message = str(err.value)
    assert "\n" not in message and COMMIT_A in message and "model.id" in message


# -- A: a comparison of a model with itself ----------------------------------------------------


def comparison(base: dict, new: dict, **extra) -> dict:
    cfg = config(base, compare={"model": new, **extra})
    return compared_config(cfg)


def refused(base: dict, new: dict) -> str:
    with pytest.raises(ConfigError) as err:
        comparison(base, new)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("compare.model") and "same weights as model" in message
    return message


def test_a_copy_of_the_model_is_the_same_model(tmp_path, tiny_models):
    copy_ = tmp_path / "copy"
    shutil.copytree(tiny_models["sd1"], copy_)
    refused({"id": str(tiny_models["sd1"])}, {"id": str(copy_)})


def test_another_label_or_a_folders_revision_is_the_same_model(tiny_models):
    base = {"id": str(tiny_models["sd1"])}
    refused(base, {**base, "family": "sd1"})
    refused(base, {**base, "revision": "v2"})


def test_a_folder_with_the_same_weights_and_other_configs_is_the_same_model(tmp_path, tiny_models):
    copy_ = tmp_path / "copy"
    shutil.copytree(tiny_models["sd1"], copy_)
    scheduler = copy_ / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "steps_offset": 1}))
    message = refused({"id": str(tiny_models["sd1"])}, {"id": str(copy_)})
    assert "sha256 " in message


def test_a_hub_id_and_a_local_copy_of_its_snapshot_are_the_same_model(hub, tiny_models):
    refused({"id": REPO}, {"id": str(tiny_models["sd1"])})
    refused({"id": str(tiny_models["sd1"])}, {"id": REPO, "revision": COMMIT_A})
    # the other commit holds other weights: a real comparison
    assert comparison({"id": REPO, "revision": COMMIT_B}, {"id": str(tiny_models["sd1"])})


def test_the_same_model_under_other_seeds_is_a_null_check(tiny_models):
    base = {"id": str(tiny_models["sd1"])}
    new = comparison(base, copy.deepcopy(base), seeds=list(range(8, 16)))
    assert new["sampling"]["seeds"] == list(range(8, 16))


def test_other_weights_or_another_variant_are_compared(tiny_models, other_sd1):
    base = {"id": str(tiny_models["sd1"])}
    assert comparison(base, {"id": str(other_sd1)})["model"]["id"] == str(other_sd1)
    assert comparison(base, {**base, "variant": "fp16"})["model"]["variant"] == "fp16"
