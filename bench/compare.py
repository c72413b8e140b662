"""Benchmark: a two-model comparison against two separate runs, as whole processes.

    python bench/compare.py [--repeats 3] [--cores 2] [--seeds N]

Each side starts from an empty results folder with the demo config (``config/config.yaml``):

- ``compare``: one ``snakemake --configfile config/config.yaml config/compare-example.yaml``:
  every output of the base model, what the diff needs of the new model (``stereotyped-ft``), and
  the diff;
- ``separate``: ``snakemake`` on the base config, then on the same config with the new model:
  each model's every output, and no comparison (what a user runs without ``compare:``).

Both sides use the example's seeds (64), or ``--seeds N`` (e.g. the demo's 16, for a shorter
run). Also the ``diff`` job's own time (its Snakemake benchmark file). The sides alternate, the
order reversing on every other repeat; medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NEW_MODEL = "resources/worlds/stereotyped-ft/model"
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def snakemake(results: Path, configs: list[Path], cores: int) -> float:
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "rules"]
    cmd += ["--config", f"results={results}", "--configfile", *map(str, configs), "--", "all"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def run_side(side: str, work: Path, cores: int, seeds: int | None) -> dict:
    demo = ROOT / "config" / "config.yaml"
    results = work / "results"
    example = yaml.safe_load((ROOT / "config" / "compare-example.yaml").read_text())
    if seeds is not None:
        example["sampling"]["seeds"] = {"start": 0, "count": seeds}
    compare = work / "compare.yaml"
    compare.write_text(yaml.safe_dump(example))
    if side == "compare":
        total = snakemake(results, [demo, compare], cores)
        bench = list(results.glob("*/benchmarks/diff/*.tsv"))
        diff_s = float(bench[0].read_text().splitlines()[1].split("\t")[0]) if bench else None
        return {"total_s": total, "diff_s": diff_s}
    new = work / "new.yaml"
    new.write_text(yaml.safe_dump({"model": {"id": NEW_MODEL}, "sampling": example["sampling"]}))
    base = work / "base.yaml"
    base.write_text(yaml.safe_dump({"sampling": example["sampling"]}))
    first = snakemake(results, [demo, base], cores)
    second = snakemake(results, [demo, new], cores)
    return {"total_s": first + second, "base_s": first, "new_s": second}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=None, help="default: the example's")
    parser.add_argument("--out", default=str(ROOT / "bench" / "compare.json"))
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    runs: dict[str, list[dict]] = {"compare": [], "separate": []}
    with tempfile.TemporaryDirectory(prefix="scalex-compare-") as tmp:
        for rep in range(args.repeats):
            order = ["compare", "separate"] if rep % 2 == 0 else ["separate", "compare"]
            for side in order:
                work = Path(tmp) / f"{side}-{rep}"
                work.mkdir()
                runs[side].append(run_side(side, work, args.cores, args.seeds))
                print(f"{side} repeat {rep + 1}: {runs[side][-1]}", flush=True)
    median = {side: statistics.median(r["total_s"] for r in rs) for side, rs in runs.items()}
    diff = [r["diff_s"] for r in runs["compare"] if r["diff_s"] is not None]
    result = {
        "benchmark": "compare",
        "date_utc": started.isoformat(timespec="seconds"),
        "command": "python bench/compare.py " + " ".join(argv or sys.argv[1:]),
        "cores": args.cores,
        "seeds": args.seeds or "the example's (64)",
        "cpu": cpu_name(),
        "runs": runs,
        "median_s": median,
        "compare_over_separate": median["compare"] / median["separate"],
        "diff_job_median_s": statistics.median(diff) if diff else None,
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
