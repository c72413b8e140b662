"""A corpus of bad inputs: each must cost nothing.

One finished run of the real workflow (tiny random SD 1.x model) is the tree at stake. Every case
then breaks one thing (a config value, a sheet, a vocabulary, the model folder, the results path)
and runs ``snakemake`` again, and must give:

- a non-zero exit;
- a line naming the field or file, and no Python traceback;
- no job started (the config alone shows the error, so no model may load);
- every existing result unchanged (the tree is hashed before and after).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, workflow_config, write_sheet

pytestmark = pytest.mark.slow

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@dataclass
class World:
    """The finished run a case may break: its folder, config and inputs."""

    work: Path
    config: dict
    sheet: Path
    vocabulary: Path
    model: Path
    #: a copy of the finished results, to restore after a case that damages the tree
    pristine: Path | None = None


@dataclass
class Case:
    name: str
    #: changes the config (a deep copy) and/or writes broken files; returns extra --configfile's
    breaks: Callable[[World, dict], list[Path] | None]
    #: a line of the output must contain this (the field or file)
    names: str


def _set(path: str, value):
    def breaks(_world: World, cfg: dict):
        *parents, key = path.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value

    return breaks


def _sheet(text: str | bytes, name: str = "broken.tsv"):
    def breaks(world: World, cfg: dict):
        path = world.work / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        cfg["concepts"]["sheets"] = [str(path)]

    return breaks


def _vocabulary(data: bytes):
    def breaks(world: World, cfg: dict):
        path = world.work / "broken-vocab.txt"
        path.write_bytes(data)
        cfg["analysis"]["discovery"]["vocabularies"]["things"]["file"] = str(path)

    return breaks


def _findings_reference(table: str, column: str):
    """A gender axis and a reference table that lacks the column the config names."""

    def breaks(world: World, cfg: dict):
        path = world.work / "reference.csv"
        path.write_text(table)
        cfg["concepts"]["descriptors"] = {
            "targets": ["professions"],
            "axes": {"gender": ["female", "male"]},
        }
        cfg["analysis"]["findings"] = {
            "references": {
                "bls": {"file": str(path), "key": "profession", "column": column,
                        "axis": "gender", "value": "female"}
            }
        }  # fmt: skip

    return breaks


def _extra_config(text: str):
    def breaks(world: World, _cfg: dict):
        path = world.work / "extra.yaml"
        path.write_text(text)
        return [path]

    return breaks


def _results_is_a_file(below: bool):
    def breaks(world: World, cfg: dict):
        path = world.work / "a-file"
        path.write_text("not a folder\n")
        cfg["results"] = str(path / "results") if below else str(path)

    return breaks


def _tree_file(change: Callable[[Path], None]):
    """Damage the finished tree itself (restored after the case)."""

    def breaks(world: World, _cfg: dict):
        tree = next((world.work / "results").iterdir())
        change(tree)

    breaks.touches_tree = True
    return breaks


def _drop_a_concept(tree: Path) -> None:
    import h5py

    for shard in sorted((tree / "activations").glob("b*.h5")):
        with h5py.File(shard, "a") as f:
            if len(f["concepts"]) > 0:
                del f[f"concepts/{next(iter(f['concepts']))}"]
                return


def _damage_header(tree: Path) -> None:
    path = tree / "prompt" / "similarity" / "similarity.h5"
    data = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in data[:4096]) + data[4096:])


def _foreign_file(complete: bool):
    def change(tree: Path) -> None:
        import h5py

        with h5py.File(tree / "prompt" / "directions" / "b0099.h5", "w") as f:
            f.attrs["format"] = "scalex.directions"
            f.attrs["format_version"] = 2
            f.attrs["complete"] = complete
            f.attrs["settings_hash"] = "deadbeef"

    return change


def _model_folder(change: Callable[[Path], None]):
    def breaks(world: World, cfg: dict):
        copy_ = world.work / "broken-model"
        if copy_.exists():
            shutil.rmtree(copy_)
        shutil.copytree(world.model, copy_)
        change(copy_)
        cfg["model"]["id"] = str(copy_)

    return breaks


def _pickle_payload(model: Path) -> None:
    """UNet weights as a pickle that would create a file when unpickled (no safetensors)."""
    for weights in (model / "unet").glob("*.safetensors"):
        weights.unlink()
    payload = pickle.dumps({"w": _Payload(str(model / "payload-ran"))})
    (model / "unet" / "diffusion_pytorch_model.bin").write_bytes(payload)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _model_code(model: Path) -> None:
    (model / "unet" / "unet_code.py").write_text("raise SystemExit('imported')\n")
    index = json.loads((model / "model_index.json").read_text())
    index["unet"] = ["unet_code", "UNet"]  # the index names it: loading would import it
    (model / "model_index.json").write_text(json.dumps(index))


def _world_table(change: Callable[[str], str]):
    """A copy of a reference world (model and planted table) whose table is then broken."""

    def breaks(world: World, cfg: dict):
        copy_ = world.work / "broken-world"
        if copy_.exists():
            shutil.rmtree(copy_)
        source = ROOT / "resources" / "worlds" / "stereotyped"
        shutil.copytree(source / "model", copy_ / "model")
        table = (source / "world.tsv").read_text()
        (copy_ / "world.tsv").write_text(change(table))
        cfg["model"]["id"] = str(copy_ / "model")

    return breaks


def _rate(table: str) -> str:
    """The first profession's p_woman set to 1.7."""
    lines = table.splitlines(keepends=True)
    header = lines[0].rstrip("\n").split("\t")
    row = lines[1].rstrip("\n").split("\t")
    row[header.index("p_woman")] = "1.7"
    return "".join([lines[0], "\t".join(row) + "\n", *lines[2:]])


def _drop_column(table: str) -> str:
    return "\n".join("\t".join(line.split("\t")[:-1]) for line in table.splitlines()) + "\n"


HEADER = "id\tset\tterms\ttemplates\n"
GOOD_ROWS = "doctor\tprofessions\tdoctor\t\nnurse\tprofessions\tnurse\t\n"


def _compare(seeds=None):
    """A comparison of the run's model with itself (under ``seeds`` when given)."""

    def breaks(world: World, cfg: dict):
        cfg["compare"] = {"model": {"id": str(world.model)}}
        if seeds is not None:
            cfg["compare"]["seeds"] = seeds

    return breaks


def _compare_same_weights(copied: bool = False, **model):
    """A comparison, descriptors set, of the run's model with itself spelled otherwise: a copy of
    its folder, or other ``model`` keys (a family label, a revision)."""

    def breaks(world: World, cfg: dict):
        folder = world.model
        if copied:
            folder = world.work / "model-copy"
            if not folder.exists():
                shutil.copytree(world.model, folder)
        cfg["compare"] = {"model": {"id": str(folder), **model}}
        cfg["concepts"]["descriptors"] = {
            "targets": ["professions"],
            "axes": {"gender": ["female", "male"]},
        }
        cfg["analysis"]["descriptors"]["enabled"] = True

    return breaks


CASES = [
    # sampling
    Case("seed count float", _set("sampling.seeds", {"start": 0, "count": 4.0}), "sampling.seeds"),
    Case(
        "seed count negative", _set("sampling.seeds", {"start": 0, "count": -1}), "sampling.seeds"
    ),
    Case("seed too large", _set("sampling.seeds", [0, 2**63]), "sampling.seeds"),
    Case("seed list empty", _set("sampling.seeds", []), "sampling.seeds"),
    Case("steps zero", _set("sampling.steps", 0), "sampling.steps"),
    Case("steps text", _set("sampling.steps", "ten"), "sampling.steps"),
    Case("guidance negative", _set("sampling.guidance_scale", -1), "sampling.guidance_scale"),
    Case("device without CUDA", _set("sampling.device", "cuda"), "sampling.device"),
    Case("device unknown", _set("sampling.device", "tpu"), "sampling.device"),
    Case("branch unknown", _set("sampling.branch", "both"), "sampling.branch"),
    Case("uncond without CFG", _set("sampling.branch", "uncond"), "sampling.branch"),
    Case("scheduler unknown", _set("sampling.scheduler", "NoSuchScheduler"), "sampling.scheduler"),
    Case("dtype unknown", _set("sampling.dtype", "float8"), "sampling.dtype"),
    Case("batch size zero", _set("sampling.batch_size", 0), "sampling.batch_size"),
    Case("height not a multiple", _set("sampling.height", 18), "sampling.height"),
    # extraction
    Case("tap unknown", _set("extraction.taps", ["no_such_block"]), "extraction.taps"),
    Case("tap index too high", _set("extraction.taps", ["down_blocks.9"]), "extraction.taps"),
    Case("store unknown", _set("extraction.store", ["everything"]), "extraction.store"),
    Case("readouts empty", _set("extraction.readouts", []), "extraction.readouts"),
    Case("readout unknown", _set("extraction.readouts", ["image"]), "extraction.readouts"),
    Case("keep step out of range", _set("extraction.keep_steps", [5]), "extraction.keep_steps"),
    Case("buckets zero", _set("extraction.buckets", 0), "extraction.buckets"),
    # directions
    Case("direction tap not extracted", _set("directions.tap", "up_blocks.0"), "directions.tap"),
    Case("direction space not stored", _set("directions.space", "full"), "directions.space"),
    # clustering
    Case("cluster set typo", _set("clustering.sets", ["astronauts"]), "clustering.sets"),
    Case("k range inverted", _set("clustering.k_min", 5), "clustering.k_m"),
    Case("linkage unknown", _set("clustering.linkage", "ward"), "clustering.linkage"),
    Case(
        "axis concept unknown",
        _set("clustering.remove_axes", [["doctor", "nobody"]]),
        "clustering.remove_axes",
    ),  # fmt: skip
    Case("null alpha above one", _set("clustering.null_alpha", 1.5), "clustering.null_alpha"),
    # analysis
    Case("bootstrap too small", _set("analysis.bootstrap", 5), "analysis.bootstrap"),
    Case(
        "defaults target unknown",
        _set("analysis.defaults", {"g": {"targets": ["astronaut"], "pair": ["woman", "man"]}}),
        "analysis.defaults",
    ),  # fmt: skip
    Case(
        "defaults pair of one",
        _set("analysis.defaults", {"g": {"targets": ["doctor"], "pair": ["woman"]}}),
        "analysis.defaults",
    ),  # fmt: skip
    Case(
        "reference file missing",
        _set(
            "analysis.defaults",
            {
                "g": {
                    "targets": ["professions"],
                    "pair": ["woman", "doctor"],
                    "reference": {"file": "nowhere.tsv", "key": "a", "column": "b"},
                }
            },
        ),
        "nowhere.tsv",
    ),  # fmt: skip
    Case(
        "findings reference on an undeclared axis",
        _set(
            "analysis.findings.references",
            {
                "bls": {
                    "file": "nowhere.csv",
                    "key": "a",
                    "column": "b",
                    "axis": "gender",
                    "value": "female",
                }
            },
        ),
        "analysis.findings.references.bls.axis",
    ),  # fmt: skip
    Case(
        "findings reference column missing",
        _findings_reference("profession,pct_women\ndoctor,40\n", column="percent_women"),
        "percent_women",
    ),  # fmt: skip
    Case(
        "vocabulary missing",
        _set("analysis.discovery.vocabularies", {"things": {"file": "no-vocab.txt"}}),
        "no-vocab.txt",
    ),  # fmt: skip
    Case("vocabulary not UTF-8", _vocabulary(b"cat\n\xff\xfedog\n"), "broken-vocab.txt"),
    Case("vocabulary empty", _vocabulary(b"\n\n"), "broken-vocab.txt"),
    # concept sheets
    Case("sheet missing", _set("concepts.sheets", ["no-such-sheet.tsv"]), "no-such-sheet.tsv"),
    Case(
        "sheet with BOM",
        _sheet(b"\xef\xbb\xbf" + (HEADER + GOOD_ROWS).encode() + b"x\ty\n"),
        "broken.tsv",
    ),  # fmt: skip
    Case("sheet without terms column", _sheet("id\tset\ndoctor\tprofessions\n"), "broken.tsv"),
    Case("sheet duplicate id", _sheet(HEADER + GOOD_ROWS + "doctor\tx\tdoc\t\n"), "broken.tsv"),
    Case(
        "sheet huge field",
        _sheet(HEADER + GOOD_ROWS + "big\tx\t" + "a" * 200_000 + "\t\n"),
        "broken.tsv",
    ),  # fmt: skip
    Case("sheet not UTF-8", _sheet(HEADER.encode() + b"caf\xe9\tx\tcafe\t\n"), "broken.tsv"),
    Case("sheet bad id", _sheet(HEADER + "Doctor Who\tx\tdoctor\t\n"), "broken.tsv"),
    Case("sheet unknown template", _sheet(HEADER + "doctor\tx\tdoctor\tnope\n"), "broken.tsv"),
    Case(
        "template without term",
        _set("concepts.templates", {"default": ["a photo"]}),
        "concepts.templates",
    ),  # fmt: skip
    Case(
        "baseline template unknown",
        _set("concepts.baseline.templates", "nope"),
        "concepts.baseline",
    ),  # fmt: skip
    # model
    Case("model folder missing", _set("model.id", "/no/such/model"), "/no/such/model"),
    Case("model family unknown", _set("model.family", "sd9"), "model.family"),
    Case(
        "model index missing",
        _model_folder(lambda m: (m / "model_index.json").unlink()),
        "model_index.json",
    ),  # fmt: skip
    Case(
        "unet config broken",
        _model_folder(lambda m: (m / "unet" / "config.json").write_text("{")),
        "config.json",
    ),  # fmt: skip
    # an untrusted model: nothing of it may be unpickled or imported
    Case("pickled weights", _model_folder(_pickle_payload), "model.allow_pickle"),
    Case("model ships code", _model_folder(_model_code), "model.allow_custom_code"),
    # a reference world's planted table, read when the workflow is parsed
    Case("world table rate out of range", _world_table(_rate), "world.tsv, line 2"),
    Case("world table column missing", _world_table(_drop_column), "world.tsv, line 1"),
    # a comparison with a second model (compare:)
    Case("compare model missing", _set("compare", {"model": {"id": "/no/such"}}), "compare.model"),
    Case("compare seeds of another count", _compare(seeds=[5, 6, 7]), "compare.seeds"),
    Case("compare the model with itself", _compare(), "compare.model"),
    Case("compare a copy of the model", _compare_same_weights(copied=True), "compare.model"),
    Case(
        "compare the model under another label",
        _compare_same_weights(family="sd1"),
        "compare.model",
    ),  # fmt: skip
    Case(
        "compare the model at a revision",
        _compare_same_weights(revision="v2"),
        "compare.model",
    ),  # fmt: skip
    Case("compare without descriptors", _compare(seeds=[2, 3]), "concepts.descriptors"),
    # results path and config files
    Case("results path is a file", _results_is_a_file(below=False), "a-file"),
    Case("results path below a file", _results_is_a_file(below=True), "a-file"),
    Case("YAML syntax error", _extra_config("sampling: {steps: [\n"), "extra.yaml"),
    Case("config not a mapping", _extra_config("- just\n- a list\n"), "extra.yaml"),
    Case("unknown top-level key", _set("samplng", {"steps": 3}), "samplng"),
    Case("unknown nested key", _set("sampling.stepz", 3), "stepz"),
    # the finished tree itself
    Case("shard lacks a concept", _tree_file(_drop_a_concept), "activations/b"),
    Case("damaged similarity file", _tree_file(_damage_header), "similarity.h5"),
    Case("file from other settings", _tree_file(_foreign_file(True)), "b0099.h5"),
    Case("incomplete file in tree", _tree_file(_foreign_file(False)), "b0099.h5"),
]


def tree_digest(root: Path) -> str:
    """Names and contents of every file under ``root``."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def snakemake(
    world: World, configs: list[Path], *args: str, cli: bool = False
) -> subprocess.CompletedProcess:
    entry = ["-m", "scalex.cli", "run"] if cli else ["-m", "snakemake"]
    cmd = [sys.executable, *entry, "--cores", "1", "--directory", str(world.work),
           "--snakefile", str(ROOT / "Snakefile"), *args, "--configfile",
           *map(str, configs)]  # fmt: skip
    return subprocess.run(cmd, cwd=world.work, env=ENV, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def world(tiny_models, tmp_path_factory) -> World:
    work = tmp_path_factory.mktemp("bad-inputs")
    sheet = write_sheet(work / "concepts.tsv")
    vocabulary = work / "vocab.txt"
    vocabulary.write_text("cat\ndog\n")
    cfg = workflow_config(
        tiny_models["sd1"],
        sheet.resolve(),
        extraction={"readouts": ["prompt"]},
        analysis={"bootstrap": 20, "descriptors": {"enabled": False},
                  "discovery": {"vocabularies": {"things": {"file": str(vocabulary),
                                                            "seeds": 1}},
                                "queries": {"doc": {"positive": ["doctor"]}}}},
    )  # fmt: skip
    w = World(work, cfg, sheet, vocabulary, Path(tiny_models["sd1"]))
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(w, [path])
    assert proc.returncode == 0, proc.stderr[-4000:]
    w.pristine = work / "pristine-results"
    shutil.copytree(work / "results", w.pristine)
    return w


#: Snakemake parses every --configfile itself, before the workflow's code runs, and its message
#: names no file: these cases go through ``scalex run``, which checks the files first.
THROUGH_CLI = {"YAML syntax error", "config not a mapping"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_costs_nothing(world, case):
    results = world.work / "results"
    cfg = copy.deepcopy(world.config)
    extra = case.breaks(world, cfg) or []
    before = tree_digest(results)  # after the case broke it, when it breaks the tree itself
    path = world.work / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(world, [path, *extra], cli=case.name in THROUGH_CLI)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"accepted:\n{output[-3000:]}"
    assert "Traceback (most recent call last)" not in output, output[-3000:]
    naming = [line for line in output.splitlines() if case.names in line]
    assert naming, f"no line names {case.names!r}:\n{output[-3000:]}"
    assert not re.search(r"^rule \w+:|^localrule \w+:", output, re.M), "a job started"
    try:
        assert tree_digest(results) == before, "an existing result changed"
    finally:
        if getattr(case.breaks, "touches_tree", False):
            shutil.rmtree(results)
            shutil.copytree(world.pristine, results)


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
