"""Config validation, defaults, the settings hash and the results tree."""

from __future__ import annotations

import copy
import os
import re

import pytest
import yaml
from conftest import ROOT, workflow_config, write_sheet
from scalex.config import (
    ConfigError,
    extraction_settings,
    load_config,
    model_slug,
    results_tree,
    seeds,
    settings_hash,
    validate_config,
)


@pytest.fixture
def base_cfg(tmp_path):
    sheet = write_sheet(tmp_path / "concepts.tsv")
    return workflow_config("/models/my-model", sheet)


def _minimal(sheet) -> dict:
    return {"model": {"id": "some/model"}, "concepts": {"sheets": [str(sheet)]}}


def test_defaults_filled(tmp_path):
    sheet = write_sheet(tmp_path / "c.tsv")
    cfg = _minimal(sheet)
    out = validate_config(cfg)
    assert cfg == _minimal(sheet), "the input must not be modified"
    assert out["results"] == "results"
    assert out["model"] == {
        "id": "some/model",
        "revision": None,
        "variant": None,
        "family": "auto",
        "allow_pickle": False,
        "allow_custom_code": False,
    }
    s = out["sampling"]
    assert s["steps"] == 4 and s["guidance_scale"] == 1.0 and s["branch"] == "cond"
    assert s["dtype"] == "float32" and s["device"] == "auto" and s["batch_size"] == 32
    assert s["seeds"] == {"start": 0, "count": 8}
    assert s["scheduler"] == "auto" and s["scheduler_kwargs"] == {} and s["eta"] == 0.0
    e = out["extraction"]
    assert e["taps"] == ["mid_block"] and e["store"] == ["pooled"]
    assert e["keep_steps"] is None and e["buckets"] == "auto" and e["compression"] == "none"
    assert e["threads"] == "auto"
    assert out["concepts"]["templates"] == {"default": ["a photo of {article} {term}"]}
    assert out["concepts"]["baseline"] == {"terms": ["person"], "templates": "default"}
    assert out["concepts"]["descriptors"] == {"targets": [], "axes": {}}
    assert out["directions"] == {"tap": "mid_block", "space": "pooled", "readout": "prompt"}
    assert e["readouts"] == ["content", "prompt", "text"]
    assert e["content_prompt"] == "a photo of a person"  # the baseline's first prompt
    assert out["clustering"] == {
        "sets": None,
        "linkage": "average",
        "k_min": 2,
        "k_max": "auto",
        "remove_axes": [],
        "null_permutations": 200,
        "null_alpha": 0.05,
        "max_exact": 2000,
        "null_sample": 500,
    }
    assert out["similarity"] == {"full_matrices": "auto", "max_full_concepts": 2000,
                                 "neighbours": 10}  # fmt: skip
    assert seeds(out) == list(range(8))


def test_seed_list_and_range(base_cfg):
    cfg = validate_config(base_cfg)  # seeds given as a list (used to crash in the validator)
    assert seeds(cfg) == [0, 1]
    cfg2 = copy.deepcopy(base_cfg)
    cfg2["sampling"]["seeds"] = {"start": 5, "count": 3}
    assert seeds(validate_config(cfg2)) == [5, 6, 7]


def test_repository_config_is_valid():
    cfg = load_config(ROOT / "config" / "config.yaml")
    assert cfg["model"]["id"] == "resources/worlds/stereotyped/model"
    assert cfg["sampling"]["eta"] == 0.0  # a default filled in


def _set(cfg, dotted, value):
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("sampling.steps", "two", "sampling.steps"),
        ("sampling.guidance_scale", "high", "sampling.guidance_scale"),
        ("extraction.buckets", 0, "extraction.buckets"),
        ("extraction.buckets", "many", "extraction.buckets"),
        ("extraction.threads", 0, "extraction.threads"),
        ("sampling.device", "gpu", "sampling.device"),
        ("sampling.seeds", [3], "sampling.seeds"),
        ("extraction.store", ["pooled", "everything"], "extraction.store"),
        ("sampling.stepz", 3, "stepz"),
        ("colour", "red", "colour"),
        ("model.id", _DELETE, "id"),
        ("model.id", "", "model.id"),
        ("directions.tap", "down_blocks.1", "directions.tap"),
        ("directions.space", "full", "directions.space"),
        ("clustering.k_min", 5, "k_max"),
        ("concepts.sheets", ["no/such/sheet.tsv"], "no/such/sheet.tsv"),
        ("extraction.keep_steps", [0, 2], "extraction.keep_steps"),
        ("concepts.baseline.templates", "nope", "concepts.baseline.templates"),
        ("extraction.readouts", ["contents"], "extraction.readouts"),
        ("directions.readout", "contents", "directions.readout"),
    ],
)
def test_malformed_config_names_the_key(base_cfg, key, value, named):
    cfg = copy.deepcopy(base_cfg)
    if key == "clustering.k_min":
        cfg["clustering"]["k_max"] = 3
    _set(cfg, key, value)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    message = str(info.value)
    assert named in message
    assert len(message) < 500, "the message should be one line, not a schema dump"


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "config" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_sheet_paths_relative_to_base_and_absolute(tmp_path):
    sheet = write_sheet(tmp_path / "sheets" / "c.tsv")
    rel = {"model": {"id": "m"}, "concepts": {"sheets": ["sheets/c.tsv"]}}
    validate_config(rel, base=tmp_path)
    with pytest.raises(ConfigError, match="sheets/c.tsv"):
        validate_config(rel, base=tmp_path / "elsewhere")
    absolute = {"model": {"id": "m"}, "concepts": {"sheets": [str(sheet)]}}
    validate_config(absolute, base=tmp_path / "elsewhere")  # absolute paths ignore base


def test_settings_hash_ignores_runtime_keys(base_cfg):
    ref = settings_hash(validate_config(base_cfg))
    assert re.fullmatch(r"[0-9a-f]{8}", ref)
    for key, value in [
        ("sampling.device", "cuda:1"),
        ("sampling.batch_size", 3),
        ("extraction.buckets", 64),
        ("extraction.threads", 3),
        ("extraction.progress", True),
        ("extraction.compression", "gzip"),
    ]:
        cfg = copy.deepcopy(base_cfg)
        _set(cfg, key, value)
        assert settings_hash(validate_config(cfg)) == ref, key


def test_settings_hash_changes_with_semantic_keys(base_cfg):
    ref = settings_hash(validate_config(base_cfg))
    seen = {ref}
    for key, value in [
        ("model.id", "/models/other-model"),
        ("sampling.steps", 3),
        ("sampling.seeds", [0, 2]),
        ("sampling.guidance_scale", 3.0),
        ("extraction.taps", ["mid_block", "down_blocks.1"]),
        ("extraction.store", ["pooled", "full"]),
        ("extraction.keep_steps", [1]),
    ]:
        cfg = copy.deepcopy(base_cfg)
        _set(cfg, key, value)
        h = settings_hash(validate_config(cfg))
        assert h not in seen, key
        seen.add(h)


def test_settings_hash_same_seeds_spelled_differently(base_cfg):
    a = copy.deepcopy(base_cfg)
    a["sampling"]["seeds"] = [0, 1, 2]
    b = copy.deepcopy(base_cfg)
    b["sampling"]["seeds"] = {"count": 3}
    assert settings_hash(validate_config(a)) == settings_hash(validate_config(b))
    assert extraction_settings(validate_config(a))["sampling"]["seeds"] == [0, 1, 2]


def test_results_tree(base_cfg):
    cfg = validate_config(base_cfg)
    cfg["results"] = "out/results"
    assert results_tree(cfg) == f"out/results/my-model-{settings_hash(cfg)}"
    assert model_slug("stabilityai/stable-diffusion-2-1") == "stable-diffusion-2-1"
    assert model_slug("/models/My Model!/") == "my-model"
    assert model_slug("/") == "model"


def test_load_config_resolves_sheets_from_workflow_root(tmp_path):
    write_sheet(tmp_path / "config" / "concepts" / "c.tsv")
    path = tmp_path / "config" / "config.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"id": "m"}, "concepts": {"sheets": ["config/concepts/c.tsv"]}})
    )
    assert load_config(path)["concepts"]["sheets"] == ["config/concepts/c.tsv"]


def test_concurrent_gpu_jobs_claim_distinct_gpus(tmp_path, monkeypatch):
    """Snakemake never says which GPU a job gets: each job locks one and keeps to it."""
    from scalex import rulekit
    from scalex.errors import ExtractionError

    monkeypatch.setattr(rulekit, "_HELD_GPUS", [])
    claimed = []
    for _ in range(2):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        claimed.append(rulekit.claim_gpu(tmp_path))
        assert os.environ["CUDA_VISIBLE_DEVICES"] == claimed[-1]
    assert claimed == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ExtractionError, match="all 2 GPUs are held"):
        rulekit.claim_gpu(tmp_path)
    for fd in rulekit._HELD_GPUS:
        os.close(fd)  # released: the next job may take GPU 0 again
    rulekit._HELD_GPUS.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert rulekit.claim_gpu(tmp_path) == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert rulekit.claim_gpu(tmp_path) is None  # one GPU: nothing to choose
    for fd in rulekit._HELD_GPUS:
        os.close(fd)


def test_sampling_settings_defaults_are_the_schema_s():
    """SamplingSettings has no defaults of its own: each is the config schema's."""
    import dataclasses

    from scalex.config import load_schema
    from scalex.extract import SamplingSettings

    props = load_schema("config")["properties"]
    for f in dataclasses.fields(SamplingSettings):
        section = "sampling" if f.name in props["sampling"]["properties"] else "extraction"
        want = props[section]["properties"][f.name]["default"]
        want = tuple(want) if isinstance(want, list) else want
        assert f.default == want, f.name
