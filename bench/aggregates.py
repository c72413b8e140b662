"""Benchmark: the aggregate steps (similarity, clustering) at 1k to 30k concepts.

    python bench/aggregates.py [--sizes 1000 3000 10000 30000] [--out bench/aggregates.json]

Writes synthetic direction files in the workflow's own format (8 buckets; D = 1280 channels, the
SD 1.x mid-block; T = 4 kept steps; concepts drawn around 20 planted centres, so clustering has
something to find, and the adjusted Rand index against those centres says whether it did), then
runs each step as its own process, as Snakemake would, through the same functions the rules
call, with the default settings (``similarity.full_matrices: auto``, ``clustering`` defaults:
k_max auto, 200 permutations, max_exact 2000, null_sample 500). Wall time and peak resident
memory come from the child processes (``resource.getrusage``; the clustering figure is the
larger of the two steps' peaks), and output sizes from the files. Clustering runs the raw
variant only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

HASH = "bench0000"
STEPS = """
import sys
sys.path.insert(0, {scripts!r})
from pathlib import Path
from scalex.steps.clusters import run as compute_clusters
from scalex.steps.similarity import full_similarity, run as compute_similarity
work = Path({work!r})
files = sorted((work / "directions").glob("b*.h5"))
if {step!r} == "similarity":
    n = {n}
    compute_similarity(files, work / "similarity.h5", work / "neighbours.tsv", {hash!r},
                       out_tsv=(work / "similarity.tsv") if full_similarity(n) else None)
else:
    compute_clusters(work / "similarity.h5", work / "clusters.tsv", work / "silhouette.tsv",
                     work / "clustered.tsv", {hash!r}, k_max=None, direction_files=files)
"""


def write_directions(work: Path, n: int, dim: int = 1280, steps: int = 4, seed: int = 0) -> None:
    import numpy as np
    from scalex.io import DIRECTIONS, atomic_h5

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim)).astype(np.float32)
    (work / "directions").mkdir(parents=True, exist_ok=True)
    attrs = {"settings_hash": HASH, "readout": "prompt", "tap": "mid_block", "space": "pooled",
             "step_indices": np.arange(steps), "timesteps": np.arange(steps)[::-1] * 100,
             "seeds": np.arange(4)}  # fmt: skip
    for bucket in range(8):
        ids = range(bucket, n, 8)
        with atomic_h5(work / "directions" / f"b{bucket:04d}.h5", DIRECTIONS, attrs) as f:
            for i in ids:
                base = centres[i % 20] + 0.8 * rng.normal(size=dim).astype(np.float32)
                per_step = base + 0.3 * rng.normal(size=(steps, dim)).astype(np.float32)
                per_step /= np.linalg.norm(per_step, axis=1, keepdims=True)
                agg = per_step.mean(axis=0)
                g = f.create_group(f"concepts/c{i:06d}")
                g.attrs["set"] = "things"
                g.attrs["split_half"] = 0.9
                g.attrs["n_prompts"] = 2
                g.attrs["n_seeds"] = 4
                g.create_dataset("per_step", data=per_step)
                g.create_dataset("aggregate", data=agg / np.linalg.norm(agg))
                g.create_dataset("mean_diff", data=per_step)


def run_step(work: Path, step: str, n: int) -> dict:
    code = STEPS.format(scripts=str(ROOT / "scripts"), work=str(work), step=step, n=n, hash=HASH)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss of children is the largest child so far: each step is measured in a fresh parent
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(after.ru_maxrss / 2**20, 3),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                           2)}  # fmt: skip


def measure(n: int) -> dict:
    """One size, in a fresh process so that peak memory is this size's own."""
    with tempfile.TemporaryDirectory(prefix="scalex-agg-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        write_directions(work, n)
        setup = time.perf_counter() - t
        row: dict = {"concepts": n, "setup_s": round(setup, 1)}
        for step in ("similarity", "clusters"):
            row[step] = run_step(work, step, n)
        row["outputs_mb"] = {
            p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(work.iterdir()) if p.is_file()
        }
        import pandas as pd

        curve = pd.read_csv(work / "silhouette.tsv", sep="\t")
        row["k"] = int(curve.loc[curve["chosen"], "k"].iloc[0]) if curve["chosen"].any() else 1
        row["k_max"] = int(curve["k"].max())
        row["tree_concepts"] = int(curve["tree_concepts"].iloc[0])
        row["null_p_value"] = float(curve["null_p_value"].iloc[0])
        from sklearn.metrics import adjusted_rand_score

        labels = pd.read_csv(work / "clusters.tsv", sep="\t")
        truth = labels["concept"].str[1:].astype(int) % 20  # the planted centre of each concept
        row["ari_vs_planted"] = round(float(adjusted_rand_score(truth, labels["cluster"])), 4)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    parser.add_argument("--out", default=str(ROOT / "bench" / "aggregates.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    started = dt.datetime.now(dt.UTC)
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        sim, clu = row["similarity"], row["clusters"]
        print(f"{n:>6} concepts: similarity {sim['wall_s']} s / {sim['peak_rss_gib']} GiB, "
              f"clusters {clu['wall_s']} s / {clu['peak_rss_gib']} GiB, k={row['k']}, "
              f"ARI {row['ari_vs_planted']}, outputs {sum(row['outputs_mb'].values()):.0f} MB",
              flush=True)  # fmt: skip
    result = {"benchmark": "aggregates", "date_utc": started.isoformat(timespec="seconds"),
              "command": "python bench/aggregates.py " + " ".join(argv or sys.argv[1:]),
              "cores": os.cpu_count(), "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
