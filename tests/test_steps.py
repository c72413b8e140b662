"""The rule steps (scalex.steps) end to end on a tiny model, without Snakemake."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import workflow_config, write_sheet
from scalex.concepts import baseline_concept, load_concepts
from scalex.config import extraction_settings, seeds, settings_hash, validate_config
from scalex.extract import HSpaceExtractor
from scalex.io import (
    ACTIVATIONS,
    StoreError,
    open_checked,
    read_activations,
    read_directions,
    read_prompts,
    read_similarity,
    read_strings,
    write_prompts,
)
from scalex.models import load_model
from scalex.steps.clusters import run as compute_clusters
from scalex.steps.directions import run as compute_directions
from scalex.steps.extract import run as extract_shard
from scalex.steps.extract import sampling_settings
from scalex.steps.similarity import run as compute_similarity

ROWS = [
    ("doctor", "professions", "doctor"),
    ("nurse", "professions", "nurse|caregiver"),
    ("engineer", "professions", "engineer"),
    ("woman", "genders", "woman"),
]
RUNTIME = {"device": "cpu", "batch_size": 4, "progress": False}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_models, tiny_pipes):
    """Config, concepts and written prompt files for the tiny SD 1.x model."""
    root = tmp_path_factory.mktemp("jobs")
    sheet = write_sheet(root / "concepts.tsv", ROWS)
    cfg = validate_config(
        workflow_config(tiny_models["sd1"], sheet, sampling={"steps": 2, "guidance_scale": 2.0})
    )
    concepts = load_concepts(cfg)
    concepts["baseline"] = baseline_concept(cfg)
    files = {
        "b0000": root / "prompts" / "b0000.json",
        "baseline": root / "prompts" / "baseline.json",
    }
    bucket = ("doctor", "nurse", "engineer", "woman")
    write_prompts([concepts[c].spec() for c in bucket], seeds(cfg), files["b0000"])
    write_prompts([concepts["baseline"].spec()], seeds(cfg), files["baseline"])
    settings = extraction_settings(cfg)
    h = settings_hash(cfg)
    pipe_info = load_model(settings, RUNTIME)
    shard = root / "activations" / "b0000.h5"
    base = root / "activations" / "baseline.h5"
    extract_shard(
        files["b0000"],
        shard,
        settings,
        h,
        RUNTIME,
        pipe_and_info=pipe_info,
    )
    extract_shard(files["baseline"], base, settings, h, RUNTIME)  # loads the model itself
    return {
        "root": root,
        "cfg": cfg,
        "settings": settings,
        "hash": h,
        "files": files,
        "shard": shard,
        "baseline": base,
        "pipe": pipe_info[0],
        "concepts": concepts,
    }


def test_prompt_files_are_canonical(pipeline, tmp_path):
    doc = read_prompts(pipeline["files"]["b0000"])
    assert doc["seeds"] == [0, 1]
    assert [c["id"] for c in doc["concepts"]] == ["doctor", "nurse", "engineer", "woman"]
    assert doc["concepts"][1] == {
        "id": "nurse",
        "set": "professions",
        "prompts": ["a photo of a nurse", "a photo of a caregiver"],
        "template_index": [0, 0],
    }
    text = pipeline["files"]["b0000"].read_text()
    assert text == json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"
    foreign = tmp_path / "b0001.json"
    foreign.write_text('{"id": "nurse"}')
    with pytest.raises(StoreError, match="b0001.json: not a scalex prompt file"):
        read_prompts(foreign)


def test_shard_contents(pipeline):
    with open_checked(pipeline["shard"], ACTIVATIONS, pipeline["hash"]) as f:
        assert f.attrs["family"] == "sd1" and f.attrs["settings_hash"] == pipeline["hash"]
        assert f.attrs["num_inference_steps"] == 2
        assert f.attrs["classifier_free_guidance"]
        assert list(f.attrs["seeds"]) == [0, 1]
        assert list(f.attrs["step_indices"]) == [0, 1]
        assert len(f.attrs["timesteps"]) == 2
        assert json.loads(f.attrs["settings_json"]) == pipeline["settings"]
        assert json.loads(f.attrs["versions"])["diffusers"]
        assert sorted(f["concepts"]) == ["doctor", "engineer", "nurse", "woman"]
        nurse = f["concepts/nurse"]
        assert read_strings(nurse["prompts"]) == ["a photo of a nurse", "a photo of a caregiver"]
        assert nurse.attrs["set"] == "professions"
        stored = read_activations(f, "nurse", "mid_block", "pooled")
    assert stored.shape == (2, 2, 2, 64)  # (prompts, seeds, steps, channels)
    # prompt-major, then seeds: the same numbers as the extractor on those samples
    ex = HSpaceExtractor(
        pipeline["pipe"], sampling_settings(pipeline["settings"], {"device": "cpu"})
    )
    samples = [(p, s) for p in ["a photo of a nurse", "a photo of a caregiver"] for s in (0, 1)]
    direct = ex.run_all(samples, progress=False)["prompt"].data["mid_block"]["pooled"]
    direct = direct.reshape(2, 2, 2, 64)
    np.testing.assert_allclose(stored, direct, rtol=2e-3, atol=2e-3)  # stored as float16


def test_directions_similarity_clusters(pipeline):
    root, h = pipeline["root"], pipeline["hash"]
    dirs = root / "directions" / "b0000.h5"
    compute_directions(pipeline["shard"], pipeline["baseline"], dirs, h)
    d = read_directions([dirs], h)
    assert d["ids"] == ["doctor", "engineer", "nurse", "woman"]
    assert d["sets"] == ["professions", "professions", "professions", "genders"]
    assert d["per_step"].shape == (4, 2, 64) and d["aggregate"].shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(d["aggregate"], axis=1), 1.0, rtol=1e-5)
    assert d["step_indices"].tolist() == [0, 1]

    # the direction is the normalised seed-paired mean difference to the baseline
    with h5py.File(pipeline["shard"]) as f, h5py.File(pipeline["baseline"]) as fb:
        doc = f["concepts/doctor/prompt/mid_block/pooled"][()].astype(np.float32)
        base = fb["concepts/baseline/prompt/mid_block/pooled"][()].astype(np.float32)
    mean = (doc - base.mean(axis=0, keepdims=True)).mean(axis=(0, 1)).mean(axis=0)
    np.testing.assert_allclose(d["aggregate"][0], mean / np.linalg.norm(mean), atol=1e-5)

    sim_h5, sim_tsv = root / "similarity.h5", root / "similarity.tsv"
    near = root / "neighbours.tsv"
    compute_similarity([dirs], sim_h5, near, h, out_tsv=sim_tsv, neighbours=2)
    sim = read_similarity(sim_h5, h)
    cos = d["aggregate"] @ d["aggregate"].T
    np.fill_diagonal(cos, -np.inf)
    assert sim["neighbours"].tolist() == np.argsort(-cos, axis=1)[:, :2].tolist()
    listed = pd.read_csv(near, sep="\t")
    assert listed.columns.tolist() == ["concept", "rank", "neighbour", "cosine"]
    assert len(listed) == 8 and listed["neighbour"].isin(d["ids"]).all()
    assert sim["ids"] == d["ids"] and sim["aggregate"].shape == (4, 4)
    assert sim["per_step"].shape == (2, 4, 4)
    np.testing.assert_allclose(np.diag(sim["aggregate"]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(sim["aggregate"], d["aggregate"] @ d["aggregate"].T, atol=1e-5)
    table = pd.read_csv(sim_tsv, sep="\t", index_col=0)
    assert list(table.index) == d["ids"] and list(table.columns) == d["ids"]
    np.testing.assert_allclose(table.to_numpy(), sim["aggregate"], atol=1e-5)

    clusters, silhouette = root / "clusters.tsv", root / "silhouette.tsv"
    matrix = root / "clustered.tsv"
    no_null = {"direction_files": [dirs], "null_permutations": 0}
    compute_clusters(
        sim_h5, clusters, silhouette, matrix, h, sets=None, k_min=2, k_max=3, **no_null
    )
    labels = pd.read_csv(clusters, sep="\t")
    assert sorted(labels["concept"]) == d["ids"]
    assert set(labels.columns) == {"concept", "set", "cluster"}
    curve = pd.read_csv(silhouette, sep="\t")
    assert curve["k"].tolist() == [2, 3] and curve["chosen"].sum() == 1
    assert labels["cluster"].nunique() == int(curve.loc[curve["chosen"], "k"].iloc[0])
    clustered = pd.read_csv(matrix, sep="\t", index_col=0)
    np.testing.assert_allclose(clustered.loc[d["ids"], d["ids"]], sim["aggregate"], atol=1e-5)

    compute_clusters(
        sim_h5, clusters, silhouette, matrix, h, sets=["professions"], k_min=2, k_max=3, **no_null
    )
    assert sorted(pd.read_csv(clusters, sep="\t")["concept"]) == ["doctor", "engineer", "nurse"]
    with pytest.raises(ValueError, match="select 1 concepts"):
        compute_clusters(sim_h5, clusters, silhouette, matrix, h, sets=["genders"], **no_null)
    with pytest.raises(StoreError, match="similarity.h5"):
        compute_clusters(sim_h5, clusters, silhouette, matrix, "00000000", **no_null)

    # removing the woman axis: the clustered matrix is the cosine of the residual directions
    compute_clusters(
        sim_h5,
        clusters,
        silhouette,
        matrix,
        h,
        sets=["professions"],
        k_min=2,
        k_max=2,
        remove=[("woman", "doctor")],
        direction_files=[dirs],
    )
    vec = dict(zip(d["ids"], d["aggregate"], strict=True))
    axis = vec["woman"] - vec["doctor"]
    axis /= np.linalg.norm(axis)
    ids = ["doctor", "engineer", "nurse"]
    residual = np.stack([vec[c] - (vec[c] @ axis) * axis for c in ids])
    residual /= np.linalg.norm(residual, axis=1, keepdims=True)
    got = pd.read_csv(matrix, sep="\t", index_col=0).loc[ids, ids].to_numpy()
    np.testing.assert_allclose(got, residual @ residual.T, atol=1e-5)
    assert not np.allclose(got, sim["aggregate"][:3, :3], atol=1e-3)


def test_shard_from_other_settings_is_rejected(pipeline, tiny_models):
    root = pipeline["root"]
    other_cfg = validate_config(
        workflow_config(
            tiny_models["sd1"], pipeline["cfg"]["concepts"]["sheets"][0], sampling={"steps": 3}
        )
    )
    other_hash = settings_hash(other_cfg)
    assert other_hash != pipeline["hash"]
    other_shard = root / "other" / "b0000.h5"
    doctor = root / "other" / "doctor.json"
    write_prompts([pipeline["concepts"]["doctor"].spec()], [0, 1], doctor)
    extract_shard(
        doctor,
        other_shard,
        extraction_settings(other_cfg),
        other_hash,
        RUNTIME,
        pipe_and_info=(pipeline["pipe"], load_model(pipeline["settings"], RUNTIME)[1]),
    )
    out = root / "other" / "directions.h5"
    with pytest.raises(StoreError, match="comes from settings") as info:
        compute_directions(other_shard, pipeline["baseline"], out, pipeline["hash"])
    assert str(other_shard) in str(info.value)
    with pytest.raises(StoreError, match="comes from settings") as info:
        compute_directions(pipeline["shard"], pipeline["baseline"], out, other_hash)
    assert str(pipeline["shard"]) in str(info.value)
    assert not out.exists()


def test_pairing_refuses_a_shard_without_the_baselines_seeds(pipeline, tmp_path):
    """Pairing is by seed: a shard that lacks one of the baseline's seeds cannot be paired."""
    prompts = tmp_path / "b0000.json"
    write_prompts([pipeline["concepts"]["doctor"].spec()], [0, 5], prompts)
    shard = tmp_path / "b0000.h5"
    extract_shard(
        prompts,
        shard,
        pipeline["settings"],
        pipeline["hash"],
        RUNTIME,
        pipe_and_info=(pipeline["pipe"], load_model(pipeline["settings"], RUNTIME)[1]),
    )
    with pytest.raises(ValueError, match=r"b0000.h5: has no samples for seeds \[1\]"):
        compute_directions(shard, pipeline["baseline"], tmp_path / "d.h5", pipeline["hash"])
    assert not (tmp_path / "d.h5").exists()


def test_pairing_refuses_mixed_noise_sources(pipeline, tmp_path):
    """A shard whose seeds drew their noise on another device cannot pair with the baseline."""
    import shutil

    from scalex.differences import load_concept_diffs

    with h5py.File(pipeline["shard"]) as f:
        assert f.attrs["noise_source"] == "cpu" and f.attrs["device"] == "cpu"
    other = tmp_path / "b0000.h5"
    shutil.copy(pipeline["shard"], other)
    with h5py.File(other, "r+") as f:
        f.attrs["noise_source"] = "cuda"
    with pytest.raises(StoreError, match="noise drawn on 'cuda'"):
        load_concept_diffs(other, pipeline["baseline"], pipeline["hash"], "mid_block", "pooled")


def test_extraction_refuses_a_model_changed_after_planning(pipeline, tmp_path):
    """The tree's hash names the model's content; other weights must not be filed under it."""
    import shutil

    from scalex.errors import ModelError
    from scalex.models import check_model_content
    from scalex.provenance import model_content

    model = tmp_path / "model"
    shutil.copytree(pipeline["settings"]["model"]["id"], model)
    settings = json.loads(json.dumps(pipeline["settings"]))
    settings["model"]["id"] = str(model)
    settings["model"]["content"] = model_content(str(model))
    check_model_content(settings)  # unchanged: fine
    weights = next((model / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="changed since this run was planned"):
        check_model_content(settings)


def test_large_runs_store_neighbours_not_matrices(pipeline, tmp_path):
    """Without the full matrices the similarity file holds neighbours only, and clustering
    reads nothing of size N x N."""
    root, h = pipeline["root"], pipeline["hash"]
    dirs = root / "directions" / "b0000.h5"
    compute_directions(pipeline["shard"], pipeline["baseline"], dirs, h)
    sim_h5, near = tmp_path / "similarity.h5", tmp_path / "neighbours.tsv"
    compute_similarity([dirs], sim_h5, near, h, neighbours=3)
    sim = read_similarity(sim_h5, h)
    assert sim["aggregate"] is None and sim["per_step"] is None
    assert sim["neighbours"].shape == (4, 3)
    with h5py.File(sim_h5) as f:
        assert "aggregate" not in f and "per_step" not in f and not f.attrs["matrices"]
    out = [tmp_path / n for n in ("clusters.tsv", "silhouette.tsv", "matrix.tsv")]
    compute_clusters(sim_h5, *out, h, k_min=2, k_max=3, direction_files=[dirs],
                     null_permutations=0)  # fmt: skip
    assert len(pd.read_csv(out[0], sep="\t")) == 4


def test_full_similarity_rule():
    from scalex.steps.similarity import full_similarity

    assert full_similarity(2000) and not full_similarity(2001)
    assert full_similarity(10**6, "always") and not full_similarity(3, "never")
    assert full_similarity(50, "auto", max_concepts=50) and not full_similarity(51, "auto", 50)


def test_a_complete_file_missing_a_concept_is_refused(pipeline, tmp_path):
    """A shard or directions file marked complete that lacks a declared concept (deleted by
    hand, a broken copy) stops the step instead of dropping the concept silently."""
    import shutil

    h = pipeline["hash"]
    shard = tmp_path / "b0000.h5"
    shutil.copy(pipeline["shard"], shard)
    with h5py.File(shard, "a") as f:
        declared = sorted(str(c) for c in f.attrs["concepts"])
        assert declared == sorted(f["concepts"].keys())
        del f["concepts/nurse"]
    with pytest.raises(StoreError, match=r"b0000.h5: .*missing \['nurse'\]"):
        compute_directions(shard, pipeline["baseline"], tmp_path / "d.h5", h)

    dirs = tmp_path / "directions.h5"
    compute_directions(pipeline["shard"], pipeline["baseline"], dirs, h)
    with h5py.File(dirs, "a") as f:
        del f["concepts/doctor"]
    with pytest.raises(StoreError, match=r"directions.h5: .*missing \['doctor'\]"):
        read_directions([dirs], h)


def test_non_finite_directions_are_refused(pipeline, tmp_path):
    h = pipeline["hash"]
    dirs = tmp_path / "directions.h5"
    compute_directions(pipeline["shard"], pipeline["baseline"], dirs, h)
    with h5py.File(dirs, "a") as f:
        f["concepts/doctor/aggregate"][0] = np.nan
    with pytest.raises(StoreError, match="concepts/doctor/aggregate holds NaN"):
        read_directions([dirs], h)


def test_a_damaged_similarity_file_gives_an_error_naming_it(pipeline, tmp_path):
    h = pipeline["hash"]
    dirs = tmp_path / "directions.h5"
    compute_directions(pipeline["shard"], pipeline["baseline"], dirs, h)
    sim = tmp_path / "similarity.h5"
    compute_similarity([dirs], sim, tmp_path / "n.tsv", h, out_tsv=tmp_path / "s.tsv")
    good = sim.read_bytes()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        data = bytearray(good)
        step = max(1, len(data) // (5 + 10 * seed))  # from a few hits to damage all over
        for start in range(int(rng.integers(0, step)), len(data), step):
            data[start : start + 8] = rng.bytes(len(data[start : start + 8]))
        sim.write_bytes(bytes(data))
        try:
            read_similarity(sim, h)  # damage in raw data alone cannot be seen without checksums
        except StoreError as err:
            assert "similarity.h5" in str(err)
    sim.write_bytes(bytes(b ^ 0xFF for b in good[:4096]) + good[4096:])  # the superblock
    with pytest.raises(StoreError, match="similarity.h5"):
        read_similarity(sim, h)
