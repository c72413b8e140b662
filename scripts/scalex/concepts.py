"""Concept sheets: what a concept is, how its prompts are made, and which job extracts it.

A concept has a path-safe id, a set (professions, genders, ...) and prompts made of templates
times terms. Sheets are TSV (``id, set, terms, templates``; terms separated by ``|``) or YAML
(a list of mappings with the same keys, terms as a list, or explicit ``prompts``). Descriptor
concepts such as "old doctor" are derived from the config, so a sheet lists each concept once.
Every row is checked against the packaged schema ``scalex/schema/concepts.schema.yaml``.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from scalex.config import (
    ConfigError,
    canonical_json,
    default_filling_validator,
    load_schema,
    seeds,
)
from scalex.layout import BASELINE, derived_id
from scalex.templates import baseline_prompts, expand

#: a concept id (the schema's ``id`` pattern): path-safe, since it names files
ID_PATTERN = re.compile(load_schema("concepts")["properties"]["id"]["pattern"])
BASELINE_ID = BASELINE


@dataclass(frozen=True)
class Concept:
    """One concept: its id, set, prompts and the template index of each prompt."""

    id: str
    set: str
    prompts: tuple[str, ...]
    template_index: tuple[int, ...]
    terms: tuple[str, ...] = ()
    source: str = ""
    derived: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def spec(self) -> dict[str, Any]:
        """The fields that define the concept's activations, for rerun triggers."""
        spec = {
            "id": self.id,
            "set": self.set,
            "prompts": list(self.prompts),
            "template_index": list(self.template_index),
        }
        return spec | ({"derived": dict(self.derived)} if self.derived else {})

    def spec_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.spec()).encode()).hexdigest()[:12]


def _split_terms(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [t.strip() for t in str(value or "").split("|") if t.strip()]


def read_sheet(path: str | Path) -> list[dict[str, Any]]:
    """Raw rows of a TSV or YAML concept sheet, each with the file and row it came from."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"concept sheet {path} does not exist")
    if path.suffix in {".yaml", ".yml"}:
        try:
            node = yaml.compose(path.read_text())
            data = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError as err:
            raise ConfigError(f"concept sheet {path} is not valid YAML: {err}") from err
        if isinstance(data, dict):
            data = data.get("concepts", [])
            node = next((v for k, v in node.value if k.value == "concepts"), None)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ConfigError(f"concept sheet {path}: expected a list of mappings")
        rows = data
        # the line each list entry starts on (1-based), for messages naming file:line
        line_numbers = [item.start_mark.line + 1 for item in node.value] if data else []
    elif path.suffix in {".tsv", ".txt"}:
        try:
            # utf-8-sig drops a byte-order mark, which would otherwise rename the first column
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(f"concept sheet {path} is not UTF-8 text (byte {err.start})") from err
        numbered = [
            (n, ln)
            for n, ln in enumerate(text.splitlines(keepends=True), start=1)
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
        reader = csv.DictReader([ln for _, ln in numbered], delimiter="\t")
        try:
            rows = list(reader)
        except csv.Error as err:
            line = numbered[min(reader.line_num, len(numbered)) - 1][0] if numbered else 0
            raise ConfigError(f"concept sheet {path}:{line}: {err}") from err
        if rows and not {"id", "set"} <= set(rows[0]):
            raise ConfigError(f"concept sheet {path}: needs the columns id, set and terms")
        # comment and blank lines are skipped, so count the file's own lines (header first)
        line_numbers = [n for n, _ in numbered[1:]]
    else:
        raise ConfigError(f"concept sheet {path}: use a .tsv or .yaml file")
    return [dict(row, _source=f"{path}:{n}") for row, n in zip(rows, line_numbers, strict=True)]


#: the order in which a row's problems are reported (one per row: the first)
_COLUMNS = ("id", "set", "terms", "prompts", "templates")
_ID_RULE = "must be lower-case letters, digits, '_', '.' or '-' (it is used in file names)"


@lru_cache(maxsize=1)
def _row_validator():
    return default_filling_validator()(load_schema("concepts"))


def _normalised_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the schema sees it: blanks stripped, empty cells (and term lists) dropped."""
    out = {}
    for key, value in row.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue  # the row's origin; None holds the surplus cells of a long TSV line
        if isinstance(value, str):
            value = value.strip()
        if key in ("terms", "prompts") and isinstance(value, str | list):
            empty = not _split_terms(value)
        else:
            empty = value is None or value == ""
        if not empty:
            out[key] = value
    return out


def _row_error(row: dict[str, Any]) -> tuple[str, str] | None:
    """(column, message) of the first problem of a normalised row with the schema, or None."""
    errors = []
    for err in _row_validator().iter_errors(row):
        if err.absolute_path:
            column = str(err.absolute_path[0])
        elif err.validator == "required":
            column = next((c for c in err.validator_value if c not in row), "id")
        elif err.validator == "anyOf":
            column = "terms"
        else:
            column = ""
        errors.append((column, err))
    if not errors:
        return None
    rank = {c: i for i, c in enumerate(("", *_COLUMNS))}
    column, err = min(errors, key=lambda ce: rank.get(ce[0], len(rank)))
    cid = row.get("id", "")
    if column == "id":
        if err.validator == "not":
            return column, f"concept id {BASELINE_ID!r} is reserved for the baseline"
        return column, f"concept id {str(cid)!r} {_ID_RULE}"
    if column == "set" and err.validator == "required":
        return column, f"concept {cid!r} has no set"
    if err.validator == "anyOf":
        return column, f"concept {cid!r} has neither terms nor prompts"
    if not column:
        return "", err.message
    return column, f"concept {cid!r}: {err.message}"


def concept_from_row(row: dict[str, Any], templates: dict[str, list[str]]) -> Concept:
    """Validate one sheet row against the concept-sheet schema and expand its prompts.

    A bad row raises a :class:`ConfigError` of one line: ``<file>:<line>: column <c>: ...``.
    """
    where = row.get("_source", "concept sheet")
    clean = _normalised_row(row)
    problem = _row_error(clean)
    if problem is not None:
        column, message = problem
        raise ConfigError(
            f"{where}: column {column}: {message}" if column else f"{where}: {message}"
        )
    cid, cset = str(clean["id"]), clean["set"]
    if "prompts" in clean:
        prompts = tuple(_split_terms(clean["prompts"]))
        return Concept(cid, cset, prompts, tuple([0] * len(prompts)), (), where)
    terms = _split_terms(clean["terms"])
    group = clean["templates"]  # the schema fills in "default"
    if group not in templates:
        raise ConfigError(
            f"{where}: column templates: concept {cid!r} uses template group {group!r}, which is "
            "not a key of concepts.templates"
        )
    prompts, index = expand(terms, templates[group])
    return Concept(cid, cset, prompts, index, tuple(terms), where)


def derive_descriptor_concepts(
    concepts: list[Concept], cfg_desc: dict[str, Any], templates: dict[str, list[str]]
) -> list[Concept]:
    """Concepts "<value> <term>" for every descriptor value and every concept of a target set.

    The id is ``<value>-<concept id>`` and the set ``descriptor:<axis>``.
    """
    targets = set(cfg_desc.get("targets") or [])
    out = []
    for concept in concepts:
        if concept.set not in targets or not concept.terms:
            continue
        group_templates = _templates_of(concept, templates)
        for axis, values in (cfg_desc.get("axes") or {}).items():
            for value in values:
                terms = [f"{value} {term}" for term in concept.terms]
                prompts, index = expand(terms, group_templates)
                cid = derived_id(value, concept.id)
                out.append(
                    Concept(
                        cid,
                        f"descriptor:{axis}",
                        prompts,
                        index,
                        tuple(terms),
                        "descriptors",
                        derived={"axis": axis, "descriptor": value, "concept": concept.id},
                    )
                )
    return out


def _templates_of(concept: Concept, templates: dict[str, list[str]]) -> list[str]:
    """Recover the template list a concept was expanded with (its prompts tell which)."""
    for group in templates.values():
        if expand(concept.terms, group)[0] == concept.prompts:
            return group
    return templates["default"]


def load_concepts(cfg: dict[str, Any], base: str | Path = ".") -> dict[str, Concept]:
    """All concepts of the config, sheets first then derived descriptors, keyed by id."""
    templates = cfg["concepts"]["templates"]
    concepts: list[Concept] = []
    for sheet in cfg["concepts"]["sheets"]:
        for row in read_sheet(Path(base) / sheet):
            concepts.append(concept_from_row(row, templates))
    concepts += derive_descriptor_concepts(concepts, cfg["concepts"]["descriptors"], templates)
    by_id: dict[str, Concept] = {}
    for concept in concepts:
        if concept.id in by_id:
            raise ConfigError(
                f"concept id {concept.id!r} is defined twice ({by_id[concept.id].source} and "
                f"{concept.source})"
            )
        by_id[concept.id] = concept
    if not by_id:
        raise ConfigError("concepts.sheets define no concepts")
    return by_id


def baseline_concept(cfg: dict[str, Any]) -> Concept:
    """The neutral prompts that every concept is compared with, sampled with the same seeds."""
    spec = cfg["concepts"]["baseline"]
    prompts, index = baseline_prompts(cfg)
    terms = () if spec.get("prompts") else tuple(spec["terms"])
    return Concept(BASELINE_ID, BASELINE_ID, prompts, index, terms)


def bucket_of(concept_id: str, buckets: int) -> str:
    """Stable hash bucket of a concept: adding or removing others never moves it."""
    value = int(hashlib.sha256(concept_id.encode()).hexdigest()[:8], 16) % buckets
    return f"b{value:04d}"


#: The most samples per extraction job that ``extraction.buckets: auto`` aims at, on average.
SAMPLES_PER_BUCKET = 4096


def bucket_count(setting: int | str, samples: int) -> int:
    """``extraction.buckets`` resolved for a run of ``samples`` concept samples.

    ``auto`` is the smallest power of two that keeps buckets at or under
    :data:`SAMPLES_PER_BUCKET` samples on average: small runs get one job (one model load),
    large ones enough jobs to spread. When the count changes, the new buckets' jobs reuse every
    sample the old shards hold (:mod:`scalex.reuse`), so nothing is extracted twice.
    """
    if setting != "auto":
        return int(setting)
    count = 1
    while samples > SAMPLES_PER_BUCKET * count and count < 4096:
        count *= 2
    return count


def buckets(concepts: Iterable[str], n_buckets: int) -> dict[str, list[str]]:
    """Bucket name -> sorted concept ids, for the buckets that hold any concept."""
    out: dict[str, list[str]] = {}
    for cid in concepts:
        out.setdefault(bucket_of(cid, n_buckets), []).append(cid)
    return {b: sorted(ids) for b, ids in sorted(out.items())}


def check_analysis_references(
    cfg: dict[str, Any], concepts: dict[str, Concept], base: str | Path = "."
) -> None:
    """Every concept, set and file that the analysis section names must exist."""
    sets = {c.set for c in concepts.values()}
    analysis = cfg["analysis"]
    for name, spec in analysis["defaults"].items():
        key = f"analysis.defaults.{name}"
        for s in spec["targets"]:
            if s not in sets:
                raise ConfigError(f"{key}.targets: no concept has the set {s!r}")
        for cid in spec["pair"]:
            if cid not in concepts:
                raise ConfigError(f"{key}.pair: unknown concept {cid!r}")
        ref = spec.get("reference")
        if ref and not (Path(base) / ref["file"]).is_file():
            raise ConfigError(f"{key}.reference.file {ref['file']} does not exist")
    check_findings_references(cfg, base)
    for s in cfg["clustering"]["sets"] or []:
        if s not in sets:
            raise ConfigError(
                f"clustering.sets: no concept has the set {s!r} (sets: {sorted(sets)})"
            )
    for pair in cfg["clustering"]["remove_axes"]:
        for cid in pair:
            if cid not in concepts:
                raise ConfigError(f"clustering.remove_axes: unknown concept {cid!r}")
    discovery = analysis["discovery"]
    n_seeds = len(seeds(cfg))
    for name, vocab in discovery["vocabularies"].items():
        if not (Path(base) / vocab["file"]).is_file():
            raise ConfigError(
                f"analysis.discovery.vocabularies.{name}.file {vocab['file']} does not exist"
            )
        if vocab["seeds"] > n_seeds:
            raise ConfigError(
                f"analysis.discovery.vocabularies.{name}.seeds ({vocab['seeds']}) exceeds the "
                f"{n_seeds} seeds of sampling.seeds"
            )
        if "{term}" not in vocab["template"]:
            raise ConfigError(f"analysis.discovery.vocabularies.{name}.template lacks {{term}}")
    for name, query in discovery["queries"].items():
        for cid in query["positive"] + query.get("negative", []):
            if cid not in concepts:
                raise ConfigError(f"analysis.discovery.queries.{name}: unknown concept {cid!r}")
    if discovery["vocabularies"] and not discovery["queries"]:
        raise ConfigError("analysis.discovery has vocabularies but no queries")


def check_findings_references(cfg: dict[str, Any], base: str | Path = ".") -> None:
    """Each ``analysis.findings.references`` entry names an existing file with its key and
    column, a declared descriptor axis and value, and (optionally) a defaults analysis."""
    axes = cfg["concepts"].get("descriptors", {}).get("axes", {}) or {}
    for name, ref in cfg["analysis"].get("findings", {}).get("references", {}).items():
        key = f"analysis.findings.references.{name}"
        if ref["axis"] not in axes:
            raise ConfigError(
                f"{key}.axis: {ref['axis']!r} is not an axis of concepts.descriptors.axes "
                f"({sorted(axes)})"
            )
        if ref["value"] not in axes[ref["axis"]]:
            raise ConfigError(
                f"{key}.value: {ref['value']!r} is not a value of axis {ref['axis']!r} "
                f"({axes[ref['axis']]})"
            )
        published = ref.get("published")
        if published and published not in cfg["analysis"]["defaults"]:
            raise ConfigError(f"{key}.published: no defaults analysis {published!r}")
        path = Path(base) / ref["file"]
        if not path.is_file():
            raise ConfigError(f"{key}.file {ref['file']} does not exist")
        try:
            head = path.read_text(encoding="utf-8").splitlines()[:1] or [""]
            dialect = csv.Sniffer().sniff(head[0], delimiters=",\t;")
            columns = next(csv.reader(head, dialect))
        except (UnicodeDecodeError, csv.Error) as err:
            raise ConfigError(f"{key}.file {ref['file']} is not a CSV/TSV table: {err}") from err
        for name_of in ("key", "column"):
            if ref[name_of] not in columns:
                raise ConfigError(
                    f"{key}.{name_of}: column {ref[name_of]!r} not in {ref['file']} "
                    f"(columns: {list(columns)})"
                )


def check_conditioning_config(
    cfg: dict[str, Any], concepts: dict[str, Concept], base: str | Path = "."
) -> None:
    """Concepts, steps and files named by ``analysis.steering`` / ``analysis.projection`` exist.

    The baseline has no direction of its own, so it cannot be named.
    """
    steps = int(cfg["sampling"]["steps"])
    analysis = cfg["analysis"]
    for section in ("steering", "projection"):
        for name, spec in analysis.get(section, {}).items():
            key = f"analysis.{section}.{name}"
            for cid in [*spec["positive"], *spec.get("negative", [])]:
                if cid not in concepts or cid == "baseline":
                    raise ConfigError(f"{key}: unknown concept {cid!r}")
            if set(spec["positive"]) & set(spec.get("negative", [])):
                raise ConfigError(f"{key}: a concept is both positive and negative")
            chosen = spec.get("steps") if section == "steering" else spec.get("step_indices")
            for s in chosen or []:
                if s >= steps:
                    raise ConfigError(f"{key}: step {s} is beyond sampling.steps ({steps})")
            if section == "projection":
                if not (Path(base) / spec["images"]).is_dir():
                    raise ConfigError(f"{key}.images: folder {spec['images']} does not exist")
                if not (Path(base) / spec["labels"]).is_file():
                    raise ConfigError(f"{key}.labels: file {spec['labels']} does not exist")
