"""Adding an analysis through the route the README documents ("Adding an analysis"), on a copy of
the workflow: the new analysis must appear in the DAG and the default run, in the report and in
the API, and the README's count of files it takes must be the number this test touches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
import yaml
from conftest import CONCEPT_ROWS, ROOT, workflow_config, write_sheet

pytestmark = pytest.mark.slow

STEP = '''\
"""Rule toy: how many concepts each readout's direction files hold (a toy analysis)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from scalex.io import read_directions, write_tsv
from scalex.rulekit import run_rule


def run(direction_files: list[str], out: str, settings_hash: str) -> pd.DataFrame:
    ids = read_directions(direction_files, settings_hash, fields=("aggregate",))["ids"]
    table = pd.DataFrame({"concepts": [len(ids)], "first": [sorted(ids)[0]]})
    write_tsv(table, out)
    return table


def main(smk: Any) -> None:
    run_rule(smk, lambda: run(list(smk.input), smk.output.table, smk.params.settings_hash))
'''

SCRIPT = '''\
"""Rule toy: see :mod:`scalex.steps.toy`."""

from scalex.steps import toy

toy.main(snakemake)  # noqa: F821 (injected by Snakemake)
'''

RULE = '''

rule toy:
    """A toy analysis: how many concepts each readout's directions hold."""
    input:
        [out("directions", bucket=b) for b in concept_buckets()],
    output:
        table=report(
            out("toy"),
            caption="../resources/report/toy.rst",
            category="Toy ({readout} readout)",
        ),
    log:
        logfile("toy", "readout"),
    benchmark:
        benchfile("toy", "readout")
    conda:
        "../envs/cpu.yaml"
    params:
        settings_hash=HASH,
    script:
        "../scripts/toy.py"
'''

ENTRY = """OUTPUTS: dict[str, Output] = {
    "toy": Output(
        "{readout}/analysis/toy/toy.tsv", "toy", "the toy analysis's count", target=True
    ),
"""


def readme_count(kind: str) -> int:
    """The number of files the README says adding an analysis (readout, family) takes."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"\*\*Adding an? {kind}\*\* touches (\w+) files", text)
    assert match, f"README states no file count for adding a {kind}"
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
    return words.get(match.group(1), 0) or int(match.group(1))


def test_a_toy_analysis_through_the_documented_route(tmp_path, tiny_models):
    wf = tmp_path / "workflow"
    for part in ("Snakefile", "rules", "scripts", "resources/report", "envs"):
        src, dst = ROOT / part, wf / part
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    touched: set[str] = set()

    def write(rel: str, text: str) -> None:
        (wf / rel).write_text(text)
        touched.add(rel)

    def edit(rel: str, old: str, new: str) -> None:
        text = (wf / rel).read_text()
        assert old in text, f"{rel} has no {old!r}"
        write(rel, text.replace(old, new, 1))

    # the route: step module, script, rule, outputs in the layout, caption
    write("scripts/scalex/steps/toy.py", STEP)
    write("scripts/toy.py", SCRIPT)
    edit("rules/analysis.smk", "rule defaults:", RULE.lstrip() + "\n\nrule defaults:")
    edit("scripts/scalex/layout.py", "OUTPUTS: dict[str, Output] = {\n", ENTRY)
    write("resources/report/toy.rst", "The toy analysis: concepts per readout.\n")
    assert len(touched) == readme_count("analysis"), sorted(touched)

    work = tmp_path / "run"
    sheet = write_sheet(work / "concepts.tsv")
    cfg = workflow_config(tiny_models["sd1"], sheet.resolve(), extraction={"buckets": 1})
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # the copy's package comes first: its layout and step are the ones that run
    env = os.environ | {"PYTHONPATH": str(wf / "scripts"), "HF_HUB_OFFLINE": "1"}

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--snakefile",
               str(wf / "Snakefile"), "--directory", str(work), "--configfile", str(config),
               *args]  # fmt: skip
        return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)

    plan = snakemake("-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert re.search(r"^rule toy:", plan.stdout, re.M), "the toy is not in the default run"
    done = snakemake()
    assert done.returncode == 0, done.stderr[-4000:]
    tree = next((work / "results").iterdir())
    readouts = [r for r in ("content", "prompt", "text") if (tree / r).is_dir()]
    assert readouts and all((tree / r / "analysis/toy/toy.tsv").is_file() for r in readouts)

    report = snakemake("--report", str(work / "report.zip"))
    assert report.returncode == 0, report.stderr[-3000:]
    with zipfile.ZipFile(work / "report.zip") as archive:
        listing = archive.namelist()
    assert len([n for n in listing if n.endswith("/toy.tsv")]) == len(readouts), listing

    api = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            from scalex.api import Results
            print(Results({str(tree)!r}).table("toy", readout="text").to_csv(sep=" "))
        """)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert api.returncode == 0, api.stderr[-2000:]
    row = api.stdout.splitlines()[1].split()
    assert row[1:] == [str(len(CONCEPT_ROWS)), "doctor"], api.stdout
