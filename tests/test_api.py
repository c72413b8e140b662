"""The notebook API reads a results tree written by the rule functions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from conftest import workflow_config, write_sheet
from scalex.api import Results
from scalex.concepts import baseline_concept, load_concepts
from scalex.config import extraction_settings, results_tree, seeds, settings_hash, validate_config
from scalex.differences import load_concept_diffs
from scalex.io import StoreError, read_directions, write_prompts
from scalex.steps.clusters import run as compute_clusters
from scalex.steps.defaults import run as run_defaults
from scalex.steps.directions import run as compute_directions
from scalex.steps.extract import run as extract_shard
from scalex.steps.similarity import run as compute_similarity

ROWS = [
    ("doctor", "professions", "doctor"),
    ("nurse", "professions", "nurse"),
    ("chef", "professions", "chef"),
    ("woman", "genders", "woman"),
    ("man", "genders", "man"),
]
RUNTIME = {"device": "cpu", "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def tree(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("api")
    sheet = write_sheet(root / "concepts.tsv", ROWS)
    raw = workflow_config(tiny_models["sd1"], sheet, sampling={"steps": 2})
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg = validate_config(raw)
    h = settings_hash(cfg)
    out = root / results_tree(cfg)
    concepts = load_concepts(cfg)
    concepts["baseline"] = baseline_concept(cfg)
    files = {"b0000": out / "prompts" / "b0000.json", "baseline": out / "prompts" / "baseline.json"}
    write_prompts([concepts[c].spec() for c, *_ in ROWS], seeds(cfg), files["b0000"])
    write_prompts([concepts["baseline"].spec()], seeds(cfg), files["baseline"])
    settings = extraction_settings(cfg)
    shard, base = out / "activations" / "b0000.h5", out / "activations" / "baseline.h5"
    extract_shard(files["b0000"], shard, settings, h, RUNTIME)
    extract_shard(files["baseline"], base, settings, h, RUNTIME)
    r = out / "prompt"  # the readout this fixture writes
    dirs = r / "directions" / "b0000.h5"
    compute_directions(shard, base, dirs, h, readout="prompt")
    compute_similarity(
        [dirs], r / "similarity" / "similarity.h5", r / "similarity" / "neighbours.tsv", h,
        out_tsv=r / "similarity" / "similarity.tsv",
    )  # fmt: skip
    compute_clusters(
        r / "similarity" / "similarity.h5",
        r / "clusters" / "raw" / "clusters.tsv",
        r / "clusters" / "raw" / "silhouette.tsv",
        r / "clusters" / "raw" / "similarity.tsv",
        h,
        sets=["professions"],
        direction_files=[dirs],
        null_permutations=0,
    )
    data = load_concept_diffs({c: shard for c, *_ in ROWS}, base, h, "mid_block", "pooled")
    boot = {"bootstrap": 50, "confidence": 0.9, "seed": 0}
    run_defaults(
        data,
        ["doctor", "nurse", "chef"],
        ("woman", "man"),
        r / "analysis" / "defaults" / "gender",
        boot,
    )
    return {"root": root, "out": out, "hash": h, "shard": shard}


def test_results_from_config_finds_the_tree(tree):
    res = Results.from_config(tree["root"] / "config" / "config.yaml")
    assert res.tree == tree["out"] and res.settings_hash == tree["hash"]
    assert res.readout == "prompt"  # the config's directions.readout


def test_results_from_config_merges_files_as_snakemake_does(tree, tmp_path):
    """Several --configfile files: later keys over earlier ones, nested sections merged."""
    base = tree["root"] / "config" / "config.yaml"
    override = tmp_path / "steps.yaml"
    override.write_text("sampling:\n  steps: 3\n")
    raw = yaml.safe_load(base.read_text())
    raw["sampling"]["steps"] = 3  # seeds, device, ... of the first file stay
    expected = results_tree(validate_config(raw))
    assert expected != results_tree(validate_config(yaml.safe_load(base.read_text())))
    with pytest.raises(StoreError, match=f"{expected}: no such results tree"):
        Results.from_config(base, override, workdir=tree["root"])
    assert Results.from_config(override, base, workdir=tree["root"]).tree == tree["out"]


def test_tables_and_matrices(tree):
    res = Results(tree["out"], readout="prompt")
    bias = res.bias("gender")
    assert sorted(bias["concept"]) == ["chef", "doctor", "nurse"]
    assert (bias["step"].astype(str) == "all").all()
    profile = res.bias_profile("gender")
    assert profile.shape == (3, 2)  # three concepts, two kept steps
    sim = res.similarity()
    assert list(sim.index) == sorted(c for c, *_ in ROWS)
    np.testing.assert_allclose(np.diag(sim.to_numpy()), 1.0, rtol=1e-5)
    assert res.similarity(step=1).shape == sim.shape
    assert set(res.clusters()["concept"]) == {"doctor", "nurse", "chef"}
    dirs = res.directions()
    assert list(dirs.columns[:2]) == ["set", "split_half"]
    np.testing.assert_allclose(np.linalg.norm(dirs.iloc[:, 2:].to_numpy(), axis=1), 1, rtol=1e-5)
    assert res.settings()["sampling"]["steps"] == 2


def test_activations_have_named_dimensions(tree):
    res = Results(tree["out"], readout="prompt")
    acts = res.activations("nurse")
    values = getattr(acts, "values", acts)
    assert values.shape[:3] == (1, 2, 2)  # one prompt, two seeds, two steps
    if hasattr(acts, "dims"):
        assert acts.dims == ("prompt", "seed", "step", "channel")
        assert list(acts.coords["prompt"].values) == ["a photo of a nurse"]


def test_missing_things_are_named(tree):
    res = Results(tree["out"], readout="prompt")
    with pytest.raises(StoreError, match="descriptors.tsv"):
        res.descriptors()
    with pytest.raises(StoreError, match="content"):
        res.bias("gender", readout="content")  # not written by this fixture
    with pytest.raises(StoreError, match="'engineer'"):
        res.activations("engineer")
    with pytest.raises(StoreError, match="no such results tree"):
        Results(tree["root"] / "nowhere")


def test_a_leftover_file_of_an_earlier_layout_is_not_read(tree, tiny_models):
    """An earlier bucket layout can leave a direction file (with a concept since removed) in
    the folder; the API lists what the similarity step read, so the concept does not return."""
    res = Results(tree["out"])
    before = res.directions()
    leftover = tree["out"] / "prompt" / "directions" / "b0009.h5"
    try:
        ghost_shard = tree["out"] / "activations" / "b0009.h5"
        cfg = validate_config(yaml.safe_load((tree["root"] / "config" / "config.yaml").read_text()))
        ghost = load_concepts(cfg)["doctor"]
        ghost = dataclasses.replace(ghost, id="ghost")
        path = tree["out"] / "prompts" / "b0009.json"
        write_prompts([ghost.spec()], seeds(cfg), path)
        extract_shard(path, ghost_shard, extraction_settings(cfg), tree["hash"], RUNTIME)
        compute_directions(ghost_shard, tree["out"] / "activations" / "baseline.h5", leftover,
                           tree["hash"], readout="prompt")  # fmt: skip
        assert "ghost" in read_directions([leftover], tree["hash"])["ids"]
        after = res.directions()
        assert "ghost" not in after.index
        assert list(after.index) == list(before.index)
        assert ghost_shard not in res.shards()
    finally:
        leftover.unlink(missing_ok=True)
        (tree["out"] / "activations" / "b0009.h5").unlink(missing_ok=True)


def test_findings_is_the_first_table_and_filters_by_axis(tmp_path):
    """``Results.findings`` reads the run's headline table; an axis it lacks is named."""
    import pandas as pd
    from scalex.api import Results
    from scalex.errors import StoreError

    tree = tmp_path / "model-0123abcd"
    (tree / "findings").mkdir(parents=True)
    res = Results(tree)
    with pytest.raises(StoreError, match="not produced yet"):
        res.findings()
    pd.DataFrame(
        {
            "concept": ["nurse", "nurse", "nurse", "nurse"],
            "axis": ["gender", "gender", "age", "age"],
            "value": ["female", "male", "young", "old"],
            "share": [0.9, 0.1, 0.3, 0.7],
        }
    ).to_csv(tree / "findings" / "findings.tsv", sep="\t", index=False)
    assert len(res.findings()) == 4
    assert res.findings("age")["value"].tolist() == ["young", "old"]
    with pytest.raises(StoreError, match="no axis 'wealth'"):
        res.findings("wealth")


def test_any_registered_table_reads_by_its_key(tree):
    """``Results.table`` reads every TSV of scalex.layout.OUTPUTS: an analysis added to the
    registry needs no API code; a missing wildcard is named."""
    res = Results(tree["out"], readout="prompt")
    assert res.table("bias", name="gender").equals(
        res.table("bias", readout="prompt", name="gender")
    )
    assert len(res.table("bias", name="gender")) > len(res.bias("gender"))  # every step
    assert res.path("clusters", variant="raw") == tree["out"] / "prompt/clusters/raw/clusters.tsv"
    with pytest.raises(TypeError, match="variant"):
        res.path("clusters")
    with pytest.raises(StoreError, match="not a table"):
        res.table("similarity")
