"""Rules prompts and vocabulary_prompts: the prompt file of a bucket of concepts (or a chunk of
a vocabulary), the first file of every chain.

The spec reaches the job as a rule parameter (Snakemake pickles it into the script, so its size
is not limited by the shell's argument length) and is written as canonical JSON: an edited
concept changes its bucket's file and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalex.concepts import bucket_of
from scalex.io import write_prompts
from scalex.rulekit import run_rule
from scalex.templates import fill


def vocabulary_record(name: str, template: str, terms: Sequence[str]) -> dict[str, Any]:
    """A vocabulary chunk as one pseudo-concept whose prompts are the template filled with
    each term."""
    return {
        "id": "vocabulary",
        "set": f"vocabulary:{name}",
        "prompts": [fill(template, t) for t in terms],
        "template_index": [0] * len(terms),
        "terms": list(terms),
    }


def run(spec: dict[str, Any], out: str | Path) -> None:
    """Write ``spec`` (``{"concepts": [...], "seeds": [...]}``) as a prompt file."""
    write_prompts(spec["concepts"], spec["seeds"], out)


def main(smk: Any) -> None:
    run_rule(smk, lambda: run(json.loads(smk.params.spec), smk.output[0]))


def vocabulary_chunks(terms: Sequence[str], chunk_size: int) -> dict[str, list[str]]:
    """Chunk name -> terms (in file order), each term placed by a stable hash of itself, as
    concepts are placed in buckets: inserting or removing a line changes one chunk only.

    The number of chunks is the power of two at or above ``len(terms) / chunk_size``, so chunks
    hold about ``chunk_size`` terms (between half and all of it on average) and the count only
    changes when the vocabulary doubles or halves.
    """
    wanted = max(1, -(-len(terms) // max(1, chunk_size)))
    n_chunks = 1 << (wanted - 1).bit_length()
    out: dict[str, list[str]] = {}
    for term in terms:
        out.setdefault(bucket_of(term, n_chunks), []).append(term)
    return dict(sorted(out.items()))
