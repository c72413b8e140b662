"""Rule readouts_summary: how far each readout's findings agree with the text-encoder control,
for every defaults and descriptor analysis, in one table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scalex.io import write_tsv
from scalex.rulekit import run_rule


def run(
    defaults: Mapping[str, str | Path], tops: Mapping[str, str | Path], out: str | Path
) -> pd.DataFrame:
    from scalex.analysis.readouts import agreement_with_text

    table = agreement_with_text(
        {name: pd.read_csv(p, sep="\t") for name, p in defaults.items()},
        {r: pd.read_csv(p, sep="\t") for r, p in tops.items()},
    )
    write_tsv(table, out)
    return table


def main(smk: Any) -> None:
    run_rule(
        smk,
        lambda: run(
            dict(zip(smk.params.names, smk.input.defaults, strict=True)),
            dict(zip(smk.params.readouts, smk.input.tops, strict=True)),
            smk.output[0],
        ),
    )
