"""Benchmark: the ``extraction.compile`` option against eager on this machine, and its cost.

    python bench/compile.py [--model resources/worlds/stereotyped/model] [--samples 256]
                            [--repeats 3] [--out bench/compile.json]

Every measurement is a fresh process (the compile cost depends on what a process has already
compiled and on torch inductor's on-disk cache):

- ``compiled-cold``: an empty inductor cache (a new ``TORCHINDUCTOR_CACHE_DIR``), as on a new
  machine or cluster node;
- then ``--repeats`` rounds of ``eager`` and ``compiled-warm`` (the cache the cold run filled),
  in alternating order.

Each process loads the model, extracts one batch (the first call: for the compiled side, the
compile) and then ``--samples`` samples (steady state), with the workflow's default readouts
(content, prompt, text), 4 steps, batch size 32, float32, 1 thread. Reported: the first batch's
time, the steady samples per second (median of the repeats) and the largest difference of the
compiled side's activations from eager's, in units of float16 spacing at the activation's
magnitude (the storage precision).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(args) -> None:
    """One measured process: prints a JSON line, writes its activations to ``args.save``."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from scalex.extract import HSpaceExtractor, SamplingSettings
    from scalex.models import load_pipeline

    t0 = time.perf_counter()
    pipe = load_pipeline(args.model, device="cpu")
    load_s = time.perf_counter() - t0
    words = ["doctor", "nurse", "chef", "baker", "pilot", "farmer", "lawyer", "teacher"]
    samples = [(f"a photo of a {w} {i}", s) for i in range(64) for w in words for s in range(4)]
    settings = SamplingSettings(
        steps=4,
        device="cpu",
        batch_size=32,
        readouts=("content", "prompt", "text"),
        content_prompt="a photo of a person",
        compile=args.compiled,
    )
    extractor = HSpaceExtractor(pipe, settings)
    t1 = time.perf_counter()
    extractor.run_all(samples[:32], progress=False)
    first_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    acts = extractor.run_all(samples[32 : 32 + args.samples], progress=False)
    steady_s = time.perf_counter() - t2
    arrays = {f"{r}-{tap}": k["pooled"] for r, a in acts.items() for tap, k in a.data.items()}
    np.savez(args.save, **arrays)
    print(
        json.dumps(
            {
                "load_s": load_s,
                "first_batch_s": first_s,
                "steady_s": steady_s,
                "samples_per_s": args.samples / steady_s,
                "compiled_blocks": len(extractor.compiled),
            }
        )
    )


def measure(args, side: str, cache: Path, save: Path) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", "--model", args.model,
           "--samples", str(args.samples), "--save", str(save)]  # fmt: skip
    if side != "eager":
        cmd.append("--compiled")
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(side=side, process_s=time.perf_counter() - t)
    print(row, flush=True)
    return row


def spacings_apart(compiled: Path, eager: Path) -> float:
    """Largest |compiled - eager| over all readouts, in float16 spacings at max |eager|."""
    import numpy as np

    a, b = np.load(compiled), np.load(eager)
    worst = 0.0
    for r in b.files:
        spacing = float(np.spacing(np.float16(np.abs(b[r]).max())))
        worst = max(worst, float(np.abs(a[r] - b[r]).max()) / spacing)
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "resources/worlds/stereotyped/model"))
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench/compile.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="scalex-compile-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "inductor"
        rows = [measure(args, "compiled-cold", cache, tmp / "cold.npz")]
        for rep in range(args.repeats):
            order = ["eager", "compiled-warm"] if rep % 2 == 0 else ["compiled-warm", "eager"]
            for side in order:
                rows.append(measure(args, side, cache, tmp / f"{side}.npz"))
        apart = spacings_apart(tmp / "compiled-warm.npz", tmp / "eager.npz")

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["side"] == side)

    summary = {
        "compile_cold_s": rows[0]["first_batch_s"] - med("eager", "first_batch_s"),
        "compile_warm_s": med("compiled-warm", "first_batch_s") - med("eager", "first_batch_s"),
        "steady_x_vs_eager": med("compiled-warm", "samples_per_s") / med("eager", "samples_per_s"),
        "eager_samples_per_s": med("eager", "samples_per_s"),
        "compiled_samples_per_s": med("compiled-warm", "samples_per_s"),
        "max_diff_in_float16_spacings": apart,
    }
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "command": "python bench/compile.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "samples": args.samples,
        "repeats": args.repeats,
        "rows": rows,
        "summary": summary,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
