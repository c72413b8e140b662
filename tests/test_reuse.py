"""Sample reuse: a rerun extracts only the samples no earlier shard holds, and ends byte-identical
to a clean run of the same config (real Snakemake runs on a tiny random model)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import result_digests, workflow_config, write_sheet
from scalex.concepts import bucket_of
from test_workflow import snakemake, tree_of

pytestmark = pytest.mark.slow

BEFORE = [
    ("doctor", "professions", "doctor"),
    ("nurse", "professions", "nurse"),
    ("engineer", "professions", "engineer"),
    ("pilot", "professions", "pilot"),
    ("judge", "professions", "judge"),
    ("woman", "genders", "woman"),
    ("man", "genders", "man"),
]
#: nurse edited (a second term), chef added, judge removed
AFTER = [
    ("doctor", "professions", "doctor"),
    ("nurse", "professions", "nurse|caregiver"),
    ("engineer", "professions", "engineer"),
    ("pilot", "professions", "pilot"),
    ("chef", "professions", "chef"),
    ("woman", "genders", "woman"),
    ("man", "genders", "man"),
]
SEEDS = [0, 1, 2]
#: every run of the byte comparison on two cores, as the demo runs (the last --cores wins)
TWO_CORES = ("--cores", "2")


def prepare(work: Path, model: Path, rows, buckets, reuse=True) -> Path:
    sheet = write_sheet(work / "concepts.tsv", rows)
    cfg = workflow_config(
        model,
        sheet.resolve(),
        sampling={"seeds": SEEDS, "batch_size": 4},
        extraction={
            "readouts": ["content", "prompt", "text"],
            "buckets": buckets,
            "reuse": reuse,
        },
        analysis={"descriptors": {"enabled": False}, "bootstrap": 20},
    )
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def extraction_counts(work: Path, since: float = 0.0) -> tuple[int, int]:
    """(reused, extracted) samples over the extraction jobs that ran after ``since`` (from
    their logs)."""
    pattern = r"(\d+) samples: (\d+) reused from earlier shards, (\d+) to extract"
    reused = extracted = 0
    for log in (work / "results").glob("*/logs/extract/*.log"):
        if log.stat().st_mtime < since:
            continue
        m = re.search(pattern, log.read_text())
        assert m, log.read_text()
        reused += int(m[2])
        extracted += int(m[3])
    return reused, extracted


def comparable(digests: dict[str, str]) -> dict[str, str]:
    """Result files without the reuse links (an edited run keeps the links of earlier shards)."""
    return {k: v for k, v in digests.items() if "/reuse/" not in f"/{k}"}


@pytest.mark.parametrize("buckets", [2, "auto"])
def test_edit_add_remove_reuses_samples_and_equals_clean_run(tiny_models, tmp_path, buckets):
    model = Path(tiny_models["sd1"])
    if buckets == 2:  # every bucket keeps a concept, so both runs make the same files
        for rows in (BEFORE, AFTER):
            assert {bucket_of(cid, 2) for cid, _, _ in rows} == {"b0000", "b0001"}
    edited = tmp_path / "edited"
    config = prepare(edited, model, BEFORE, buckets)
    snakemake(edited, config, *TWO_CORES, timeout=600)
    assert extraction_counts(edited)[0] == 0  # nothing to reuse yet

    config = prepare(edited, model, AFTER, buckets)
    since = time.time()
    snakemake(edited, config, *TWO_CORES, timeout=600)
    reused, extracted = extraction_counts(edited, since)
    # new samples: nurse's second prompt and chef's prompt, three seeds each
    assert extracted == 2 * len(SEEDS)
    assert reused > 0

    clean = tmp_path / "clean"
    snakemake(clean, prepare(clean, model, AFTER, buckets), *TWO_CORES, timeout=600)
    assert extraction_counts(clean)[0] == 0
    want = comparable(result_digests(clean / "results"))
    got = comparable(result_digests(edited / "results"))
    assert any(name.endswith(".h5") and "/activations/" in name for name in want)
    assert got.keys() == want.keys()
    differ = [name for name in want if got[name] != want[name]]
    assert not differ, differ


def test_small_run_loads_the_model_once(tiny_models, tmp_path):
    """A run that fits one bucket extracts the bucket and the baseline in one job."""
    work = tmp_path / "work"
    config = prepare(work, Path(tiny_models["sd1"]), BEFORE, "auto")
    snakemake(work, config, targets=[f"{tree_of(config)}/prompt/directions/b0000.h5"])
    logs = list((work / "results").glob("*/logs/extract/*.log"))
    assert [log.name for log in logs] == ["extract.log"]
    assert len(re.findall(r"model load", logs[0].read_text())) == 1


def test_reuse_off_recomputes_the_same_bits(tiny_models, tmp_path):
    work = tmp_path / "work"
    config = prepare(work, Path(tiny_models["sd1"]), BEFORE, 2)
    snakemake(work, config, targets=[f"{tree_of(config)}/activations/b0000.h5"])
    tree = work / tree_of(config)
    first = (tree / "activations/b0000.h5").read_bytes()
    config = prepare(work, Path(tiny_models["sd1"]), BEFORE, 2, reuse=False)
    snakemake(
        work, config, "--forcerun", "extract", targets=[f"{tree_of(config)}/activations/b0000.h5"]
    )
    assert extraction_counts(work)[0] == 0
    assert (tree / "activations/b0000.h5").read_bytes() == first


def test_a_link_from_other_code_or_damaged_is_not_reused(tiny_models, tmp_path):
    work = tmp_path / "work"
    config = prepare(work, Path(tiny_models["sd1"]), BEFORE, 2)
    target = [f"{tree_of(config)}/activations/b0000.h5"]
    snakemake(work, config, targets=target)
    tree = work / tree_of(config)
    in_b0000 = sum(bucket_of(cid, 2) == "b0000" for cid, _, _ in BEFORE)
    link = tree / "reuse/activations/b0000.h5"
    assert link.stat().st_ino == (tree / "activations/b0000.h5").stat().st_ino  # no copy
    want = (tree / "activations/b0000.h5").read_bytes()
    # the link's samples claim other code: recomputed, same bytes
    link.unlink()
    link.write_bytes(want)
    with h5py.File(link, "r+") as f:
        f.attrs["code_version"] = "0.0.0+src.other"
    since = time.time()
    (tree / "activations/b0000.h5").unlink()  # rerun, not forced: a forced job reuses nothing
    snakemake(work, config, targets=target)
    assert extraction_counts(work, since) == (0, in_b0000 * len(SEEDS))
    assert (tree / "activations/b0000.h5").read_bytes() == want
    # a damaged link: skipped with a warning, recomputed
    link.unlink()
    link.write_bytes(want[: len(want) // 2])
    since = time.time()
    (tree / "activations/b0000.h5").unlink()
    snakemake(work, config, targets=target)
    assert extraction_counts(work, since) == (0, in_b0000 * len(SEEDS))
    assert "not reusing" in next((tree / "logs/extract").glob("b0000.log")).read_text()
    assert (tree / "activations/b0000.h5").read_bytes() == want


def test_batch_shape_fixes_the_bits(tiny_pipes):
    """A sample gives the same bits in any batch of the same size, whatever its neighbours and
    however many samples the run has (the last batch is padded)."""
    from scalex.extract import HSpaceExtractor, SamplingSettings

    settings = SamplingSettings(
        steps=2, batch_size=4, readouts=("content", "prompt"), content_prompt="a photo"
    )
    extractor = HSpaceExtractor(tiny_pipes("sd1"), settings)
    samples = [(f"a photo of a {w}", s) for w in ("doctor", "nurse", "pilot") for s in (0, 1, 2)]
    whole = extractor.run_all(samples, progress=False)
    for subset in (samples[4:5], samples[::-1], samples[2:9:3]):
        part = extractor.run_all(subset, progress=False)
        for readout in ("content", "prompt"):
            rows = [samples.index(s) for s in subset]
            a = whole[readout].data["mid_block"]["pooled"][rows]
            b = part[readout].data["mid_block"]["pooled"]
            assert np.array_equal(a, b), (readout, subset)


def _job(tmp_path: Path, params: dict, text: str):
    """A Snakemake job object as a rule script sees it, logging under <tree>/logs/<rule>/."""
    from types import SimpleNamespace

    from snakemake.iocontainers import Namedlist

    tree = tmp_path / "results" / "model-0123abcd"
    source = tmp_path / "input.tsv"
    source.write_text(text)
    out = tree / "analysis" / "table.tsv"
    log = tree / "logs" / "table" / "table.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        rule="table",
        input=Namedlist([str(source)]),
        output=Namedlist([str(out)]),
        log=Namedlist([str(log)]),
        params=Namedlist(fromdict=params),
        wildcards=Namedlist(),
        threads=1,
        resources={},
    )


def test_job_memo_restores_only_what_the_same_inputs_made(tmp_path):
    """A job whose inputs, params and code are unchanged gets its outputs back (hard links, the
    work not run); any change to an input's content or a param runs the work."""
    from scalex.rulekit import run_rule

    calls = []

    def work_for(smk):
        def work():
            calls.append(1)
            Path(smk.output[0]).parent.mkdir(parents=True, exist_ok=True)
            Path(smk.output[0]).write_text(f"{Path(smk.input[0]).read_text()} {smk.params.k}\n")

        return work

    smk = _job(tmp_path, {"k": 1}, "a")
    run_rule(smk, work_for(smk))
    out = Path(smk.output[0])
    assert calls == [1] and out.read_text() == "a 1\n"
    out.unlink()  # Snakemake deletes a job's outputs before rerunning it
    run_rule(smk, work_for(smk))
    assert calls == [1] and out.read_text() == "a 1\n"  # restored, not computed
    assert "nothing computed" in Path(smk.log[0]).read_text()
    for params, text, want in (({"k": 1}, "b", "b 1\n"), ({"k": 2}, "b", "b 2\n")):
        smk = _job(tmp_path, params, text)
        out.unlink()
        run_rule(smk, work_for(smk))
        assert out.read_text() == want
    assert len(calls) == 3
    # without memo (sample-reusing rules) the work always runs
    out.unlink()
    run_rule(smk, work_for(smk), memo=False)
    assert len(calls) == 4


def test_concepts_digest_sees_only_the_scoped_concepts(tmp_path):
    """A job reading two concepts of a file keeps its key when a third concept changes."""
    from scalex.io import concepts_digest, write_directions

    def directions(value: float) -> dict:
        rng = np.random.default_rng(0)
        out = {}
        for cid in ("man", "woman", "pilot"):
            out[cid] = {
                "set": "x",
                "split_half": 0.9,
                "n_prompts": 2,
                "n_seeds": 3,
                "per_step": rng.normal(size=(2, 4)),
                "aggregate": rng.normal(size=4),
                "mean_diff": rng.normal(size=(2, 4)),
            }
        out["pilot"]["aggregate"] = out["pilot"]["aggregate"] + value
        return out

    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_directions(a, {"settings_hash": "h"}, directions(0.0))
    write_directions(b, {"settings_hash": "h"}, directions(1.0))
    assert concepts_digest(a, ["woman", "man"]) == concepts_digest(b, ["woman", "man"])
    assert concepts_digest(a, ["pilot"]) != concepts_digest(b, ["pilot"])
    assert concepts_digest(a, ["woman"]) != concepts_digest(a, ["man"])
