"""Benchmark: scalex's batched H-space extractor against the stock pipeline called per sample.

    python bench/extraction.py [--quick] [--device cpu|cuda] [--out bench/results.json]

For each model, the same (prompt, seed) samples (N prompts x S seeds, T steps) go through, in one
process and interleaved within every repeat:

- ``naive-latent``: the stock diffusers pipeline, once per (prompt, seed), with
  ``generator=torch.Generator("cpu").manual_seed(seed)``, ``output_type="latent"`` and a forward
  hook on ``unet.mid_block`` that keeps the spatially pooled output of every step;
- ``naive-decode``: the same with the default ``output_type`` (the image is decoded), as users
  often call it;
- ``scalex-bB``: ``HSpaceExtractor(pipe, SamplingSettings(batch_size=B, ...)).run(samples)``;
- ``scalex-bB-keepK``: the same, keeping only the first K steps (early stop after step K).

Timings are medians over repeats; ratios are against ``naive-latent`` (and ``naive-decode``).
The scalex activations are compared with the naive ones (max abs diff) in the same run.

Models: the tiny random-weight families of ``scalex.random_models`` (saved and reloaded through
``scalex.models.load_pipeline``, as the workflow does) and ``sd15``: a UNet with the real
Stable Diffusion 1.5 configuration (860M parameters, random weights) with a VAE of the real
SD size (scale factor 8, random weights) so that decoding costs what it does on SD 1.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORDS = [
    "doctor", "nurse", "chef", "pilot", "farmer", "teacher", "lawyer", "baker",
    "painter", "singer", "dancer", "sailor", "judge", "clerk", "miner", "tailor",
    "soldier", "cashier", "plumber", "writer", "guard", "driver", "cook", "poet",
    "hunter", "monk", "nun", "priest", "banker", "scientist", "engineer", "janitor",
]  # fmt: skip

#: VAE of the real SD 1.x size (diffusers AutoencoderKL defaults of runwayml/stable-diffusion-v1-5).
SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}


def plan(args) -> list[dict]:
    """Models and sizes to measure (N prompts, S seeds, T steps, batch sizes, early stops)."""
    cuda = args.device == "cuda"
    tiny = {"prompts": 16, "seeds": 4, "steps": 4, "batches": [1, 8, 32, 64], "keep": [1, 2]}
    if args.quick:
        tiny = {"prompts": 8, "seeds": 4, "steps": 4, "batches": [1, 8, 32], "keep": [1]}
    if cuda:
        sd15 = {"prompts": 16, "seeds": 8, "steps": 4, "batches": [1, 8, 32, 64], "keep": [1, 2],
                "size": 512, "dtype": "float16"}  # fmt: skip
    elif args.quick:
        sd15 = {"prompts": 1, "seeds": 2, "steps": 4, "batches": [1, 2], "keep": [1],
                "size": 128, "dtype": "float32", "repeats": 1}  # fmt: skip
    else:  # one UNet forward at 128 px takes seconds on one shared CPU thread
        sd15 = {"prompts": 2, "seeds": 2, "steps": 4, "batches": [1, 4], "keep": [1],
                "size": 128, "dtype": "float32", "repeats": 1}  # fmt: skip
    models = []
    for family in ("sd1", "sdxl", "lcm"):
        dtype = "float16" if cuda else "float32"
        models.append({"model": f"tiny-{family}", "family": family, "size": None,
                       "dtype": dtype, **tiny})  # fmt: skip
    if not args.skip_sd15:
        models.append({"model": "sd15", "family": "sd1", **sd15})
    return models


def build_pipe(spec: dict, device: str, tmp: Path):
    from scalex.models import load_pipeline
    from scalex.random_models import build_random_pipeline, save_random_pipeline

    if spec["model"] == "sd15":
        from diffusers import AutoencoderKL, StableDiffusionPipeline

        parts = build_random_pipeline("sd1", size="sd15").components
        torch.manual_seed(1)
        parts["vae"] = AutoencoderKL(**SD_VAE)
        pipe = StableDiffusionPipeline(**parts)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device=device, dtype=getattr(torch, spec["dtype"]))
        for part in (pipe.unet, pipe.vae, pipe.text_encoder):
            part.eval().requires_grad_(False)
        return pipe
    folder = save_random_pipeline(spec["family"], tmp / spec["model"])
    return load_pipeline(str(folder), dtype=spec["dtype"], device=device)


def naive(pipe, samples, steps, guidance, height, width, decode: bool) -> np.ndarray:
    """The stock pipeline once per (prompt, seed) with a hook on ``unet.mid_block``."""
    rows: list[np.ndarray] = []
    current: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        current.append(out[-1:].float().mean(dim=(2, 3)).cpu())  # the cond half under CFG

    handle = pipe.unet.mid_block.register_forward_hook(hook)
    try:
        for prompt, seed in samples:
            current.clear()
            kwargs = {} if decode else {"output_type": "latent"}
            pipe(
                prompt,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(seed),
                height=height,
                width=width,
                **kwargs,
            )
            rows.append(torch.cat(current).numpy())
    finally:
        handle.remove()
    return np.stack(rows)


def scalex_run(pipe, samples, settings) -> np.ndarray:
    from scalex.extract import HSpaceExtractor

    acts = HSpaceExtractor(pipe, settings).run(samples, progress=False)
    return acts.data["mid_block"]["pooled"]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_model(spec: dict, args, tmp: Path) -> dict:
    from scalex.extract import SamplingSettings

    device = args.device
    t0 = time.perf_counter()
    pipe = build_pipe(spec, device, tmp)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    prompts = [f"a photo of a {WORDS[i % len(WORDS)]}" for i in range(spec["prompts"])]
    samples = [(p, s) for p in prompts for s in range(spec["seeds"])]
    steps = spec["steps"]
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = spec["size"] or int(pipe.unet.config.sample_size) * vae_scale
    base = {"steps": steps, "guidance_scale": args.guidance, "dtype": spec["dtype"],
            "device": device, "height": size, "width": size}  # fmt: skip

    methods = {
        "naive-latent": lambda s: naive(pipe, s, steps, args.guidance, size, size, False),
        "naive-decode": lambda s: naive(pipe, s, steps, args.guidance, size, size, True),
    }
    for b in spec["batches"]:
        if b > len(samples) and b != spec["batches"][0]:
            continue
        st = SamplingSettings(batch_size=b, **base)
        methods[f"scalex-b{b}"] = lambda s, st=st: scalex_run(pipe, s, st)
    big = max(b for b in spec["batches"] if b <= len(samples))
    for k in spec["keep"]:
        st = SamplingSettings(batch_size=big, keep_steps=tuple(range(k)), **base)
        methods[f"scalex-b{big}-keep{k}"] = lambda s, st=st: scalex_run(pipe, s, st)

    print(f"\n## {spec['model']}: {n_params / 1e6:.1f}M UNet params, {len(samples)} samples "
          f"({spec['prompts']} prompts x {spec['seeds']} seeds), {steps} steps, "
          f"{size} px, latents {size // vae_scale}x{size // vae_scale}, {spec['dtype']}, "
          f"built in {build_s:.1f} s", flush=True)  # fmt: skip
    # warm-up: one sample per method (first-call allocations, lazy imports)
    for fn in methods.values():
        fn(samples[:1])
    sync(device)
    times: dict[str, list[float]] = {m: [] for m in methods}
    outputs: dict[str, np.ndarray] = {}
    for rep in range(spec.get("repeats", args.repeats)):
        order = list(methods) if rep % 2 == 0 else list(reversed(methods))
        for name in order:
            sync(device)
            t = time.perf_counter()
            out = methods[name](samples)
            sync(device)
            times[name].append(time.perf_counter() - t)
            outputs[name] = out
        print(f"  repeat {rep + 1}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in methods),
              flush=True)  # fmt: skip

    ref = outputs["naive-latent"]
    rows = []
    for name in methods:
        med = statistics.median(times[name])
        out = outputs[name]
        diff = float(np.abs(out - ref[:, : out.shape[1]]).max())
        rows.append({
            "method": name,
            "times_s": [round(t, 4) for t in times[name]],
            "median_s": med,
            "samples_per_s": len(samples) / med,
            "speedup_vs_naive_latent": statistics.median(times["naive-latent"]) / med,
            "speedup_vs_naive_decode": statistics.median(times["naive-decode"]) / med,
            "max_abs_diff_vs_naive": diff,
            "max_abs_activation": float(np.abs(ref).max()),
        })  # fmt: skip
    methods.clear()  # drop the closures that hold the pipeline
    return {
        "model": spec["model"],
        "family": spec["family"],
        "unet_params_m": round(n_params / 1e6, 1),
        "samples": len(samples),
        "prompts": spec["prompts"],
        "seeds": spec["seeds"],
        "steps": steps,
        "height": size,
        "width": size,
        "latents": f"{size // vae_scale}x{size // vae_scale}",
        "dtype": spec["dtype"],
        "guidance_scale": args.guidance,
        "methods": rows,
    }


def machine(device: str) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import diffusers

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def markdown(result: dict) -> str:
    lines = []
    for m in result["models"]:
        lines.append(
            f"\n**{m['model']}** ({m['unet_params_m']}M UNet params; {m['samples']} samples = "
            f"{m['prompts']} prompts x {m['seeds']} seeds; {m['steps']} steps; "
            f"{m['height']} px, latents {m['latents']}; {m['dtype']}; "
            f"guidance {m['guidance_scale']})\n"
        )
        lines.append("| method | median s | samples/s | x vs naive-latent | x vs naive-decode "
                     "| max abs diff vs naive |")  # fmt: skip
        lines.append("|---|---:|---:|---:|---:|---:|")
        for r in m["methods"]:
            lines.append(
                f"| {r['method']} | {r['median_s']:.3f} | {r['samples_per_s']:.2f} | "
                f"{r['speedup_vs_naive_latent']:.2f} | {r['speedup_vs_naive_decode']:.2f} | "
                f"{r['max_abs_diff_vs_naive']:.1e} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick: 2)")
    parser.add_argument("--sd15-repeats", type=int, default=None, help="CPU default 1")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--only", nargs="*", help="model names to run (tiny-sd1 ... sd15)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")

    started = dt.datetime.now(dt.UTC)
    models = []
    with tempfile.TemporaryDirectory(prefix="scalex-bench-") as tmp:
        for spec in plan(args):
            if args.only and spec["model"] not in args.only:
                continue
            if spec["model"] == "sd15" and args.sd15_repeats:
                spec["repeats"] = args.sd15_repeats
            models.append(bench_model(spec, args, Path(tmp)))
    result = {
        "benchmark": "extraction",
        "command": "python bench/extraction.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date_utc": started.isoformat(timespec="seconds"),
        "wall_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "repeats": args.repeats,
        "machine": machine(args.device),
        "models": models,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n# Extraction benchmark ({result['date_utc']}, {result['machine']['cpu']}, "
          f"{result['machine']['cores']} cores, torch {result['machine']['torch']}, "
          f"device {args.device})")  # fmt: skip
    print(markdown(result))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
