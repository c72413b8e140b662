"""Prompt templates: ``{article} {term}`` filled in, and the baseline's prompts.

Its own module, importing nothing of scalex, so that the config (which derives the content
readout's prompt from the baseline) and the concept table both use it without importing each
other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

VOWELS = "aeiou"


def article(word: str) -> str:
    """'a' or 'an' before ``word`` (by its first letter; good enough for concept terms)."""
    return "an" if word[:1].lower() in VOWELS else "a"


def fill(template: str, term: str) -> str:
    """Fill ``{term}`` and ``{article}`` (a/an agreeing with the term) in a template."""
    return template.replace("{article}", article(term)).replace("{term}", term)


def expand(terms: Iterable[str], templates: list[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Prompts for every template times term, template-major, with each prompt's template."""
    prompts, index = [], []
    for t_i, template in enumerate(templates):
        for term in terms:
            prompts.append(fill(template, term))
            index.append(t_i)
    return tuple(prompts), tuple(index)


def baseline_prompts(cfg: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The baseline's prompts and their template indices (``concepts.baseline``): its own
    ``prompts``, or its ``terms`` through its templates."""
    spec = cfg["concepts"]["baseline"]
    if spec.get("prompts"):
        prompts = tuple(spec["prompts"])
        return prompts, tuple([0] * len(prompts))
    return expand(spec["terms"], cfg["concepts"]["templates"][spec.get("templates", "default")])
