"""The caches in real Snakemake runs: concurrent extraction jobs that share samples, what the
job memo's key covers, forcing, and pruning ``reuse/`` (tiny random model)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import result_digests, workflow_config, write_sheet
from scalex.cachefiles import MEMO_DIR, REUSE_DIR, is_intact, stamp_path
from test_workflow import ENV, SNAKEFILE, snakemake, tree_of

pytestmark = pytest.mark.slow

PROFESSIONS = [("doctor", "professions", "doctor"), ("nurse", "professions", "nurse")]
GENDERS = [("woman", "genders", "woman"), ("man", "genders", "man")]


def write_config(work: Path, model: Path, rows, vocabulary=None, **extra) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    sheet = write_sheet(work / "concepts.tsv", rows)
    analysis: dict = {"descriptors": {"enabled": False}, "bootstrap": 20}
    if vocabulary is not None:
        (work / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n")
        analysis["discovery"] = {
            "vocabularies": {
                "words": {
                    "file": str((work / "vocabulary.txt").resolve()),
                    "template": "a photo of {article} {term}",
                    "seeds": 2,
                    "chunk_size": 100,
                }
            },
            "queries": {"q": {"positive": ["nurse"], "negative": ["doctor"]}},
        }
    cfg = workflow_config(
        model,
        sheet.resolve(),
        extraction={"readouts": ["prompt"], "buckets": 1},
        analysis=analysis,
    )
    for key, value in extra.items():
        cfg.setdefault(key, {}).update(value)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def shards(work: Path) -> dict[str, str]:
    """Digests of every activation shard (concept buckets and vocabulary chunks)."""
    return {
        name: digest
        for name, digest in result_digests(work / "results").items()
        if name.endswith(".h5") and "/activations/" in name and f"/{REUSE_DIR}/" not in name
    }


def variant(i: int):
    """Concepts and vocabulary of edit ``i``: the bucket's job extracts 1,000 new samples (a new
    filler concept), so it runs long after its scan; the vocabulary's job extracts a few and
    replaces its kept chunk early, with the shared terms in another order; ``chef`` is read
    by the bucket's job from that chunk on every other edit."""
    filler = "|".join(f"thing {i} {k}" for k in range(500))
    rows = [*PROFESSIONS, *GENDERS, ("filler", "things", filler)]
    if i % 2:
        rows.append(("chef", "professions", "chef"))
    words = ["chef", "nurse", "doctor", "pilot", "judge", f"word {i}"]
    return rows, words[i % len(words) :] + words[: i % len(words)]


def test_concurrent_extraction_jobs_sharing_samples_equal_a_clean_run(tiny_models, tmp_path):
    """Two extraction jobs of one run share samples, and one replaces the kept shard the other
    reads from while the other runs; over several edits at --cores 2 every shard stays
    byte-equal to a clean run's."""
    model = Path(tiny_models["sd1"])
    work = tmp_path / "edited"
    for i in range(4):
        config = write_config(work, model, *variant(i))
        tree = tree_of(config)
        targets = [f"{tree}/activations/b0000.h5", f"{tree}/discovery/words/activations/b0000.h5"]
        snakemake(work, config, "--cores", "2", targets=targets, timeout=600)
    clean = tmp_path / "clean"
    config = write_config(clean, model, *variant(3))
    snakemake(clean, config, "--cores", "2", targets=targets, timeout=600)
    want, got = shards(clean), shards(work)
    assert len(want) == 3 and got == want


def job_outcomes(work: Path, since: float) -> dict[str, str]:
    """Rule/job -> ``restored``, ``computed`` or ``extracted N``, for the jobs run after
    ``since`` (from their logs)."""
    outcomes = {}
    for log in (work / "results").glob("*/logs/*/*.log"):
        if log.stat().st_mtime < since:
            continue
        text = log.read_text()
        name = f"{log.parent.name}/{log.stem}"
        if m := re.search(r"(\d+) reused from earlier shards, (\d+) to extract", text):
            outcomes[name] = f"extracted {m[2]}"
        elif "outputs restored" in text:
            outcomes[name] = "restored"
        elif " done in " in text:
            outcomes[name] = "computed"
    return outcomes


def rerun(work: Path, config: Path, *forced: str, env=None) -> dict[str, str]:
    """Run again with the prompt files forced (so Snakemake reruns every job after them, and
    the prompts jobs compute): each later job's outcome."""
    since = time.time()
    time.sleep(0.05)
    snakemake(work, config, "--forcerun", "prompts", *forced, env=env, timeout=600)
    return {n: o for n, o in job_outcomes(work, since).items() if not n.startswith("prompts/")}


def test_memo_keys_forcing_and_reuse_off(tiny_models, tmp_path):
    """A reference table's content, a plug-in's code and an analysis library's version each
    rerun what depends on them; --forcerun and `extraction.reuse: false` compute."""
    work = tmp_path / "run"
    reference = work / "reference.tsv"
    work.mkdir()
    reference.write_text("concept\tshare\ndoctor\t0.2\nnurse\t0.9\npilot\t0.1\njudge\t0.5\n")
    defaults = {"gender": {"targets": ["professions"], "pair": ["woman", "man"]}}
    defaults["gender"]["reference"] = {"file": str(reference), "key": "concept", "column": "share"}
    config = write_config(
        work,
        Path(tiny_models["sd1"]),
        PROFESSIONS
        + [("pilot", "professions", "pilot"), ("judge", "professions", "judge")]
        + GENDERS,
        analysis={"defaults": defaults, "descriptors": {"enabled": False}, "bootstrap": 20},
    )
    snakemake(work, config, timeout=600)
    tree = work / tree_of(config)
    correlation = tree / "prompt/analysis/defaults/gender/reference_correlation.tsv"
    before = correlation.read_text()

    # the reference table is an input: editing it reruns the analysis, which reads the edit
    reference.write_text("concept\tshare\ndoctor\t0.9\nnurse\t0.2\npilot\t0.5\njudge\t0.1\n")
    since = time.time()
    snakemake(work, config, timeout=600)
    assert job_outcomes(work, since).get("defaults/prompt-gender") == "computed"
    assert correlation.read_text() != before

    # nothing changed: every memoised job is restored, every sample reused
    outcomes = rerun(work, config)
    assert outcomes["extract/extract"] == "extracted 0"
    assert {o for n, o in outcomes.items() if n != "extract/extract"} == {"restored"}, outcomes

    # another version of an analysis library: analyses recompute, samples are still reused
    site = tmp_path / "site"
    (site / "scipy-999.0.dist-info").mkdir(parents=True)
    (site / "scipy-999.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: scipy\nVersion: 999.0\n"
    )
    outcomes = rerun(work, config, env=ENV | {"PYTHONPATH": str(site)})
    assert outcomes["extract/extract"] == "extracted 0"
    assert outcomes["similarity/prompt"] == "computed", outcomes

    # the reference worlds' plug-in edited: its code is in every key (shards included)
    plugin = tmp_path / "plugin"
    source = Path(__import__("scalex_refworld").__file__).parent
    shutil.copytree(
        source, plugin / "scalex_refworld", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(plugin / "scalex_refworld" / "reader.py", "a") as f:
        f.write("\n# an edit\n")
    outcomes = rerun(work, config, env=ENV | {"PYTHONPATH": str(plugin)})
    assert outcomes["extract/extract"] != "extracted 0"
    assert outcomes["similarity/prompt"] == "computed", outcomes

    # forced rules compute although their memo matches (and the memo is back afterwards)
    rerun(work, config)
    outcomes = rerun(work, config, "similarity")
    assert outcomes["similarity/prompt"] == "computed"
    assert outcomes["directions/prompt-b0000"] == "restored"
    since = time.time()
    snakemake(work, config, "--forceall", timeout=600)
    outcomes = job_outcomes(work, since)
    assert outcomes["extract/extract"] != "extracted 0"
    assert {o for n, o in outcomes.items() if n != "extract/extract"} == {"computed"}, outcomes

    # reuse off: everything computes
    cfg = yaml.safe_load(config.read_text())
    cfg["extraction"]["reuse"] = False
    config.write_text(yaml.safe_dump(cfg))
    since = time.time()
    outcomes = rerun(work, config)
    assert outcomes["extract/extract"] != "extracted 0"
    assert {o for n, o in outcomes.items() if n != "extract/extract"} == {"computed"}
    # what was computed is still kept for later runs
    assert memo_files(tree, "similarity")
    for kept in (tree / REUSE_DIR / "activations/b0000.h5", *memo_files(tree, "similarity")):
        assert stamp_path(kept).stat().st_mtime > since and is_intact(kept)


def memo_files(tree: Path, rule: str) -> list[Path]:
    files = [p for p in (tree / REUSE_DIR / MEMO_DIR / rule).rglob("*") if p.is_file()]
    return [p for p in files if not p.name.startswith(".") and p.suffix != ".json"]


def prune(work: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "scalex.cli", "prune", *args, "--directory", str(work)]
    cmd += ["--snakefile", str(SNAKEFILE), "--configfile", str(config)]
    return subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=300)


def test_prune_frees_what_the_config_no_longer_makes(tiny_models, tmp_path):
    model = Path(tiny_models["sd1"])
    work = tmp_path / "run"
    config = write_config(work, model, PROFESSIONS + GENDERS, ["nurse", "pilot"])
    snakemake(work, config, timeout=600)
    tree = work / tree_of(config)
    kept_vocabulary = tree / REUSE_DIR / "discovery/words/activations/b0000.h5"
    assert kept_vocabulary.is_file()
    memo_before = sorted((tree / REUSE_DIR / "jobs").glob("*/*.json"))

    # the vocabulary is dropped: its chunk, its prompts and its analysis are no longer made
    config = write_config(work, model, PROFESSIONS + GENDERS)
    snakemake(work, config, timeout=600)
    proc = prune(work, config)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"{re.escape(str(tree / REUSE_DIR))}: \d+ kept files pruned, .* MiB freed", line
    )
    assert int(line.split(": ")[1].split()[0]) >= 1
    assert not kept_vocabulary.exists()
    assert (tree / REUSE_DIR / "activations/b0000.h5").is_file()
    memo_after = sorted((tree / REUSE_DIR / "jobs").glob("*/*.json"))
    assert memo_after and len(memo_after) < len(memo_before)
    for stamp in (tree / REUSE_DIR).rglob(".*.stamp"):  # no stamp outlives its file
        assert stamp.with_name(stamp.name[1:].removesuffix(".stamp")).is_file()

    # what the config still makes stays usable: a rerun restores and reuses it
    outcomes = rerun(work, config)
    assert outcomes["extract/extract"] == "extracted 0"
    assert {o for n, o in outcomes.items() if n != "extract/extract"} == {"restored"}

    proc = prune(work, config, "--all")
    assert proc.returncode == 0, proc.stderr
    assert not (tree / REUSE_DIR).exists()
