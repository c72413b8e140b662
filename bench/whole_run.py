"""Benchmark: whole processes, 1,000 samples: the workflow's extraction against plain scripts.

    python bench/whole_run.py [--models reference tiny-sd1] [--repeats 3] [--cores 2] [--batch 128]
                              [--concepts 125] [--sides workflow script-per-sample script-batched]

Three sides produce the same activations (the pooled ``unet.mid_block`` output of the prompt
readout at every step) for the same 1,000 (prompt, seed) samples plus the baseline's, each timed
as a whole process from a cold start (interpreter, imports, model load, writing):

- ``workflow``: ``snakemake --cores N`` on the extraction targets (the prompts jobs and one
  extract job per bucket) from an empty results tree, with the default ``extraction.buckets``
  and ``extraction.threads`` (``auto``);
- ``script-per-sample``: one Python process that loads the pipeline once and calls it once per
  sample with a hook (what a user writes first);
- ``script-batched``: the same calling the pipeline with B prompts and B generators at a time
  (the strongest straightforward script), B = ``--batch``, the workflow's batch size too.

The scripts' activations are compared with the workflow's shards. Medians of ``--repeats``.
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
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))  # random_models: test fixtures, not the product

N_CONCEPTS, N_SEEDS, STEPS = 125, 8, 4  # 125 prompts x 8 seeds = 1,000 samples (--concepts)
SIDES = ["workflow", "script-per-sample", "script-batched"]

SCRIPT = """
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {scripts!r})
import numpy as np, torch
torch.set_num_threads({threads})
torch.set_flush_denormal(True)  # as the workflow's jobs do
from scalex.models import load_pipeline
pipe = load_pipeline({model!r}, device="cpu")
pipe.set_progress_bar_config(disable=True)
samples = json.load(open({samples!r}))
rows, current = [], []
def hook(_m, _i, out):
    out = out[0] if isinstance(out, tuple) else out
    current.append(out[-n[0]:].float().mean(dim=(2, 3)))
n = [1]
handle = pipe.unet.mid_block.register_forward_hook(hook)
batch = {batch}
for start in range(0, len(samples), batch):
    chunk = samples[start:start + batch]
    n[0] = len(chunk)
    current.clear()
    pipe([p for p, _ in chunk], num_inference_steps={steps}, guidance_scale=1.0,
         generator=[torch.Generator("cpu").manual_seed(s) for _, s in chunk],
         output_type="latent")
    rows.append(torch.stack(current, dim=1).numpy())
np.save({out!r}, np.concatenate(rows))
print(json.dumps({{"total_s": time.perf_counter() - t0}}))
"""


def write_workflow(work: Path, model: str, batch: int) -> Path:
    sheet = work / "concepts.tsv"
    rows = ["id\tset\tterms\ttemplates"] + [
        f"thing-{i:03d}\tthings\tthing{i}\tdefault" for i in range(N_CONCEPTS)
    ]
    sheet.write_text("\n".join(rows) + "\n")
    cfg = {
        "results": "results",
        "model": {"id": model},
        "sampling": {"steps": STEPS, "seeds": {"start": 0, "count": N_SEEDS}, "device": "cpu",
                     "batch_size": batch, "guidance_scale": 1.0},
        "extraction": {"readouts": ["prompt"], "progress": False},
        "concepts": {"sheets": [str(sheet)],
                     "templates": {"default": ["a photo of {article} {term}"]},
                     "baseline": {"terms": ["person"], "templates": "default"}},
        "analysis": {"descriptors": {"enabled": False}},
    }  # fmt: skip
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def workflow_targets(config: Path) -> tuple[str, list[str]]:
    from scalex.concepts import BASELINE_ID, bucket_count, buckets, load_concepts
    from scalex.config import load_config, results_tree

    cfg = load_config(config)
    tree = results_tree(cfg)
    concepts = load_concepts(cfg, base=config.parent)
    n = bucket_count(cfg["extraction"]["buckets"], N_CONCEPTS * N_SEEDS)
    names = list(buckets(list(concepts), n)) + [BASELINE_ID]
    return tree, [f"{tree}/activations/{b}.h5" for b in names]


def samples_of(config: Path) -> list[tuple[str, int]]:
    """The workflow's samples in shard order is not needed: scripts run concept-major."""
    from scalex.templates import fill

    terms = ["person"] + [f"thing{i}" for i in range(N_CONCEPTS)]
    prompts = [fill("a photo of {article} {term}", t) for t in terms]
    return [(p, s) for p in prompts for s in range(N_SEEDS)]


def workflow_activations(work: Path, tree: str) -> dict[str, object]:
    import h5py
    import numpy as np

    out = {}
    for shard in sorted((work / tree / "activations").glob("*.h5")):
        with h5py.File(shard) as f:
            for cid in f["concepts"]:
                arr = f[f"concepts/{cid}/prompt/mid_block/pooled"][()].astype(np.float32)
                out[cid] = arr[0]  # one template: (S, T, C)
    return out


def within_storage(script, stored) -> bool:
    """True when a script's float32 activations equal the workflow's float16-stored ones: at
    most one float16 spacing apart (rounding on storage), plus float32 noise near zero."""
    import numpy as np

    spacing = np.spacing(np.abs(stored).astype(np.float16)).astype(np.float32)
    return bool(np.all(np.abs(script - stored) <= spacing + 1e-5))


def run_side(name: str, work: Path, model: str, args) -> float:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    if name == "workflow":
        config = write_workflow(work, model, args.batch)
        _, targets = workflow_targets(config)
        cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(args.cores),
               "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
               "--configfile", str(config)]  # fmt: skip
    else:
        samples = work / "samples.json"
        config = write_workflow(work, model, args.batch)
        samples.write_text(json.dumps(samples_of(config)))
        code = SCRIPT.format(scripts=str(ROOT / "scripts"), model=model, samples=str(samples),
                             out=str(work / f"{name}.npy"), steps=STEPS, threads=args.cores,
                             batch=1 if name == "script-per-sample" else args.batch)  # fmt: skip
        cmd = [sys.executable, "-c", code]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=work, capture_output=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    global N_CONCEPTS
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["reference", "tiny-sd1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--concepts", type=int, default=N_CONCEPTS)
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=SIDES)
    parser.add_argument("--out", default=str(ROOT / "bench" / "whole_run.json"))
    args = parser.parse_args(argv)
    N_CONCEPTS = args.concepts
    started = dt.datetime.now(dt.UTC)
    results = []
    with tempfile.TemporaryDirectory(prefix="scalex-whole-") as tmp:
        models = {"reference": str(ROOT / "resources" / "worlds" / "stereotyped" / "model")}
        if "tiny-sd1" in args.models:
            from random_models import save_random_pipeline

            models["tiny-sd1"] = str(save_random_pipeline("sd1", Path(tmp) / "tiny-sd1"))
        for name in args.models:
            times: dict[str, list[float]] = {}
            diffs, equal = {}, {}
            for rep in range(args.repeats):
                order = [side for side in SIDES if side in args.sides]
                for side in order if rep % 2 == 0 else order[::-1]:
                    work = Path(tmp) / f"{name}-{side}-{rep}"
                    work.mkdir()
                    times.setdefault(side, []).append(run_side(side, work, models[name], args))
                    print(f"{name} {side} repeat {rep + 1}: {times[side][-1]:.1f} s", flush=True)
                    if rep == 0 and side == "workflow":
                        tree, _ = workflow_targets(work / "config.yaml")
                        flow = workflow_activations(work, tree)
                    elif rep == 0:
                        arr = np.load(work / f"{side}.npy").reshape(N_CONCEPTS + 1, N_SEEDS,
                                                                    STEPS, -1)  # fmt: skip
                        ids = ["baseline"] + [f"thing-{i:03d}" for i in range(N_CONCEPTS)]
                        diffs[side] = max(float(np.abs(arr[k] - flow[c]).max())
                                          for k, c in enumerate(ids))  # fmt: skip
                        equal[side] = all(within_storage(arr[k], flow[c])
                                          for k, c in enumerate(ids))  # fmt: skip
            med = {side: statistics.median(t) for side, t in times.items()}
            results.append({
                "model": name, "samples": N_CONCEPTS * N_SEEDS + N_SEEDS, "steps": STEPS,
                "times_s": times, "median_s": med,
                **{f"workflow_x_vs_{side.removeprefix('script-').replace('-', '_')}":
                   med[side] / med["workflow"] for side in med if side != "workflow"},
                "max_abs_diff_vs_workflow": diffs,
                "equal_within_float16_storage": equal,
            })  # fmt: skip
            print(json.dumps(results[-1], indent=1), flush=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "whole_run", "date_utc": started.isoformat(timespec="seconds"),
        "command": "python bench/whole_run.py " + " ".join(argv or sys.argv[1:]),
        "cores": args.cores, "batch": args.batch,
        "results": results}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
