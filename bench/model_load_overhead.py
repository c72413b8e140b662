"""Benchmark: the share of model loading and job start-up in the workflow's extract jobs.

    python bench/model_load_overhead.py [--quick] [--full] [--out bench/overhead.json]

Builds a throw-away workflow config with 200 synthetic concepts (2 templates, 4 seeds, 4 steps)
and runs the real workflow (``snakemake --cores 1``, rule ``extract`` and the ``prompts`` rules it
needs) on it, once per model and per ``extraction.buckets`` value: 8 (the default: a few jobs
that each load the model once) and 200 (about one job per concept; hash buckets leave some empty,
so it is fewer than 200 jobs). It then reads, for every extract job:

- the job log line ``model load X s, extraction Y s (...), write Z s``;
- the Snakemake benchmark TSV (column ``s``: wall seconds of the job, including the Python
  start-up and imports of the script);

and reports total job wall time, the sum of model loading, and the overhead = sum of
(job wall - extraction - write), i.e. start-up + imports + model load + the rest.

Without ``--full``, a bucket count with more than ``--max-jobs`` jobs runs only a deterministic
sample of them (every k-th shard, plus the baseline) and extrapolates sums to all its jobs; the
report says so. Models: the tiny random ``sd1`` pipeline, and the bundled reference model when
``resources/worlds/stereotyped/model/model_index.json`` exists.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))  # random_models: test fixtures, not the product

LOG_LINE = re.compile(
    r"model load ([0-9.]+) s, extraction ([0-9.]+) s \(([0-9.]+) samples/s\), write ([0-9.]+) s"
)


def write_config(work: Path, model: str, n_concepts: int, n_buckets: int, args) -> Path:
    sheet = work / "concepts.tsv"
    if not sheet.exists():
        rows = ["id\tset\tterms\ttemplates"]
        rows += [f"thing-{i:04d}\tthings\tthing{i}\tdefault" for i in range(n_concepts)]
        sheet.write_text("\n".join(rows) + "\n")
    cfg = {
        "results": "results",
        "model": {"id": model},
        "sampling": {
            "steps": args.steps,
            "seeds": {"start": 0, "count": args.seeds},
            "device": args.device,
            "batch_size": args.batch_size,
        },
        "extraction": {"buckets": n_buckets, "progress": False},
        "concepts": {
            "sheets": [str(sheet)],
            "templates": {"default": ["a photo of {article} {term}", "a picture of {term}"]},
            "baseline": {"terms": ["person"], "templates": "default"},
        },
        "analysis": {"defaults": {}, "descriptors": {"enabled": False}},
    }
    path = work / f"config-{n_buckets}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def shard_targets(config_path: Path) -> tuple[str, list[str]]:
    """Results tree and every extract output of the config, as the workflow names them."""
    from scalex.concepts import BASELINE_ID, buckets, load_concepts
    from scalex.config import results_tree, validate_config

    cfg = validate_config(yaml.safe_load(config_path.read_text()), base=ROOT)
    tree = results_tree(cfg)
    ids = list(load_concepts(cfg, base=ROOT))
    names = list(buckets(ids, cfg["extraction"]["buckets"])) + [BASELINE_ID]
    return tree, [f"{tree}/activations/{b}.h5" for b in names]


def snakemake(work: Path, config: Path, targets: list[str], extra: list[str]) -> float:
    """Run the real workflow on ``targets``; return its wall seconds."""
    cmd = [
        sys.executable, "-m", "snakemake",
        *targets,
        "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(work),
        "--configfile", str(config),
        "--cores", "1",
        *extra,
        "--quiet", "all",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"snakemake failed in {work}: {' '.join(cmd[3:6])} ...")
    return time.perf_counter() - t0


def prompts_phase(work: Path, model: str, args) -> dict:
    """Write the prompt file of every bucket (and the baseline) of the first bucket count."""
    config = write_config(work, model, args.concepts, args.buckets[0], args)
    _, shards = shard_targets(config)
    targets = [t.replace("/activations/", "/prompts/").replace(".h5", ".json") for t in shards]
    n = len(targets)
    # Plain `snakemake` spawns one Snakemake process per `run:` job on POSIX (seconds each);
    # --force-use-threads runs them in the Snakemake process, as the test suite does.
    extra = [] if args.spawn_prompts else ["--force-use-threads"]
    wall = snakemake(work, config, targets, extra)
    print(f"  prompts: {n} jobs in {wall:.1f} s ({'spawned' if not extra else 'in-thread'})")
    return {"jobs": n, "wall_s": round(wall, 2), "mode": "spawned" if not extra else "in-thread"}


def run_case(work: Path, model: str, n_buckets: int, args) -> dict:
    config = write_config(work, model, args.concepts, n_buckets, args)
    tree, targets = shard_targets(config)
    all_jobs = len(targets)
    sampled = targets
    if not args.full and all_jobs > args.max_jobs:
        step = all_jobs / (args.max_jobs - 1)
        sampled = sorted({targets[int(i * step)] for i in range(args.max_jobs - 1)})
        sampled.append(targets[-1])  # the baseline shard
    for sub in ("activations", "logs/extract", "benchmarks/extract"):
        shutil.rmtree(work / tree / sub, ignore_errors=True)  # from another bucket count
    print(f"  buckets={n_buckets}: {all_jobs} extract jobs, running {len(sampled)}", flush=True)
    total = snakemake(work, config, sampled, [])
    jobs = []
    for target in sampled:
        name = Path(target).stem
        log = (work / tree / "logs" / "extract" / f"{name}.log").read_text()
        match = LOG_LINE.search(log)
        if match is None:
            raise SystemExit(f"no timing line in the log of {name}")
        load_s, extract_s, _, write_s = (float(x) for x in match.groups())
        with open(work / tree / "benchmarks" / "extract" / f"{name}.tsv") as fh:
            wall_s = float(next(csv.DictReader(fh, delimiter="\t"))["s"])
        jobs.append({"shard": name, "wall_s": wall_s, "load_s": load_s,
                     "extract_s": extract_s, "write_s": write_s})  # fmt: skip
    scale = all_jobs / len(jobs)

    def total_of(key: str) -> float:
        return sum(j[key] for j in jobs) * scale

    wall = total_of("wall_s")
    overhead = sum(j["wall_s"] - j["extract_s"] - j["write_s"] for j in jobs) * scale
    return {
        "buckets": n_buckets,
        "extract_jobs": all_jobs,
        "jobs_run": len(jobs),
        "extrapolated": len(jobs) < all_jobs,
        "snakemake_wall_s_of_run": round(total, 2),
        "extract_wall_s": wall,
        "load_s": total_of("load_s"),
        "extraction_s": total_of("extract_s"),
        "write_s": total_of("write_s"),
        "overhead_s": overhead,
        "overhead_share": overhead / wall,
        "load_share": total_of("load_s") / wall,
        "median_job_wall_s": statistics.median(j["wall_s"] for j in jobs),
        "median_job_overhead_s": statistics.median(
            j["wall_s"] - j["extract_s"] - j["write_s"] for j in jobs
        ),
        "jobs": jobs,
    }


def markdown(result: dict) -> str:
    lines = [
        "| model | buckets | extract jobs (run) | total extract wall s | model load s "
        "| extraction s | overhead s | overhead share | load share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        ran = f"{case['extract_jobs']} ({case['jobs_run']}{'*' if case['extrapolated'] else ''})"
        lines.append(
            f"| {case['model']} | {case['buckets']} | {ran} | {case['extract_wall_s']:.1f} | "
            f"{case['load_s']:.1f} | {case['extraction_s']:.1f} | {case['overhead_s']:.1f} | "
            f"{case['overhead_share']:.1%} | {case['load_share']:.1%} |"
        )
    if any(c["extrapolated"] for c in result["cases"]):
        lines.append(
            "\n\\* a sample of the jobs ran; sums are scaled to all jobs (`--full` runs all)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="--max-jobs 6, tiny model only")
    parser.add_argument("--full", action="store_true", help="run every job, no extrapolation")
    parser.add_argument("--concepts", type=int, default=200)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--buckets", type=int, nargs="+", default=[8, 200])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-jobs", type=int, default=12)
    parser.add_argument("--out", default=str(ROOT / "bench" / "overhead.json"))
    parser.add_argument("--keep", help="keep the work folders under this folder")
    parser.add_argument("--models", nargs="+", help="subset of: tiny-sd1 reference")
    parser.add_argument(
        "--spawn-prompts",
        action="store_true",
        help="run the prompts jobs as plain snakemake does (one process each: slow)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.max_jobs = min(args.max_jobs, 6)
    os.environ["HF_HUB_OFFLINE"] = "1"

    started = dt.datetime.now(dt.UTC)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="scalex-overhead-"))
    base.mkdir(parents=True, exist_ok=True)
    from random_models import save_random_pipeline

    models = {"tiny-sd1": str(save_random_pipeline("sd1", base / "tiny-sd1-model"))}
    reference = ROOT / "resources" / "worlds" / "stereotyped" / "model"
    if (reference / "model_index.json").is_file() and not args.quick:
        models["reference"] = str(reference)
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models}
    cases = []
    prompts: dict[str, dict] = {}
    for label, model in models.items():
        print(f"model {label}", flush=True)
        work = base / label
        work.mkdir(exist_ok=True)
        prompts[label] = prompts_phase(work, model, args)
        for n_buckets in args.buckets:
            case = run_case(work, model, n_buckets, args)
            case["model"] = label
            cases.append(case)
            print(f"    wall {case['extract_wall_s']:.1f} s, load {case['load_s']:.1f} s, "
                  f"overhead {case['overhead_s']:.1f} s ({case['overhead_share']:.1%})",
                  flush=True)  # fmt: skip
    import torch

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), "unknown"
    )  # fmt: skip
    result = {
        "benchmark": "model_load_overhead",
        "command": "python bench/model_load_overhead.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date_utc": started.isoformat(timespec="seconds"),
        "wall_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "load_average": os.getloadavg(),
        },  # fmt: skip
        "setup": {
            "concepts": args.concepts,
            "templates": 2,
            "seeds": args.seeds,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "samples": (args.concepts + 1) * 2 * args.seeds,
            "reference_model": "reference" in models,
        },  # fmt: skip
        "prompts_phase": prompts,
        "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n# Model-load overhead ({result['date_utc']}, {cpu}, {os.cpu_count()} cores)\n")
    print(markdown(result))
    print(f"\nwritten to {out}; work folders in {base}")


if __name__ == "__main__":
    main()
