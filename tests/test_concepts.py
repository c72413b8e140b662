"""Concept sheets: reading, prompt expansion, derived descriptors, errors and buckets."""

from __future__ import annotations

import pytest
from conftest import ROOT, workflow_config, write_sheet
from scalex.concepts import (
    BASELINE_ID,
    baseline_concept,
    bucket_count,
    bucket_of,
    buckets,
    load_concepts,
)
from scalex.config import ConfigError, validate_config
from scalex.templates import article, expand, fill

TEMPLATES = {
    "default": ["a photo of {article} {term}", "a portrait of {article} {term}"],
    "plain": ["{term}"],
}


def _cfg(tmp_path, sheets, templates=TEMPLATES, descriptors=None):
    cfg = workflow_config("m", sheets[0])
    cfg["concepts"]["sheets"] = [str(s) for s in sheets]
    cfg["concepts"]["templates"] = templates
    if descriptors is not None:
        cfg["concepts"]["descriptors"] = descriptors
    return validate_config(cfg)


def test_article_and_fill():
    assert article("apple") == "an" and article("Engineer") == "an"
    assert article("doctor") == "a" and article("umbrella") == "an"
    assert fill("a photo of {article} {term}", "engineer") == "a photo of an engineer"
    assert fill("{article} {term} and {article} {term}", "cat") == "a cat and a cat"
    assert fill("{term} at work", "nurse") == "nurse at work"


def test_expand_is_template_major_with_template_index():
    prompts, index = expand(["doctor", "old nurse"], ["a {term}", "{article} {term}!"])
    assert prompts == ("a doctor", "a old nurse", "a doctor!", "an old nurse!")
    assert index == (0, 0, 1, 1)


def test_tsv_sheet(tmp_path):
    sheet = tmp_path / "c.tsv"
    sheet.write_text(
        "# a comment\n"
        "id\tset\tterms\ttemplates\n"
        "\n"
        "engineer\tprofessions\tengineer | builder\t\n"
        "# another comment\n"
        "apple\tfruit\tapple\tplain\n"
    )
    concepts = load_concepts(_cfg(tmp_path, [sheet]))
    assert list(concepts) == ["engineer", "apple"]
    eng = concepts["engineer"]
    assert eng.set == "professions" and eng.terms == ("engineer", "builder")
    assert eng.prompts == (
        "a photo of an engineer",
        "a photo of a builder",
        "a portrait of an engineer",
        "a portrait of a builder",
    )
    assert eng.template_index == (0, 0, 1, 1)
    assert eng.source == f"{sheet}:4"  # the file's own line, comments and blanks counted
    assert concepts["apple"].prompts == ("apple",) and concepts["apple"].source == f"{sheet}:6"


def test_yaml_sheet(tmp_path):
    sheet = tmp_path / "c.yaml"
    sheet.write_text(
        "concepts:\n"
        "  - id: judge\n"
        "    set: professions\n"
        "    terms: [judge, magistrate]\n"
        "  - id: red\n"
        "    set: colours\n"
        "    prompts: [something red, a red thing]\n"
        "  - {id: owl, set: animals, terms: owl, templates: plain}\n"
    )
    concepts = load_concepts(_cfg(tmp_path, [sheet]))
    assert concepts["judge"].prompts == (
        "a photo of a judge",
        "a photo of a magistrate",
        "a portrait of a judge",
        "a portrait of a magistrate",
    )
    assert concepts["red"].prompts == ("something red", "a red thing")
    assert concepts["red"].template_index == (0, 0)
    assert concepts["owl"].prompts == ("owl",)
    assert [c.source for c in concepts.values()] == [f"{sheet}:2", f"{sheet}:5", f"{sheet}:8"]
    plain = tmp_path / "list.yml"
    plain.write_text("- {id: x, set: s, terms: [x]}\n")
    assert list(load_concepts(_cfg(tmp_path, [plain]))) == ["x"]


def test_spec_hash_tracks_prompts(tmp_path):
    a = load_concepts(_cfg(tmp_path, [write_sheet(tmp_path / "a.tsv", [("c", "s", "cat")])]))
    b = load_concepts(_cfg(tmp_path, [write_sheet(tmp_path / "b.tsv", [("c", "s", "cow")])]))
    again = load_concepts(_cfg(tmp_path, [write_sheet(tmp_path / "c.tsv", [("c", "s", "cat")])]))
    assert a["c"].spec_hash() != b["c"].spec_hash()
    assert a["c"].spec_hash() == again["c"].spec_hash()  # the sheet's name does not matter


def test_descriptor_concepts(tmp_path):
    sheet = write_sheet(
        tmp_path / "c.tsv",
        [("doctor", "professions", "doctor"), ("man", "genders", "man")],
    )
    desc = {"targets": ["professions"], "axes": {"age": ["young", "Very Old"]}}
    concepts = load_concepts(_cfg(tmp_path, [sheet], descriptors=desc))
    assert list(concepts) == ["doctor", "man", "young-doctor", "very-old-doctor"]
    young = concepts["young-doctor"]
    assert young.set == "descriptor:age"
    assert young.terms == ("young doctor",)
    assert young.prompts == ("a photo of a young doctor", "a portrait of a young doctor")
    assert young.template_index == (0, 1)
    assert young.derived == {"axis": "age", "descriptor": "young", "concept": "doctor"}
    assert young.spec()["derived"]["concept"] == "doctor"
    assert concepts["very-old-doctor"].prompts[0] == "a photo of a Very Old doctor"


def test_descriptor_concepts_keep_the_template_group(tmp_path):
    sheet = tmp_path / "c.tsv"
    sheet.write_text("id\tset\tterms\ttemplates\nchef\tprofessions\tchef\tplain\n")
    desc = {"targets": ["professions"], "axes": {"wealth": ["rich", "poor"]}}
    concepts = load_concepts(_cfg(tmp_path, [sheet], descriptors=desc))
    assert concepts["rich-chef"].prompts == ("rich chef",)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("Doctor\tprofessions\tdoctor\t", "concept id 'Doctor'"),
        ("doc tor\tprofessions\tdoctor\t", "concept id 'doc tor'"),
        ("baseline\tprofessions\tperson\t", "reserved"),
        ("doctor\tprofessions\tdoctor\tfancy", "template group 'fancy'"),
        ("doctor\t\tdoctor\t", "no set"),
        ("doctor\tprofessions\t\t", "neither terms nor prompts"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, match):
    sheet = tmp_path / "bad.tsv"
    sheet.write_text("id\tset\tterms\ttemplates\nnurse\tprofessions\tnurse\t\n" + line + "\n")
    with pytest.raises(ConfigError, match=match) as info:
        load_concepts(_cfg(tmp_path, [sheet]))
    assert f"{sheet}:3" in str(info.value)


def test_duplicate_ids_name_both_places(tmp_path):
    first = write_sheet(tmp_path / "one.tsv", [("nurse", "professions", "nurse")])
    second = tmp_path / "two.tsv"
    second.write_text("id\tset\tterms\n# comment\nchef\tp\tchef\nnurse\tother\tnurse\n")
    with pytest.raises(ConfigError, match="defined twice") as info:
        load_concepts(_cfg(tmp_path, [first, second]))
    assert f"{first}:2" in str(info.value) and f"{second}:4" in str(info.value)


def test_derived_id_clashing_with_sheet_id(tmp_path):
    sheet = write_sheet(
        tmp_path / "c.tsv",
        [("doctor", "professions", "doctor"), ("old-doctor", "other", "x")],
    )
    desc = {"targets": ["professions"], "axes": {"age": ["young", "old"]}}
    with pytest.raises(ConfigError, match="'old-doctor' is defined twice"):
        load_concepts(_cfg(tmp_path, [sheet], descriptors=desc))


def test_bad_sheet_files(tmp_path):
    good = write_sheet(tmp_path / "good.tsv")
    cfg = _cfg(tmp_path, [good])
    for name, text, match in [
        ("c.csv", "id,set\n", "use a .tsv or .yaml"),
        ("c.tsv", "name\tterms\nx\ty\n", "columns id, set"),
        ("c.yaml", "- just a string\n", "list of mappings"),
        ("d.yaml", "concepts: [unclosed\n", "not valid YAML"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        cfg["concepts"]["sheets"] = [str(path)]
        with pytest.raises(ConfigError, match=match) as info:
            load_concepts(cfg)
        assert str(path) in str(info.value)
    cfg["concepts"]["sheets"] = [str(tmp_path / "missing.tsv")]
    with pytest.raises(ConfigError, match="missing.tsv"):
        load_concepts(cfg)
    empty = tmp_path / "empty.tsv"
    empty.write_text("id\tset\tterms\n")
    cfg["concepts"]["sheets"] = [str(empty)]
    with pytest.raises(ConfigError, match="define no concepts"):
        load_concepts(cfg)


def test_baseline_concept(tmp_path):
    cfg = _cfg(tmp_path, [write_sheet(tmp_path / "c.tsv")])
    cfg["concepts"]["baseline"] = {"terms": ["person", "adult"], "templates": "default"}
    base = baseline_concept(cfg)
    assert base.id == BASELINE_ID
    assert base.prompts == (
        "a photo of a person",
        "a photo of an adult",
        "a portrait of a person",
        "a portrait of an adult",
    )
    cfg["concepts"]["baseline"] = {"prompts": ["someone", "anyone"]}
    assert baseline_concept(cfg).prompts == ("someone", "anyone")


def test_reference_sheet_loads():
    cfg = validate_config(
        {"model": {"id": "m"}, "concepts": {"sheets": ["config/concepts/reference.tsv"]}},
        base=ROOT,
    )
    concepts = load_concepts(cfg, base=ROOT)
    assert "doctor" in concepts and concepts["doctor"].set == "professions"


def test_bucket_of_is_stable_and_independent():
    ids = [f"concept-{i}" for i in range(200)]
    alone = {cid: bucket_of(cid, 8) for cid in ids}
    # known value: a change of hash would move every existing shard
    # (sha256-based, so the same in every process, unlike Python's salted hash())
    assert bucket_of("doctor", 8) == "b0001" and bucket_of("nurse", 8) == "b0006"
    assert all(b.startswith("b") and len(b) == 5 and 0 <= int(b[1:]) < 8 for b in alone.values())
    assert len(set(alone.values())) == 8  # 200 ids fill all 8 buckets
    with_others = buckets(ids, 8)
    without_half = buckets(ids[::2], 8)
    for table in (with_others, without_half):
        for bucket, members in table.items():
            assert members == sorted(members)
            assert all(alone[m] == bucket for m in members)
    assert sum(len(v) for v in with_others.values()) == 200
    assert list(with_others) == sorted(with_others)
    assert buckets(["a", "b"], 1) == {"b0000": ["a", "b"]}


def test_auto_bucket_count_doubles_with_the_run():
    """``auto``: one job up to 4,096 samples, then the smallest power of two keeping buckets at
    or under 4,096 samples on average; a number is taken as given."""
    assert bucket_count("auto", 0) == bucket_count("auto", 4096) == 1
    assert bucket_count("auto", 4097) == 2 and bucket_count("auto", 8192) == 2
    assert bucket_count("auto", 8193) == 4 and bucket_count("auto", 100_000) == 32
    assert bucket_count("auto", 10**12) == 4096  # the schema's maximum
    assert bucket_count(3, 10**6) == 3 and bucket_count(8, 0) == 8
