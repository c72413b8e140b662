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
    method_validated: bool,
    out_dir: str | Path,
    references: Mapping[str, Mapping[str, Any]] | None = None,
    published: Mapping[str, str | Path] | None = None,
    boot: Mapping[str, Any] | None = None,
    check: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """``findings.tsv``, ``<axis>.png`` per descriptor axis and ``references.tsv``.

    ``votes``/``control``: the ``votes.tsv`` of the findings readout and of the text control;
    ``published``: per reference, the ``bias.tsv`` of the defaults analysis it names;
    ``check``: this model's check (``agreement``, ``samples``: its tables) and the findings'
    ``sample_votes``, from which the shares are corrected for misclassification.
    """
    from scalex.analysis import figures
    from scalex.analysis.findings import compare_with_references, findings_table

    out = Path(out_dir)
    boot = dict(boot or {"bootstrap": 1000, "confidence": 0.95, "seed": 0})
    text = read_tsv(control) if control else None
    agreement = corrected = None
    if check:
        agreement = read_tsv(check["agreement"])
        corrected = corrected_table(
            read_tsv(check["sample_votes"]), read_tsv(check["samples"]), check["axes"], boot
        )
    table = findings_table(read_tsv(votes), readout, method_validated, text, agreement, corrected)
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


def corrected_table(
    sample_votes: pd.DataFrame,
    checked: pd.DataFrame,
    axes: Mapping[str, list[str]],
    boot: Mapping[str, Any],
) -> pd.DataFrame:
    """Every concept's shares corrected with its axis's checked confusion (Rogan-Gladen), with
    a bootstrap CI over the concept's samples and the checked samples together."""
    from scalex.analysis.calibration import corrected_shares

    frames = []
    for axis, values in axes.items():
        declared = checked.loc[checked["axis"] == axis]
        for concept, block in sample_votes[sample_votes["axis"] == axis].groupby(
            "concept", sort=False
        ):
            rows = corrected_shares(
                block,
                declared,
                values,
                n_boot=int(boot["bootstrap"]),
                level=float(boot["confidence"]),
                seed=int(boot["seed"]),
            )
            rows.insert(0, "axis", axis)
            rows.insert(0, "concept", concept)
            frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
            spec["method_validated"],
            Path(smk.output.table).parent,
            references=references,
            published=published,
            boot=json.loads(smk.params.bootstrap),
            check={
                "agreement": smk.input.check_agreement,
                "samples": smk.input.check_samples,
                "sample_votes": smk.input.sample_votes,
                "axes": spec["axes"],
            }
            if "check_agreement" in smk.input.keys()  # noqa: SIM118 - a Namedlist: in tests values
            else None,
        )

    run_rule(smk, work)
