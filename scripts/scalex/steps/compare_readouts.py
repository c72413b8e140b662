"""Rule compare_readouts: one defaults analysis's per-concept scores for every readout side by
side, and the scatter of each against the text-encoder control."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scalex.io import placeholder_figure, write_tsv
from scalex.rulekit import run_rule


def run(
    bias_tables: Mapping[str, str | Path], out_table: str | Path, out_figure: str | Path, title: str
) -> pd.DataFrame:
    """Per-concept scores of every readout in one table, and the scatter against the text
    control (when it was extracted)."""
    from scalex.analysis import figures
    from scalex.analysis.readouts import defaults_side_by_side

    wide = defaults_side_by_side({r: pd.read_csv(p, sep="\t") for r, p in bias_tables.items()})
    write_tsv(wide, out_table)
    if "text_score" in wide and len(bias_tables) > 1:
        figures.readouts_scatter(wide, out_figure, title=title)
    else:
        placeholder_figure(Path(out_figure), "no text-encoder control to compare with")
    return wide


def main(smk: Any) -> None:
    run_rule(
        smk,
        lambda: run(
            dict(zip(smk.params.readouts, smk.input, strict=True)),
            smk.output.table,
            smk.output.figure,
            title=f"defaults: {smk.wildcards.name}",
        ),
    )
