"""The Snakemake workflow for real (subprocesses) on the tiny random model of every family."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CONCEPT_ROWS, FAMILIES, ROOT, workflow_config, write_sheet
from scalex.concepts import bucket_of
from scalex.config import results_tree, settings_hash, validate_config
from scalex.io import read_strings

pytestmark = pytest.mark.slow

SNAKEFILE = ROOT / "Snakefile"
#: The core rules whose jobs the rerun test accounts for exactly.
CORE_RULES = {"prompts", "extract", "directions", "similarity", "clusters", "all"}
READOUTS = ("content", "prompt", "text")


def snakemake_command(workdir: Path, config: Path, *args: str, targets=()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        *targets,  # before --configfile, which takes several values
        "--cores",
        "1",
        "--directory",
        str(workdir),
        "--snakefile",
        str(SNAKEFILE),
        *args,
        "--configfile",
        str(config),
    ]


ENV = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def snakemake(
    workdir: Path, config: Path, *args: str, targets=(), check=True, timeout=300, env=None
):
    """Run ``python -m snakemake`` in ``workdir`` with the repository's Snakefile."""
    cmd = snakemake_command(workdir, config, *args, targets=targets)
    proc = subprocess.run(
        cmd, cwd=workdir, env=env or ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode})\nSTDOUT:\n{proc.stdout[-4000:]}\n"
            f"STDERR:\n{proc.stderr[-6000:]}"
        )
    return proc


def tree_of(config: Path) -> str:
    return results_tree(validate_config(yaml.safe_load(config.read_text())))


def core_targets(config: Path) -> list[str]:
    tree = tree_of(config)
    return [
        f"{tree}/{readout}/{name}"
        for readout in READOUTS
        for name in ("similarity/similarity.tsv", "clusters/raw/clusters.tsv")
    ]


def planned_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = set()
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", "\n" + output)
    for block in blocks:
        head = re.match(r"\s*(?:local)?rule (\w+):", block)
        if not head:
            continue
        wild = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        jobs.add((head.group(1), wild.group(1).strip() if wild else ""))
    return jobs


def _leftover_temp_files(workdir: Path) -> list[str]:
    return [str(p) for p in (workdir / "results").rglob("*") if ".tmp" in p.name]


def _family_overrides(family: str) -> dict:
    # sd1 keeps two buckets (the rerun test needs an untouched bucket); the others use one
    # bucket to save a model load per run on slow machines
    return {
        "sampling": {"guidance_scale": 1.0 if family == "lcm" else 3.0},
        "extraction": {"buckets": 2 if family == "sd1" else 1},
    }


@pytest.fixture(scope="module")
def family_run(tmp_path_factory, tiny_models):
    """Run the workflow of every family, concurrently (their waits overlap), on first use.

    Returns ``run(family) -> (workdir, config)`` that fails with the run's output if it failed.
    """
    runs = {}
    for family in FAMILIES:
        workdir = tmp_path_factory.mktemp(f"wf-{family}")
        sheet = write_sheet(workdir / "concepts.tsv", CONCEPT_ROWS)
        cfg = workflow_config(tiny_models[family], sheet.resolve(), **_family_overrides(family))
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = (workdir / "snakemake.out").open("w")
        cmd = snakemake_command(workdir, config, targets=core_targets(config))
        proc = subprocess.Popen(cmd, cwd=workdir, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        runs[family] = (workdir, config, proc, log)
    for _, _, proc, log in runs.values():
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()

    def run(family: str):
        workdir, config, proc, _ = runs[family]
        if proc.returncode != 0:
            out = (workdir / "snakemake.out").read_text()
            raise AssertionError(f"snakemake failed for {family}:\n{out[-6000:]}")
        return workdir, config

    return run


@pytest.mark.parametrize("family", FAMILIES)
def test_workflow_runs(family_run, family):
    workdir, config = family_run(family)
    cfg = validate_config(yaml.safe_load(config.read_text()))
    tree = workdir / results_tree(cfg)
    h = settings_hash(cfg)
    assert tree.name.endswith(f"-{h}") and tree.name.startswith(family)
    sim_tsv = tree / "content" / "similarity" / "similarity.tsv"
    table = pd.read_csv(sim_tsv, sep="\t", index_col=0)
    ids = sorted(cid for cid, _, _ in CONCEPT_ROWS)
    assert list(table.index) == ids and list(table.columns) == ids
    np.testing.assert_allclose(np.diag(table.to_numpy()), 1.0, atol=1e-5)
    with h5py.File(tree / "content" / "similarity" / "similarity.h5") as f:
        assert f.attrs["complete"] and f.attrs["settings_hash"] == h
        assert read_strings(f["ids"]) == ids
        np.testing.assert_allclose(f["aggregate"][()], table.to_numpy(), atol=1e-5)
    for readout in READOUTS:
        clusters = pd.read_csv(tree / readout / "clusters" / "raw" / "clusters.tsv", sep="\t")
        assert sorted(clusters["concept"]) == ids
        assert clusters["cluster"].between(1, 3).all()

    shards = sorted((tree / "activations").glob("*.h5"))
    expected_buckets = {bucket_of(c, cfg["extraction"]["buckets"]) for c in ids} | {"baseline"}
    assert {p.stem for p in shards} == expected_buckets
    seen_prompts = {}
    for shard in shards:
        with h5py.File(shard) as f:
            assert f.attrs["family"] == family
            assert f.attrs["settings_hash"] == h and f.attrs["complete"]
            assert list(f.attrs["seeds"]) == [0, 1]
            assert list(f.attrs["step_indices"]) == [0, 1]
            timesteps = list(f.attrs["timesteps"])
            assert len(timesteps) == 2 and timesteps[0] > timesteps[1] >= 0
            assert bool(f.attrs["classifier_free_guidance"]) == (family != "lcm")
            for cid, group in f["concepts"].items():
                seen_prompts[cid] = read_strings(group["prompts"])
                n = len(seen_prompts[cid])
                assert group["prompt/mid_block/pooled"].shape == (n, 2, 2, 64)
                assert group["content/mid_block/pooled"].shape == (n, 2, 1, 64)  # step 0 skipped
                assert group["text/text_encoder/pooled"].shape[:3] == (n, 2, 1)
            assert f["readouts/content"].attrs["step_indices"].tolist() == [1]
    assert seen_prompts["nurse"] == ["a photo of a nurse", "a photo of a caregiver"]
    assert seen_prompts["engineer"] == ["a photo of an engineer"]
    assert seen_prompts["baseline"] == ["a photo of a person"]
    assert _leftover_temp_files(workdir) == []
    # nothing left to do
    proc = snakemake(workdir, config, "-n", targets=core_targets(config))
    assert planned_jobs(proc.stdout + proc.stderr) == set()


def _copy_run(src: Path, dst: Path, rows, **overrides) -> Path:
    """A copy of a finished run (metadata and mtimes kept) with its own sheet and config."""
    shutil.copytree(src, dst, symlinks=True)
    sheet = write_sheet(dst / "concepts.tsv", rows)
    old = yaml.safe_load((src / "config.yaml").read_text())
    cfg = workflow_config(old["model"]["id"], sheet.resolve(), **_family_overrides("sd1"))
    cfg = validate_config(cfg) if not overrides else cfg
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    config = dst / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def test_rules_without_a_model_never_import_torch(family_run, tmp_path):
    """Planning the DAG and the rules that need no model (directions, similarity, clusters) run
    with torch, diffusers and transformers made unimportable: a stub package of each name, first
    on the path, raises on import."""
    src, _ = family_run("sd1")
    workdir = tmp_path / "run"
    config = _copy_run(src, workdir, CONCEPT_ROWS)
    blocker = tmp_path / "blocker"
    for name in ("torch", "diffusers", "transformers"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported where no model is needed')\n"
        )
    env = ENV | {"PYTHONPATH": str(blocker)}
    targets = core_targets(config)
    proc = snakemake(workdir, config, "--forcerun", "directions", targets=targets, env=env)
    ran = {rule for rule, _ in planned_jobs(proc.stdout + proc.stderr)}
    assert {"directions", "similarity", "clusters"} <= ran, proc.stderr[-3000:]
    assert "extract" not in ran
    # the blocker works: a rule that loads the model fails under it
    tree = tree_of(config)
    (workdir / tree / "activations" / "baseline.h5").unlink()
    proc = snakemake(
        workdir, config, targets=[f"{tree}/activations/baseline.h5"], env=env, check=False
    )
    assert proc.returncode != 0
    log = workdir / tree / "logs" / "extract" / "baseline.log"
    said = proc.stderr + (log.read_text() if log.exists() else "")
    assert "imported where no model is needed" in said, said[-3000:]


def test_editing_one_concept_reruns_only_its_chain(family_run, tmp_path):
    src, _ = family_run("sd1")
    rows = [
        (cid, cset, "male nurse|caregiver" if cid == "nurse" else terms)
        for cid, cset, terms in CONCEPT_ROWS
    ]
    workdir = tmp_path / "run"
    config = _copy_run(src, workdir, CONCEPT_ROWS)
    # the copy itself is up to date
    proc = snakemake(workdir, config, "-n", targets=core_targets(config))
    assert planned_jobs(proc.stdout) == set(), proc.stdout

    write_sheet(workdir / "concepts.tsv", rows)
    proc = snakemake(workdir, config, "-n")
    jobs = planned_jobs(proc.stdout)
    bucket = bucket_of("nurse", 2)
    other = bucket_of("doctor", 2)
    assert other != bucket, "the test needs concepts in two buckets"
    core = {job for job in jobs if job[0] in CORE_RULES}
    assert core == {
        ("prompts", f"bucket={bucket}"),
        ("extract", f"bucket={bucket}"),
        *(("directions", f"readout={r}, bucket={bucket}") for r in READOUTS),
        *(("similarity", f"readout={r}") for r in READOUTS),
        *(("clusters", f"readout={r}, variant=raw") for r in READOUTS),
        ("all", ""),
    }, proc.stdout
    # the prompts job reruns because its parameters (the prompts) changed
    assert re.search(r"rule prompts:(?:\n\s+.*)*?\n\s+reason: .*[Pp]arams", proc.stdout)

    # run it: only the edited concept's prompts change, the other shard is not rewritten
    untouched = workdir / tree_of(config) / "activations" / f"{other}.h5"
    before = untouched.stat().st_mtime_ns
    snakemake(workdir, config, targets=core_targets(config))
    assert untouched.stat().st_mtime_ns == before
    with h5py.File(workdir / tree_of(config) / "activations" / f"{bucket}.h5") as f:
        assert read_strings(f["concepts/nurse/prompts"])[0] == "a photo of a male nurse"
    assert _leftover_temp_files(workdir) == []


def test_vocabulary_chunks_follow_their_terms_and_take_any_size(family_run, tmp_path):
    """Terms are placed in chunks by a hash of themselves: inserting a line replans one chunk.
    A 10,000-term chunk's spec (about 400 kB, over the 128 kB a shell argument may hold)
    reaches its job."""
    from scalex.io import read_prompts
    from scalex.steps.prompts import vocabulary_chunks

    src, _ = family_run("sd1")
    workdir = tmp_path / "run"
    terms = [f"object number {i:05d}" for i in range(10_000)]
    vocab = workdir / "vocabulary.txt"
    discovery = {
        "vocabularies": {
            "big": {"file": str(vocab), "template": "a photo of {article} {term}",
                    "seeds": 1, "chunk_size": 10_000},
            "small": {"file": str(workdir / "small.txt"), "template": "a photo of {term}",
                      "seeds": 1, "chunk_size": 300},
        },
        "queries": {"q": {"positive": ["nurse"], "negative": ["doctor"]}},
    }  # fmt: skip
    config = _copy_run(src, workdir, CONCEPT_ROWS, analysis={"discovery": discovery})
    vocab.write_text("\n".join(terms) + "\n")
    small = terms[:1000]
    (workdir / "small.txt").write_text("\n".join(small) + "\n")
    tree = tree_of(config)
    chunks = vocabulary_chunks(small, 300)
    assert len(chunks) == 4
    targets = [f"{tree}/discovery/big/prompts/b0000.json"] + [
        f"{tree}/discovery/small/prompts/{c}.json" for c in chunks
    ]
    snakemake(workdir, config, targets=targets)
    big = read_prompts(workdir / targets[0])
    assert len(big["concepts"][0]["prompts"]) == 10_000 and big["seeds"] == [0]
    assert (workdir / targets[0]).stat().st_size > 128 * 1024

    inserted = [*small[:500], "a brand new line", *small[500:]]
    (workdir / "small.txt").write_text("\n".join(inserted) + "\n")
    proc = snakemake(workdir, config, "-n", targets=targets)
    changed = vocabulary_chunks(inserted, 300)
    assert len(changed) == 4
    expected = {c for c in chunks if chunks[c] != changed[c]}
    assert len(expected) == 1
    assert planned_jobs(proc.stdout) == {
        ("vocabulary_prompts", f"vocab=small, chunk={c}") for c in expected
    }, proc.stdout


def test_runtime_options_rerun_nothing(family_run, tmp_path):
    """Batch size, progress, device, compression and compile never change a result: no job
    reruns."""
    src, _ = family_run("sd1")
    workdir = tmp_path / "run"
    config = _copy_run(
        src,
        workdir,
        CONCEPT_ROWS,
        sampling={"batch_size": 1, "device": "cpu"},
        extraction={"progress": True, "compression": "gzip", "threads": 1, "compile": True},
    )
    proc = snakemake(workdir, config, "-n", targets=core_targets(config))
    assert planned_jobs(proc.stdout) == set(), proc.stdout


def test_a_matrix_no_longer_written_is_removed(family_run, tmp_path):
    """``similarity.full_matrices: never`` after a run that wrote the matrices: the similarity
    jobs rerun and remove the earlier ``similarity.tsv``, which would pass for this run's."""
    src, _ = family_run("sd1")
    workdir = tmp_path / "run"
    config = _copy_run(src, workdir, CONCEPT_ROWS, similarity={"full_matrices": "never"})
    tree = tree_of(config)
    stale = [workdir / tree / r / "similarity" / "similarity.tsv" for r in READOUTS]
    assert all(p.is_file() for p in stale)
    targets = [f"{tree}/{r}/similarity/neighbours.tsv" for r in READOUTS]
    proc = snakemake(workdir, config, targets=targets)
    assert not [p for p in stale if p.exists()], proc.stderr[-2000:]
    assert all((p.parent / "neighbours.tsv").is_file() for p in stale)


def _extract_threads(output: str) -> dict[str, int]:
    """Bucket -> threads of each extract job a dry run lists (Snakemake omits ``threads: 1``)."""
    found = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", "\n" + output):
        if re.match(r"\s*rule extract:", block):
            # a small run's one job (bucket and baseline) has no wildcards
            wildcard = re.search(r"wildcards: bucket=(\S+)", block)
            bucket = wildcard.group(1) if wildcard else "b0000+baseline"
            threads = re.search(r"^\s+threads: (\d+)", block, re.M)
            found[bucket] = int(threads.group(1)) if threads else 1
    return found


def test_auto_buckets_and_threads_fit_the_run(tmp_path, tiny_models):
    """``buckets: auto`` gives a small run one concept bucket; ``threads: auto`` shares the
    cores among the run's extraction jobs; numbers are taken as given."""
    sheet = write_sheet(tmp_path / "concepts.tsv")
    config = tmp_path / "config.yaml"
    cfg = workflow_config(tiny_models["sd1"], sheet.resolve())
    cfg["extraction"].update(buckets="auto", threads="auto")
    config.write_text(yaml.safe_dump(cfg))
    auto = _extract_threads(snakemake(tmp_path, config, "-n", "--cores", "8").stdout)
    assert auto == {"b0000+baseline": 8}  # 8 cores, one extraction job
    cfg["extraction"].update(buckets=3, threads=3)
    config.write_text(yaml.safe_dump(cfg))
    given = _extract_threads(snakemake(tmp_path, config, "-n", "--cores", "8").stdout)
    ids = [cid for cid, _, _ in CONCEPT_ROWS]
    assert set(given) == {bucket_of(c, 3) for c in ids} | {"baseline"}
    assert set(given.values()) == {3}


def test_resaved_weights_move_the_tree(family_run, tmp_path):
    """Different weights in the same folder are another model: a new results tree."""
    src, src_config = family_run("sd1")
    workdir = tmp_path / "run"
    config = _copy_run(src, workdir, CONCEPT_ROWS)
    model = tmp_path / "model"
    shutil.copytree(yaml.safe_load(config.read_text())["model"]["id"], model)
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["id"] = str(model)
    config.write_text(yaml.safe_dump(cfg))
    old_tree = tree_of(config)
    assert tree_of(config) == old_tree  # deterministic
    weights = next((model / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    new_tree = tree_of(config)
    assert new_tree.rsplit("-", 1)[1] != old_tree.rsplit("-", 1)[1]
    proc = snakemake(workdir, config, "-n", targets=core_targets(config))
    assert new_tree in proc.stdout and ("extract", "bucket=baseline") in planned_jobs(proc.stdout)


def test_new_settings_write_a_new_tree(family_run, tmp_path):
    src, src_config = family_run("sd1")
    old_tree = tree_of(src_config)
    workdir = tmp_path / "run"
    config = _copy_run(src, workdir, CONCEPT_ROWS, sampling={"steps": 3})
    new_tree = tree_of(config)
    assert new_tree != old_tree and Path(new_tree).parent == Path(old_tree).parent
    old_files = {p: p.stat().st_mtime_ns for p in (workdir / old_tree).rglob("*") if p.is_file()}

    proc = snakemake(workdir, config, "-n")
    planned = proc.stdout
    assert old_tree not in planned and new_tree in planned
    # run the cheapest part of the new tree for real: the baseline shard
    snakemake(workdir, config, targets=[f"{new_tree}/activations/baseline.h5"])
    with h5py.File(workdir / new_tree / "activations" / "baseline.h5") as f:
        assert f.attrs["num_inference_steps"] == 3 and len(f.attrs["step_indices"]) == 3
        assert f.attrs["settings_hash"] == new_tree.rsplit("-", 1)[1]
    assert {p: p.stat().st_mtime_ns for p in old_files} == old_files  # old tree untouched


def test_malformed_config_fails_fast(tmp_path, tiny_models):
    sheet = write_sheet(tmp_path / "concepts.tsv")
    cfg = workflow_config(tiny_models["sd1"], sheet.resolve())
    cfg["sampling"]["steps"] = "many"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, config, "-n", check=False, timeout=120)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "config key sampling.steps: 'many' is not of type 'integer'" in output, output
    assert not (tmp_path / "results").exists()

    cfg["sampling"]["steps"] = 2
    sheet.write_text("id\tset\tterms\nnurse\tprofessions\tnurse\nBad Id\tx\ty\n")
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, config, "-n", check=False, timeout=120)
    assert proc.returncode != 0 and f"{sheet.resolve()}:3" in proc.stdout + proc.stderr


@pytest.mark.parametrize("problem", ["missing", "no-model-index"])
def test_unknown_model_folder_fails_fast_with_the_path(tmp_path, tiny_models, problem):
    model = tmp_path / "my-model"
    if problem == "no-model-index":
        shutil.copytree(tiny_models["sd1"], model)
        (model / "model_index.json").unlink()
    sheet = write_sheet(tmp_path / "concepts.tsv")
    cfg = workflow_config(model, sheet.resolve(), extraction={"buckets": 2})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, config, "-n", check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"model folder '{model}' does not exist" in output or (
        problem == "no-model-index" and "model_index.json" in output and str(model) in output
    ), output[-3000:]
    assert not (tmp_path / "results").exists()


def test_model_removed_after_planning_fails_extract_with_path_in_log(tmp_path, tiny_models):
    """A model that disappears between planning and the job: the extract log names it."""
    model = tmp_path / "my-model"
    shutil.copytree(tiny_models["sd1"], model)
    sheet = write_sheet(tmp_path / "concepts.tsv", CONCEPT_ROWS[:2])
    cfg = workflow_config(model, sheet.resolve(), extraction={"buckets": 2})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # plan and write the prompt files, then break the model folder (a new content digest, so a
    # new tree: the broken model never writes into the good model's tree)
    snakemake(tmp_path, config, targets=[f"{tree_of(config)}/prompts/baseline.json"])
    (model / "unet" / "config.json").unlink()
    tree = tree_of(config)
    proc = snakemake(tmp_path, config, targets=[f"{tree}/activations/baseline.h5"], check=False)
    assert proc.returncode != 0
    log = tmp_path / tree / "logs" / "extract" / "baseline.log"
    assert log.is_file(), (proc.stdout + proc.stderr)[-3000:]
    text = log.read_text()
    assert "extract failed" in text and str(model) in text
    assert "Traceback" not in text  # one line naming the cause, not a traceback
    assert not (tmp_path / tree / "activations" / "baseline.h5").exists()
    assert _leftover_temp_files(tmp_path) == []
