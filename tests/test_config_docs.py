"""Config as documentation: every schema key is described, config/README.md is generated from the
schemas, and a bad concept-sheet row is reported by file, line and column."""

from __future__ import annotations

import copy

import pytest
from conftest import ROOT, workflow_config, write_sheet
from scalex import configdoc
from scalex.concepts import load_concepts
from scalex.config import SCHEMA_DIR, ConfigError, load_schema, validate_config

README = ROOT / "config" / "README.md"


def undescribed(node: dict, path: str = "") -> list[str]:
    """Dotted paths of the properties (at every level) that lack a non-empty description:
    keys under ``properties``, ``additionalProperties`` schemas (``<name>``), object items of
    arrays (``[]``), and the properties inside ``oneOf``/``anyOf``/``allOf`` branches."""
    missing = []
    prefix = f"{path}." if path else ""
    children = [(f"{prefix}{k}", v) for k, v in node.get("properties", {}).items()]
    if isinstance(node.get("additionalProperties"), dict):
        children.append((f"{prefix}<name>", node["additionalProperties"]))
    items = node.get("items")
    if isinstance(items, dict) and (items.get("type") == "object" or "properties" in items):
        children.append((f"{path}[]", items))
    for child_path, child in children:
        if not str(child.get("description") or "").strip():
            missing.append(child_path)
        missing += undescribed(child, child_path)
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(key, []):
            if isinstance(branch, dict):
                missing += undescribed(branch, path)
    return missing


@pytest.mark.parametrize("name", ["config", "concepts"])
def test_every_property_is_described(name):
    schema = load_schema(name)
    assert str(schema.get("description") or "").strip(), f"{name} schema has no description"
    assert undescribed(schema) == []


def test_a_removed_description_is_caught():
    schema = load_schema("config")
    broken = copy.deepcopy(schema)
    del broken["properties"]["sampling"]["properties"]["seeds"]["oneOf"][1]["properties"]["count"][
        "description"
    ]
    projection = broken["properties"]["analysis"]["properties"]["projection"]
    projection["additionalProperties"]["properties"]["seed"]["description"] = "  "
    del broken["properties"]["concepts"]["properties"]["templates"]["additionalProperties"][
        "description"
    ]
    assert undescribed(broken) == [
        "sampling.seeds.count",
        "concepts.templates.<name>",
        "analysis.projection.<name>.seed",
    ]
    rows = load_schema("concepts")
    del rows["properties"]["set"]["description"]
    assert undescribed(rows) == ["set"]


def test_schemas_are_package_data():
    assert (SCHEMA_DIR / "config.schema.yaml").is_file()
    assert (SCHEMA_DIR / "concepts.schema.yaml").is_file()
    assert not (ROOT / "config" / "schema.yaml").exists()


def test_readme_is_generated_from_the_schemas():
    assert README.read_text(encoding="utf-8") == configdoc.render(load_schema("config"))
    assert configdoc.main(["--check", "--output", str(README)]) == 0


def test_readme_documents_every_key_and_sheet_column():
    text = README.read_text(encoding="utf-8")
    for key in ("`sampling.seeds.count`", "`analysis.projection.<name>.seed`", "`results`"):
        assert key in text
    assert "`sampling.steps` **(hashed)**" in text and "`sampling.device` |" in text
    assert "### Concept sheets" in text and "| `terms` |" in text
    assert "snakemake --cores all --configfile" in text  # the header's prose is kept


def test_a_changed_description_makes_the_readme_stale(tmp_path, capsys):
    schema = load_schema("config")
    schema["properties"]["sampling"]["properties"]["steps"]["description"] = "Changed."
    changed = configdoc.render(schema)
    assert changed != README.read_text(encoding="utf-8")
    assert "| Changed. |" in changed
    rows = load_schema("concepts")
    rows["properties"]["id"]["description"] = "Changed too."
    assert configdoc.render(load_schema("config"), rows) != README.read_text(encoding="utf-8")
    stale = tmp_path / "README.md"
    stale.write_text(changed, encoding="utf-8")
    assert configdoc.main(["--check", "--output", str(stale)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(stale) in err and "\n" not in err
    assert configdoc.main(["--output", str(stale)]) == 0  # regenerates it
    assert configdoc.main(["--check", "--output", str(stale)]) == 0


def _cfg(sheet):
    return validate_config(workflow_config("m", sheet))


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("id\tset\tterms\ttemplates\nnurse\tp\tnurse\t\n# c\n\nchef\t \tchef\t\n", 5, "set"),
        ("id\tset\tterms\ttemplates\nnurse\tp\tnurse\t\nNurse 2\tp\tnurse\t\n", 3, "id"),
        ("id\tset\tprompts\nnurse\tp\ta nurse\nchef\tp\t | \n", 3, "terms"),
    ],
)
def test_a_bad_tsv_row_names_file_line_and_column(tmp_path, text, line, column):
    sheet = tmp_path / "bad.tsv"
    sheet.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_concepts(_cfg(sheet))
    message = str(info.value)
    assert message.startswith(f"{sheet}:{line}: column {column}: ") and "\n" not in message


@pytest.mark.parametrize(
    ("row", "column", "words"),
    [
        ("{id: owl, set: animals, terms: {a: b}}", "terms", "is not of type"),
        ("{id: owl, set: [animals], terms: owl}", "set", "is not of type"),
        ("{id: owl, set: animals, terms: owl, templates: [plain]}", "templates", "not of type"),
        ("{id: -3, set: animals, terms: owl}", "id", "concept id '-3' must be lower-case"),
        ("{id: baseline, set: animals, terms: owl}", "id", "reserved"),
        ("{id: owl, set: animals, terms: owl, templates: fancy}", "templates", "'fancy'"),
    ],
)
def test_a_bad_yaml_row_names_file_line_and_column(tmp_path, row, column, words):
    sheet = tmp_path / "bad.yaml"
    sheet.write_text(f"concepts:\n  - {{id: cat, set: animals, terms: [cat]}}\n  - {row}\n")
    with pytest.raises(ConfigError, match=words) as info:
        load_concepts(_cfg(sheet))
    message = str(info.value)
    assert message.startswith(f"{sheet}:3: column {column}: ") and "\n" not in message


def test_good_rows_still_load(tmp_path):
    sheet = tmp_path / "ok.yaml"
    sheet.write_text("- {id: 2020, set: years, terms: [2020, the year 2020]}\n")
    concepts = load_concepts(_cfg(sheet))
    assert concepts["2020"].terms == ("2020", "the year 2020")
    tsv = write_sheet(tmp_path / "ok.tsv", [("doctor", "professions", " doctor | physician ")])
    assert load_concepts(_cfg(tsv))["doctor"].terms == ("doctor", "physician")
