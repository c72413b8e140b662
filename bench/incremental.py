"""Benchmark: what a rerun costs after a small change, against the full run it follows.

    python bench/incremental.py [--concepts 150] [--repeats 3] [--cores 2] [--buckets auto]

The default config (the bundled reference model, every readout and analysis) with its concept
sheet grown to ``--concepts`` concepts (the reference sheet, its derived descriptor concepts and
``thing-NNN`` fillers). Per repeat, from an empty results tree:

1. the full run (``snakemake --cores N``);
2. one concept edited (a filler's term replaced), rerun;
3. an analysis-only change (``analysis.bootstrap`` 1000 -> 999), rerun.

For each it records the wall time of the whole ``snakemake`` process, the jobs it ran and the
samples the extraction jobs extracted and reused (from their logs). Medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EDITED = "thing-007"
PATTERN = re.compile(r"(\d+) samples: (\d+) reused from earlier shards, (\d+) to extract")


def write_config(work: Path, n_concepts: int, buckets: str, bootstrap: int, edited: bool) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    from scalex.concepts import load_concepts
    from scalex.config import load_config

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    reference = (ROOT / "config" / "concepts" / "reference.tsv").read_text()
    base = load_config(ROOT / "config" / "config.yaml")
    have = len(load_concepts(base, base=ROOT))
    fillers = [
        f"thing-{i:03d}\tthings\t{'gadget' if edited and i == 7 else 'thing'}{i}\tdefault"
        for i in range(max(0, n_concepts - have))
    ]
    sheet = work / "concepts.tsv"
    sheet.write_text(reference.rstrip("\n") + "\n" + "\n".join(fillers) + "\n")
    cfg["results"] = str(work / "results")
    cfg["model"]["id"] = str(ROOT / cfg["model"]["id"])
    cfg["concepts"]["sheets"] = [str(sheet)]
    cfg["extraction"]["buckets"] = buckets if buckets == "auto" else int(buckets)
    cfg["extraction"]["progress"] = False
    cfg["analysis"]["bootstrap"] = bootstrap
    for section in ("discovery",):
        for spec in cfg["analysis"][section].get("vocabularies", {}).values():
            spec["file"] = str(ROOT / spec["file"])
    for spec in cfg["analysis"].get("projection", {}).values():
        spec["images"] = str(ROOT / spec["images"])
        spec["labels"] = str(ROOT / spec["labels"])
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(work: Path, config: Path, cores: int) -> dict[str, float]:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--directory", str(work),
           "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config)]  # fmt: skip
    since = time.time()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed\n{proc.stderr[-4000:]}")
    done = [line for line in proc.stderr.splitlines() if "steps (100%) done" in line]
    jobs = int(done[-1].split(" of ")[1].split()[0]) if done else 0
    reused = extracted = 0
    for log in (work / "results").glob("*/logs/extract*/*.log"):
        if log.stat().st_mtime >= since and (m := PATTERN.search(log.read_text())):
            reused += int(m[2])
            extracted += int(m[3])
    return {"wall_s": wall, "jobs": jobs, "reused": reused, "extracted": extracted}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--buckets", default="auto")
    parser.add_argument("--out", default=str(ROOT / "bench" / "incremental.json"))
    parser.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    runs: dict[str, list[dict[str, float]]] = {"full": [], "edit_one": [], "analysis_only": []}
    with tempfile.TemporaryDirectory(prefix="scalex-incremental-") as tmp:
        if args.workdir:
            tmp = args.workdir
        for rep in range(args.repeats):
            work = Path(tmp) / f"rep{rep}"
            work.mkdir(parents=True)
            steps = [
                ("full", 1000, False),
                ("edit_one", 1000, True),
                ("analysis_only", 999, True),
            ]
            for name, bootstrap, edited in steps:
                config = write_config(work, args.concepts, args.buckets, bootstrap, edited)
                runs[name].append(run(work, config, args.cores))
                print(f"repeat {rep + 1} {name}: {runs[name][-1]}", flush=True)
    med = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    full = med["full"]
    record = {
        "benchmark": "incremental",
        "date_utc": started.isoformat(timespec="seconds"),
        "command": "python bench/incremental.py " + " ".join(argv or sys.argv[1:]),
        "revision": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "cores": args.cores,
        "concepts": args.concepts,
        "buckets": args.buckets,
        "runs": runs,
        "median": med,
        "edit_one_samples_share": med["edit_one"]["extracted"] / max(1, full["extracted"]),
        "edit_one_time_share": med["edit_one"]["wall_s"] / full["wall_s"],
        "analysis_only_time_share": med["analysis_only"]["wall_s"] / full["wall_s"],
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k.endswith("share")}, indent=1))


if __name__ == "__main__":
    main()
