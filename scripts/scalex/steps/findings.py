"""Rule findings: the run's headline table, the estimated share of each concept's generated
samples that show each identity value (validated readout), with the text control beside it, a
figure per axis, and the comparison with reference tables (e.g. labour statistics)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scalex.io import read_reference_table, read_tsv, write_tsv
from scalex.rulekit import run_rule


def run(
    votes: str | Path,
    control: str | Path | None,
    readout: str,
    validated: bool,
    out_dir: str | Path,
    references: Mapping[str, Mapping[str, Any]] | None = None,
    published: Mapping[str, str | Path] | None = None,
    boot: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """``findings.tsv``, ``<axis>.png`` per descriptor axis and ``references.tsv``.

    ``votes``/``control``: the ``votes.tsv`` of the findings readout and of the text control;
    ``published``: per reference, the ``bias.tsv`` of the defaults analysis it names.
    """
    from scalex.analysis import figures
    from scalex.analysis.findings import compare_with_references, findings_table

    out = Path(out_dir)
    boot = dict(boot or {"bootstrap": 1000, "confidence": 0.95, "seed": 0})
    text = read_tsv(control) if control else None
    table = findings_table(read_tsv(votes), readout, validated, text)
    write_tsv(table, out / "findings.tsv")
    for axis in dict.fromkeys(table["axis"]):
        figures.findings_figure(table, axis, out / f"{axis}.png", readout=readout)
    references = dict(references or {})
    tables = {name: read_reference_table(spec["file"]) for name, spec in references.items()}
    scores = {name: pooled_scores(read_tsv(path)) for name, path in (published or {}).items()}
    compared = compare_with_references(
        table,
        references,
        tables,
        scores,
        n_boot=boot["bootstrap"],
        seed=boot["seed"],
        level=boot["confidence"],
    )
    write_tsv(compared, out / "references.tsv")
    return table


def pooled_scores(bias: pd.DataFrame) -> pd.Series:
    """The published cosine score of each concept, pooled over steps."""
    return bias[bias["step"].astype(str) == "all"].set_index("concept")["score"].astype(float)


def main(smk: Any) -> None:
    def work() -> None:
        spec = json.loads(smk.params.spec)
        published = dict(zip(spec["published_names"], smk.input.published, strict=True))
        references = {
            name: {**ref, "file": path}
            for (name, ref), path in zip(
                spec["references"].items(), smk.input.references, strict=True
            )
        }
        run(
            smk.input.votes,
            smk.input.get("control"),
            spec["readout"],
            spec["validated"],
            Path(smk.output.table).parent,
            references=references,
            published=published,
            boot=json.loads(smk.params.bootstrap),
        )

    run_rule(smk, work)
