"""Rule defaults: bias scores of target concepts along an attribute pair (e.g. woman - man), with
bootstrap intervals over prompts and seeds, per step and pooled; optionally correlated with a
reference table (e.g. labour statistics)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scalex.errors import ConfigError
from scalex.io import placeholder_figure, write_tsv
from scalex.rulekit import run_rule
from scalex.steps.jobs import job_diffs


def run(
    data: dict[str, Any],
    targets: Sequence[str],
    pair: tuple[str, str],
    out_dir: str | Path,
    boot: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
    readout: str | None = None,
) -> pd.DataFrame:
    """Bias table, bar chart, step profile and, with a reference table, its correlation;
    ``readout`` names the readout in the figures' titles."""
    from scalex.analysis import figures
    from scalex.analysis.defaults import correlate_with_reference, default_bias

    out = Path(out_dir)
    table = default_bias(
        data["diffs"],
        pair,
        targets=list(targets),
        templates=data["templates"],
        n_boot=boot["bootstrap"],
        level=boot["confidence"],
        seed=boot["seed"],
        step_names=data["timesteps"],
    )
    write_tsv(table, out / "bias.tsv")
    figures.bias_bar(table, out / "bias_bar.png", pair=pair, readout=readout)
    figures.bias_profile(table, out / "bias_profile.png", pair=pair, readout=readout)
    overall = table[table["step"].astype(str) == "all"].set_index("concept")["score"]
    rows = []
    if reference:
        ref = pd.read_csv(reference["file"], sep=None, engine="python")
        for col in (reference["key"], reference["column"]):
            if col not in ref.columns:
                raise ConfigError(
                    f"analysis.defaults reference: column {col!r} not in {reference['file']}"
                )
        series = ref.set_index(reference["key"])[reference["column"]].astype(float)
        corr = correlate_with_reference(
            overall, series, n_boot=boot["bootstrap"], seed=boot["seed"], level=boot["confidence"]
        )
        rows.append({k: v for k, v in corr.items() if k != "concepts"})
        figures.reference_scatter(
            overall,
            series,
            out / "reference_scatter.png",
            correlation=corr,
            xlabel=reference["column"],
            ylabel=f"published SCALEX score ({pair[0]} − {pair[1]})",
            readout=readout,
        )
    else:
        placeholder_figure(out / "reference_scatter.png", "no reference table configured")
    write_tsv(pd.DataFrame(rows), out / "reference_correlation.tsv")
    return table


def main(smk: Any) -> None:
    def work() -> None:
        spec = json.loads(smk.params.spec)
        data = job_diffs(smk)
        run(
            data,
            [c for c in smk.params.concepts if c not in spec["pair"]],
            tuple(spec["pair"]),
            Path(smk.output.table).parent,
            json.loads(smk.params.bootstrap),
            # the table as the rule's input (the same file): its content is in the job's key
            reference={**spec["reference"], "file": smk.input.reference[0]}
            if spec.get("reference")
            else None,
            readout=smk.wildcards.readout,
        )

    run_rule(smk, work, scope={"shards": list(smk.params.concepts)})
