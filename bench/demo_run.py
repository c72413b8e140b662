"""Benchmark: the default run (the README's first command) at two code versions, side by side.

    python bench/demo_run.py [--base 7892528] [--head HEAD] [--repeats 3] [--cores 2]

Each side is a clean git worktree of its revision (so it imports its own package: the worktree's
``scripts/`` goes first on ``PYTHONPATH``) running ``snakemake --cores N`` on the default config
from an empty results tree. The sides alternate, the order reversing on every other repeat;
medians of ``--repeats``. Both sides compute the same results tree (the settings hash is the
same), so equal work is checked by comparing the trees' file lists.
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

ROOT = Path(__file__).resolve().parents[1]


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
    )
    return where


def run_demo(tree: Path, results: Path, cores: int) -> tuple[float, int]:
    env = os.environ | {"PYTHONPATH": str(tree / "scripts"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores)]
    cmd += ["--config", f"results={results}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: snakemake failed\n{proc.stderr[-3000:]}")
    done = [line for line in proc.stderr.splitlines() if "steps (100%) done" in line]
    return wall, int(done[-1].split(" of ")[1].split()[0]) if done else -1


def files(results: Path) -> set[str]:
    """The result files, without logs and benchmarks (their names differ between layouts)."""
    return {
        str(p.relative_to(results))
        for p in results.rglob("*")
        if p.is_file() and not {"logs", "benchmarks"} & set(p.parts)
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="7892528")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "demo_run.json"))
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    sides = {"base": args.base, "head": args.head}
    times: dict[str, list[float]] = {name: [] for name in sides}
    jobs: dict[str, int] = {}
    outputs: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="scalex-demo-") as tmp:
        trees = {name: worktree(rev, Path(tmp) / name) for name, rev in sides.items()}
        try:
            for rep in range(args.repeats):
                order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
                for name in order:
                    results = Path(tmp) / f"results-{name}-{rep}"
                    wall, n = run_demo(trees[name], results, args.cores)
                    times[name].append(wall)
                    jobs[name] = n
                    if rep == 0:
                        outputs[name] = files(results)
                    print(f"{name} repeat {rep + 1}: {wall:.1f} s, {n} jobs", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    capture_output=True,
                )
    med = {name: statistics.median(t) for name, t in times.items()}
    record = {
        "benchmark": "demo_run",
        "date_utc": started.isoformat(timespec="seconds"),
        "command": "python bench/demo_run.py " + " ".join(argv or sys.argv[1:]),
        "revisions": {
            name: subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                capture_output=True,
                text=True,
            ).stdout.strip()
            for name, rev in sides.items()
        },
        "cores": args.cores,
        "times_s": times,
        "median_s": med,
        "jobs": jobs,
        "head_x_vs_base": med["base"] / med["head"],
        "same_result_files": outputs.get("base") == outputs.get("head"),
        "only_in_base": sorted(outputs.get("base", set()) - outputs.get("head", set())),
        "only_in_head": sorted(outputs.get("head", set()) - outputs.get("base", set())),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("median_s", "head_x_vs_base", "jobs")}, indent=1))


if __name__ == "__main__":
    main()
