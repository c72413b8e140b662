"""scalex.layout owns the results layout and the names: the rules, the default target, the API,
the schema and the README all agree with it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from conftest import CONCEPT_ROWS, ROOT, workflow_config, write_sheet
from scalex import layout
from scalex.config import load_schema


def test_path_fills_some_wildcards_and_leaves_the_rest_to_snakemake():
    assert (
        layout.path("bias", "t", name="gender") == "t/{readout}/analysis/defaults/gender/bias.tsv"
    )
    assert layout.path("bias", readout="text", name="x") == "text/analysis/defaults/x/bias.tsv"
    assert layout.fields("clusters") == ["readout", "variant"]
    with pytest.raises(KeyError, match="no_such_output"):
        layout.path("no_such_output")


def test_schema_enums_are_the_registries():
    """A readout or variant added to the registry but not to the schema (or the reverse) fails."""
    props = load_schema("config")["properties"]
    assert props["extraction"]["properties"]["readouts"]["items"]["enum"] == list(layout.READOUTS)
    assert props["directions"]["properties"]["readout"]["enum"] == list(layout.READOUTS)
    assert layout.WILDCARDS["readout"] == "|".join(layout.READOUTS)
    assert layout.WILDCARDS["variant"] == "|".join(layout.CLUSTER_VARIANTS)


def test_rules_spell_no_path_of_the_tree():
    """Every path of the tree in the rules comes from scalex.layout (through ``out()``)."""
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        assert "{TREE}/" not in text, f"{smk.name} spells a tree path: use out(key)"


def test_readme_outputs_table_is_generated():
    text = (ROOT / "README.md").read_text()
    assert layout.with_table(text) == text, "run: python -m scalex.layout README.md --write"
    for out in layout.OUTPUTS.values():
        if out.rule:
            name = out.template.rstrip("/").rsplit("/", 1)[-1]
            assert re.sub(r"\{(\w+)\}", r"<\1>", name) in text


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def test_every_file_of_a_run_is_in_the_registry(tmp_path, tiny_models):
    """The DAG of a run with every analysis on and a comparison (the same model under other
    seeds): each output of both trees is an entry of OUTPUTS, written by the rule the entry names
    (in the new model's tree, the same rule imported as ``compared_<rule>``)."""
    sheet = write_sheet(tmp_path / "concepts.tsv", [*CONCEPT_ROWS, ("man", "genders", "man")])
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("cat\ndog\n")
    cfg = workflow_config(
        tiny_models["sd1"],
        sheet.resolve(),
        analysis={"defaults": {"gender": {"targets": ["professions"], "pair": ["woman", "man"]}},
                  "discovery": {"vocabularies": {"things": {"file": str(vocabulary), "seeds": 1}},
                                "queries": {"doc": {"positive": ["doctor"]}}}},
        concepts={"descriptors": {"targets": ["professions"],
                                  "axes": {"gender": ["female", "male"]}}},
    )  # fmt: skip
    cfg["compare"] = {"model": {"id": str(tiny_models["sd1"])}, "seeds": [2, 3]}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--summary", "--cores", "1", "--snakefile",
         str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(config)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("results/")]
    assert len(rows) > 20
    patterns = {k: _template_regex(o.template) for k, o in layout.OUTPUTS.items()}
    for row in rows:
        tree, _, rel = row[0].partition("/")[2].partition("/")
        matches = [k for k, rx in patterns.items() if rx.fullmatch(rel)]
        assert matches, f"{rel} is not in scalex.layout.OUTPUTS"
        rule = row[2].removeprefix("compared_")
        assert rule in {layout.OUTPUTS[k].rule for k in matches}, (rel, row[2])
    written = {row[2] for row in rows}
    assert {"extract", "directions", "similarity", "defaults", "discovery", "diff"} <= written
    assert {"compared_extract", "compared_descriptors", "compared_clusters"} <= written


def test_default_targets_expand_every_target_output_not_switched_off():
    cfg = {"analysis": {"defaults": {"gender": {}, "age": {}}, "steering": {}, "projection": {}}}
    values = {"readout": ["prompt", "text"], "variant": ["raw"], "vocab": [], "compared": []}
    off = frozenset({"similarity_table", "validation", "validation_summary"})
    targets = layout.default_targets("T", layout.Plan(values, cfg, off))
    assert "T/text/analysis/defaults/age/bias.tsv" in targets
    assert "T/prompt/clusters/raw/clusters.tsv" in targets
    assert not [t for t in targets if "validation" in t or t.endswith("similarity.tsv")]
    assert len(targets) == len(set(targets))
    on = layout.default_targets("T", layout.Plan(values, cfg))
    assert "T/validation/summary.tsv" in on and "T/text/similarity/similarity.tsv" in on
    assert not [t for t in on if "/compare/" in t]  # no comparison without compare:
    compared = layout.default_targets("T", layout.Plan({**values, "compared": ["new-1"]}, cfg))
    assert {"T/compare/new-1/diff.tsv", "T/compare/new-1/summary.json"} <= set(compared)
