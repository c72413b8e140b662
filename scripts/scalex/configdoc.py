"""Generate ``config/README.md`` from the packaged JSON schemas, so the docs cannot drift.

One table per top-level section of the config schema (key as a dotted path, type, default,
description, allowed values or ranges), then the concept-sheet schema, wrapped in the prose of
``schema/README.header.md`` and ``schema/README.footer.md`` (when present)::

    python -m scalex.configdoc           # write config/README.md
    python -m scalex.configdoc --check   # exit 1 when config/README.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from scalex.config import NON_SEMANTIC, SCHEMA_DIR, load_schema

DEFAULT_OUTPUT = Path("config/README.md")
#: sections whose keys (except the non-semantic ones) identify the results tree
HASHED_SECTIONS = ("model", "sampling", "extraction")
COLUMNS = ("key", "type", "default", "description", "allowed")


def _template(name: str) -> str:
    path = SCHEMA_DIR / name
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def _cell(text: str) -> str:
    """Table-cell text: one line, pipes escaped (GitHub needs that inside code spans too)."""
    return re.sub(r"\s+", " ", str(text)).strip().replace("|", "\\|")


def _value(value: Any) -> str:
    """A value as it would be written in the YAML config, in a code span."""
    if value == "":
        return '`""`'
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    text = text.strip().removesuffix("...").strip()
    return f"`{text}`"


def _branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for key in ("oneOf", "anyOf") for b in node.get(key, []) if isinstance(b, dict)]


def _type(node: dict[str, Any]) -> str:
    """A short human type: ``integer``, ``list of string``, ``string or null``, ``mapping``."""
    if "const" in node or "enum" in node:
        values = node.get("enum", [node.get("const")])
        names = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
        kinds = dict.fromkeys(names.get(type(v).__name__, "null") for v in values)
        return " or ".join(kinds)
    if "$ref" in node:  # a reference to another key's schema: say where to read it
        return f"as `{node['$ref'].removeprefix('#/properties/').replace('/properties/', '.')}`"
    kinds = node.get("type")
    if kinds is None:
        parts = [_type(b) for b in _branches(node)]
        return " or ".join(dict.fromkeys(p for p in parts if p)) or "any"
    out = []
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind == "array" and isinstance(node.get("items"), dict):
            item = _type(node["items"])
            out.append(f"list of ({item})" if " or " in item else f"list of {item}")
        elif kind == "array":
            out.append("list")
        elif kind == "object" and "properties" not in node:
            out.append("mapping")
        else:
            out.append(kind)
    return " or ".join(out)


def _range(node: dict[str, Any]) -> list[str]:
    bounds = []
    for key, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            bounds.append(f"{sign} {node[key]}")
    return [", ".join(bounds)] if bounds else []


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _allowed(node: dict[str, Any]) -> str:
    """Allowed values and ranges the schema states for ``node`` (not its sub-keys)."""
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(_value(v) for v in node["enum"]))
    if "const" in node:
        parts.append(_value(node["const"]))
    parts += _range(node)
    if "not" in node and "const" in node["not"]:
        parts.append(f"not {_value(node['not']['const'])}")
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    if "minLength" in node:
        parts.append(f"at least {_count(node['minLength'], 'character')}")
    low, high = node.get("minItems"), node.get("maxItems")
    if low is not None and high is not None:
        parts.append(_count(low, "item") if low == high else f"{low} to {high} items")
    elif low is not None:
        parts.append(f"at least {_count(low, 'item')}")
    elif high is not None:
        parts.append(f"at most {_count(high, 'item')}")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    items = node.get("items")
    if isinstance(items, dict) and "properties" not in items and _allowed(items):
        parts.append(f"each item: {_allowed(items)}")
    names = node.get("propertyNames", {})
    if "pattern" in names:
        parts.append(f"names match `{names['pattern']}`")
    for branch in _branches(node):
        if "properties" not in branch and _allowed(branch):
            parts.append(f"as {_type(branch)}: {_allowed(branch)}")
    return "; ".join(parts)


def _rows(
    node: dict[str, Any], path: str, required: bool
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(dotted path, schema, required) of ``node`` and of every key below it."""
    yield path, node, required
    yield from _children(node, path)


def _children(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    prefix = f"{path}." if path else ""
    for holder in [node, *_branches(node)]:
        needed = set(holder.get("required", []))
        for key, child in holder.get("properties", {}).items():
            yield from _rows(child, f"{prefix}{key}", key in needed)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _rows(extra, f"{prefix}<name>", False)
    items = node.get("items")
    if isinstance(items, dict) and ("properties" in items or "description" in items):
        yield from _rows(items, f"{path}[]", False)


def _hashed(path: str) -> bool:
    section, _, rest = path.partition(".")
    key = rest.split(".")[0]
    return section in HASHED_SECTIONS and bool(key) and key not in NON_SEMANTIC.get(section, ())


def _table(
    rows: Iterator[tuple[str, dict[str, Any], bool]], mark_hashed: bool, first: str = "key"
) -> list[str]:
    names = (first, *COLUMNS[1:])
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for path, node, required in rows:
        key = f"`{path}`" + (" **(hashed)**" if mark_hashed and _hashed(path) else "")
        default = "required" if required else "—"
        default = _value(node["default"]) if "default" in node else default
        cells = (key, _type(node), default, node.get("description", ""), _allowed(node))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _concept_section(schema: dict[str, Any]) -> list[str]:
    lines = ["### Concept sheets", "", schema.get("description", "").strip(), ""]
    columns = " and ".join(f"`{c}`" for c in schema.get("required", []))
    either = " or ".join(f"`{c}`" for b in schema.get("anyOf", []) for c in b.get("required", []))
    columns += f", and {either}" if either else ""
    lines += [f"Every row needs the columns {columns}.", ""]
    lines += _table(_children(schema, ""), mark_hashed=False, first="column")
    return lines


def render(
    schema: dict[str, Any],
    concept_schema: dict[str, Any] | None = None,
    header: str | None = None,
    footer: str | None = None,
) -> str:
    """The Markdown of ``config/README.md`` for the config schema (and the concept-sheet schema;
    the packaged one and the packaged header and footer when not given)."""
    if concept_schema is None:
        concept_schema = load_schema("concepts")
    header = _template("README.header.md") if header is None else header.strip()
    footer = _template("README.footer.md") if footer is None else footer.strip()
    needed = set(schema.get("required", []))
    blocks = [header] if header else []
    for name, section in schema.get("properties", {}).items():
        lines = [f"## `{name}`", ""]
        if "properties" in section:
            if section.get("description"):
                lines += [section["description"].strip(), ""]
            lines += _table(_children(section, name), mark_hashed=True)
        else:
            lines += _table(_rows(section, name, name in needed), mark_hashed=True)
        if name == "concepts":
            lines += ["", *_concept_section(concept_schema)]
        blocks.append("\n".join(lines))
    if footer:
        blocks.append(footer)
    return "\n\n".join(blocks) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scalex.configdoc",
        description="Write config/README.md from the packaged config and concept-sheet schemas.",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs from the generated text"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="default: config/README.md"
    )
    args = parser.parse_args(argv)
    text = render(load_schema("config"))
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current != text:
            print(
                f"{args.output} is out of date with scripts/scalex/schema/: "
                "run `python -m scalex.configdoc` (make config-docs)",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
