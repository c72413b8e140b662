"""HDF5 storage: atomic writes, checked reads and deterministic bytes."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
from scalex.io import (
    ACTIVATIONS,
    FORMAT_VERSION,
    StoreError,
    atomic_h5,
    attr_json,
    open_checked,
    read_activations,
    read_strings,
    shard_concepts,
    write_concept_activations,
)

ATTRS = {
    "settings_hash": "abcd1234",
    "seeds": [0, 1],
    "taps": ["mid_block"],
    "scheduler_config": {"b": 2, "a": [1, 2]},
    "model_revision": None,
}


def _write(path, attrs=ATTRS, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "prompt": {
            "mid_block": {
                "pooled": rng.normal(size=(2, 2, 3, 8)).astype(np.float32),
                "full": rng.normal(size=(2, 2, 3, 8, 2, 2)).astype(np.float32),
            }
        }
    }
    with atomic_h5(path, ACTIVATIONS, attrs) as f:
        write_concept_activations(
            f, "doctor", {"set": "professions", "derived": {}}, ["p1", "p2"], [0, 1], arrays
        )
    return arrays


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_roundtrip(tmp_path):
    path = tmp_path / "sub" / "shard.h5"
    arrays = _write(path)
    with open_checked(path, ACTIVATIONS, "abcd1234") as f:
        assert f.attrs["complete"] and f.attrs["format_version"] == FORMAT_VERSION
        assert list(f.attrs["seeds"]) == [0, 1]
        assert [s.decode() if isinstance(s, bytes) else s for s in f.attrs["taps"]] == ["mid_block"]
        assert attr_json(f, "scheduler_config") == {"a": [1, 2], "b": 2}
        assert f.attrs["model_revision"] == "null"
        assert shard_concepts(f) == ["doctor"]
        group = f["concepts/doctor"]
        assert read_strings(group["prompts"]) == ["p1", "p2"]
        assert group["template_index"][()].tolist() == [0, 1]
        assert group.attrs["set"] == "professions"
        pooled = read_activations(f, "doctor", "mid_block", "pooled")
        assert pooled.dtype == np.float32 and f[
            "concepts/doctor/prompt/mid_block/pooled"
        ].dtype == (np.float16)
        np.testing.assert_array_equal(
            pooled, arrays["prompt"]["mid_block"]["pooled"].astype(np.float16).astype(np.float32)
        )
        assert f["concepts/doctor/prompt/mid_block/full"].chunks == (1, 1, 3, 8, 2, 2)
        with pytest.raises(StoreError, match="no 'full' activations of 'nurse'"):
            read_activations(f, "nurse", "mid_block", "full")
    assert _leftovers(path.parent) == []


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "shard.h5"
    with pytest.raises(RuntimeError, match="boom"), atomic_h5(path, ACTIVATIONS, ATTRS) as f:
        f.create_dataset("x", data=np.zeros(3))
        raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "shard.h5"
    _write(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_h5(path, ACTIVATIONS, ATTRS):
        raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_open_checked_rejections_name_the_file(tmp_path):
    good = tmp_path / "good.h5"
    _write(good)
    cases = []

    missing = tmp_path / "missing.h5"
    cases.append((missing, ACTIVATIONS, None, "does not exist"))

    cases.append((good, "scalex.directions", None, "expected 'scalex.directions'"))
    cases.append((good, ACTIVATIONS, "ffff0000", "comes from settings 'abcd1234'"))

    incomplete = tmp_path / "incomplete.h5"
    with h5py.File(incomplete, "w") as f:
        f.attrs["format"] = ACTIVATIONS
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["complete"] = False
        f.attrs["settings_hash"] = "abcd1234"
    cases.append((incomplete, ACTIVATIONS, "abcd1234", "incomplete"))

    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:
        f.attrs["format"] = ACTIVATIONS
        f.attrs["format_version"] = 0
        f.attrs["complete"] = True
    cases.append((old, ACTIVATIONS, None, "format version"))

    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    cases.append((text, ACTIVATIONS, None, "not a readable HDF5 file"))

    for path, fmt, settings_hash, match in cases:
        with pytest.raises(StoreError, match=match) as info:
            open_checked(path, fmt, settings_hash)
        assert str(path) in str(info.value)
    # the right kind and hash opens, and any hash is accepted when none is asked for
    open_checked(good, ACTIVATIONS, "abcd1234").close()
    open_checked(good, ACTIVATIONS).close()


def test_same_data_gives_identical_bytes(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    _write(a)
    time.sleep(1.1)  # no timestamps in the file: a second later, still the same bytes
    _write(b)
    _write(c, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """fsync of the finished temporary file, then the rename, then the folder."""
    import os

    from scalex import io as store

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync:" + os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with store.atomic_h5(tmp_path / "x.h5", "scalex.test", {}) as f:
        f.create_dataset("a", data=[1, 2, 3])
    assert events[0].startswith("fsync:.x.h5.tmp-") and events[1] == "replace"
    assert events[2] == f"fsync:{tmp_path.name}"
    events.clear()
    store.atomic_text(tmp_path / "t.tsv", "a\tb\n")
    assert events[0].startswith("fsync:.t.tsv.tmp-") and events[1] == "replace"
    assert (tmp_path / "t.tsv").read_text() == "a\tb\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_files_carry_the_code_that_wrote_them_and_the_audit_reports_other_code(tmp_path):
    """A fix to the package must not leave old results looking current: each file names the
    code version that wrote it, and the tree audit lists files written by other code."""
    from scalex.io import audit_tree, other_code_note
    from scalex.provenance import code_version

    tree = tmp_path / "results" / "model-abcd1234"
    _write(tree / "activations" / "b0000.h5")
    _write(tree / "activations" / "b0001.h5")
    with h5py.File(tree / "activations" / "b0000.h5") as f:
        assert f.attrs["code_version"] == code_version()
    assert code_version().startswith("0.") and "+src." in code_version()
    audit = audit_tree(tree, "abcd1234")
    assert len(audit["checked"]) == 2 and audit["other_code"] == []
    assert other_code_note(audit, tree) is None

    with h5py.File(tree / "activations" / "b0001.h5", "r+") as f:
        f.attrs["code_version"] = "0.0.9+src.000000000000"
    audit = audit_tree(tree, "abcd1234")
    assert audit["other_code"] == ["0.0.9+src.000000000000: 1 files"]
    note = other_code_note(audit, tree)
    assert "0.0.9+src.000000000000: 1 files" in note and code_version() in note


def test_code_version_changes_with_any_module(tmp_path, monkeypatch):
    """The stamp digests the package source: editing one module changes it."""
    import shutil

    import scalex
    from scalex import provenance

    copy = tmp_path / "scalex"
    shutil.copytree(scalex.__path__[0], copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "__file__", str(copy / "provenance.py"))
    provenance.code_version.cache_clear()
    try:
        before = provenance.code_version()
        (copy / "steps" / "clusters.py").write_text(
            (copy / "steps" / "clusters.py").read_text() + "\n# a fix\n"
        )
        provenance.code_version.cache_clear()
        assert provenance.code_version() != before
    finally:
        provenance.code_version.cache_clear()


def test_non_finite_data_is_refused_when_written(tmp_path):
    """NaN never reaches a file: the writer refuses it, naming the file and dataset, and writes
    nothing; a failed job's error says which earlier outputs Snakemake removed."""
    from types import SimpleNamespace

    from scalex.io import StoreError, write_directions, write_similarity
    from scalex.rulekit import _removed_note

    good = np.ones((2, 3), dtype=np.float32)
    bad = good.copy()
    bad[1, 2] = np.nan
    row = {"set": "s", "split_half": 1.0, "n_prompts": 1, "n_seeds": 2}
    out = tmp_path / "b0000.h5"
    with pytest.raises(StoreError, match=r"b0000.h5.*concepts/doc/mean_diff"):
        write_directions(out, {}, {"doc": row | {"per_step": good, "aggregate": good[0],
                                                 "mean_diff": bad}})  # fmt: skip
    assert not out.exists()
    sim = tmp_path / "similarity.h5"
    with pytest.raises(StoreError, match="aggregate"):
        write_similarity(sim, {}, ["a"], ["s"], np.ones(1), np.zeros((1, 0)), np.zeros((1, 0)),
                         matrices=(np.full((1, 1), np.inf), np.ones((2, 1, 1))))  # fmt: skip
    assert not sim.exists()
    note = _removed_note(SimpleNamespace(output=["t/prompt/similarity/similarity.h5"]))
    assert "removed this job's earlier outputs" in note and "similarity.h5" in note
