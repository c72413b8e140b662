"""Benchmark: scalex's H-space extractor against the stock diffusers pipeline, at equal output.

    python bench/extraction.py [--quick] [--device cpu|cuda] [--guidance 1 7.5] [--out FILE]

For each model and guidance scale, the same (prompt, seed) samples (N prompts x S seeds, T
steps) go through every *side* below, in one process, interleaved within every repeat (the order
is reversed on every other repeat). Every side yields the pooled ``unet.mid_block`` output of
every kept step, so the activations of all sides are compared in the same run:

- ``stock-per-sample``: the stock pipeline once per (prompt, seed) with
  ``generator=torch.Generator("cpu").manual_seed(seed)``, ``output_type="latent"`` and a forward
  hook on ``unet.mid_block``;
- ``stock-per-sample-decode``: the same, decoding the image (``output_type`` left at its default);
- ``stock-batched-bB``: the stock pipeline called with B prompts and a list of B generators (one
  per sample, which is what makes its noise equal the per-sample noise), latent output, the hook;
  the strongest straightforward alternative;
- ``stock-batched-bB-stopK``: the same, stopped after step K by a ``callback_on_step_end`` that
  raises (the pipeline's ``_interrupt`` flag would do on SD and SDXL, but the LCM pipeline
  ignores it);
- ``scalex-bB``: ``HSpaceExtractor(pipe, SamplingSettings(batch_size=B, ...)).run(samples)``;
- ``scalex-bB-keepK``: the same keeping steps 0..K-1, so the loop stops after step K;
- ``scalex-bB-keepK-compile`` (``sides(compiled=True)``, run by ``bench/gpu.py`` on CUDA): the
  same with ``extraction.compile``, its compile cost reported apart.

Equal output: the ``stopK``/``keepK`` sides are compared with the first K steps of
``stock-per-sample``; every other side with all of its steps. Times are medians over repeats and
ratios are taken against ``stock-per-sample`` and ``stock-batched-bB`` (the largest B).

Models: the tiny random-weight families of ``tests/random_models.py`` (saved and reloaded through
``scalex.models.load_pipeline``, as the workflow does) and ``sd15``: a UNet with the real Stable
Diffusion 1.5 configuration (860M parameters, random weights) with a VAE of the real SD size
(scale factor 8, random weights) so that decoding costs what it does on SD 1.5. ``bench/gpu.py``
runs the same sides on a GPU at 512 px.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))  # random_models: test fixtures, not the product

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

Side = Callable[[list[tuple[str, int]]], np.ndarray]


def samples_for(prompts: int, seeds: int) -> list[tuple[str, int]]:
    """N prompts x S seeds, prompt-major, as the workflow orders them."""
    texts = [f"a photo of a {WORDS[i % len(WORDS)]}" for i in range(prompts)]
    return [(p, s) for p in texts for s in range(seeds)]


def build_sd15(device: str, dtype: str):
    """The SD 1.5-size pipeline: real UNet and VAE configurations, random weights."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from random_models import build_random_pipeline

    parts = build_random_pipeline("sd1", size="sd15").components
    torch.manual_seed(1)
    parts["vae"] = AutoencoderKL(**SD_VAE)
    pipe = StableDiffusionPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device=device, dtype=getattr(torch, dtype))
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.eval().requires_grad_(False)
    return pipe


def build_pipe(spec: dict, device: str, tmp: Path):
    from random_models import save_random_pipeline
    from scalex.models import load_pipeline

    if spec["model"] == "sd15":
        return build_sd15(device, spec["dtype"])
    folder = tmp / spec["model"]
    if not folder.exists():
        save_random_pipeline(spec["family"], folder)
    return load_pipeline(str(folder), dtype=spec["dtype"], device=device)


class MidBlockTrace:
    """Forward hook on ``unet.mid_block`` keeping the pooled conditional rows of every call."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.rows: list[torch.Tensor] = []
        self.n = 0

    def __enter__(self):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            # under CFG the batch is [uncond, cond]: the conditional half is the last n rows
            self.rows.append(out[-self.n :].float().mean(dim=(2, 3)))

        self.handle = self.pipe.unet.mid_block.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def take(self) -> np.ndarray:
        """(n, steps, C) for the call just made."""
        out = torch.stack(self.rows, dim=1).cpu().numpy()
        self.rows.clear()
        return out


class _Stop(Exception):
    """Raised by the step-end callback to end a stock run after the steps it needs."""


def stock(pipe, samples, common: dict, batch: int, decode=False, stop: int | None = None):
    """The stock pipeline over ``samples`` in calls of ``batch`` prompts, one generator each."""
    parts = []

    def interrupt(_pipe, i, _t, kwargs):
        if stop is not None and i + 1 >= stop:
            raise _Stop  # not every pipeline honours ``_interrupt`` (LCM does not)
        return kwargs

    with MidBlockTrace(pipe) as trace:
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            trace.n = len(chunk)
            kwargs = {} if decode else {"output_type": "latent"}
            if stop is not None:
                kwargs["callback_on_step_end"] = interrupt
            with contextlib.suppress(_Stop):
                pipe(
                    [p for p, _ in chunk],
                    generator=[torch.Generator("cpu").manual_seed(s) for _, s in chunk],
                    **common,
                    **kwargs,
                )
            parts.append(trace.take())
    return np.concatenate(parts)


def scalex_side(pipe, samples, settings) -> np.ndarray:
    from scalex.extract import HSpaceExtractor

    acts = HSpaceExtractor(pipe, settings).run(samples, progress=False)
    return acts.data["mid_block"]["pooled"]


def sides(
    pipe,
    *,
    steps: int,
    guidance: float,
    size: int,
    dtype: str,
    device: str,
    batches: list[int],
    keep: list[int],
    decode: bool = True,
    compiled: bool = False,
) -> dict[str, tuple[Side, int]]:
    """Every side of the comparison: name -> (function of the samples, steps it yields).

    ``compiled`` adds ``scalex-bB-keepK-compile``: the ``extraction.compile`` option, on a copy
    of the pipeline (compiling is in place; the other sides stay eager)."""
    from scalex.extract import SamplingSettings

    common = {
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "height": size,
        "width": size,
    }
    base = {"steps": steps, "guidance_scale": guidance, "dtype": dtype, "device": device,
            "height": size, "width": size, "readouts": ("prompt",)}  # fmt: skip
    out: dict[str, tuple[Side, int]] = {
        "stock-per-sample": (lambda s: stock(pipe, s, common, 1), steps),
    }
    if decode:
        out["stock-per-sample-decode"] = (lambda s: stock(pipe, s, common, 1, decode=True), steps)
    big = max(batches)
    for b in batches:
        if b > 1:
            out[f"stock-batched-b{b}"] = (lambda s, b=b: stock(pipe, s, common, b), steps)
    for k in keep:
        out[f"stock-batched-b{big}-stop{k}"] = (
            lambda s, k=k: stock(pipe, s, common, big, stop=k),
            k,
        )
    for b in batches:
        st = SamplingSettings(batch_size=b, **base)
        out[f"scalex-b{b}"] = (lambda s, st=st: scalex_side(pipe, s, st), steps)
    for k in keep:
        st = SamplingSettings(batch_size=big, keep_steps=tuple(range(k)), **base)
        out[f"scalex-b{big}-keep{k}"] = (lambda s, st=st: scalex_side(pipe, s, st), k)
    if compiled:
        twin = copy.deepcopy(pipe)
        for k in keep:
            st = SamplingSettings(batch_size=big, keep_steps=tuple(range(k)), compile=True, **base)
            out[f"scalex-b{big}-keep{k}-compile"] = (lambda s, st=st: scalex_side(twin, s, st), k)
    return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_sides(
    table: dict[str, tuple[Side, int]], samples, repeats: int, device: str, log=print
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Warm every side up on one sample, then time them interleaved, reversing every repeat."""
    for fn, _ in table.values():
        fn(samples[:1])
    sync(device)
    times: dict[str, list[float]] = {m: [] for m in table}
    outputs: dict[str, np.ndarray] = {}
    for rep in range(repeats):
        order = list(table) if rep % 2 == 0 else list(reversed(table))
        for name in order:
            sync(device)
            t = time.perf_counter()
            out = table[name][0](samples)
            sync(device)
            times[name].append(time.perf_counter() - t)
            outputs[name] = out
        log(f"  repeat {rep + 1}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in table))
    return times, outputs


def compare(table, times, outputs, n_samples: int) -> list[dict]:
    """One row per side: median time, ratios, and the largest difference to stock-per-sample."""
    ref = outputs["stock-per-sample"]
    per_sample = statistics.median(times["stock-per-sample"])
    batched = [m for m in table if m.startswith("stock-batched-") and "-stop" not in m]
    strongest = statistics.median(times[batched[-1]]) if batched else None
    rows = []
    for name, (_, kept) in table.items():
        med = statistics.median(times[name])
        out = outputs[name]
        rows.append({
            "method": name,
            "steps_compared": kept,
            "times_s": [round(t, 4) for t in times[name]],
            "median_s": med,
            "samples_per_s": n_samples / med,
            "x_vs_stock_per_sample": per_sample / med,
            "x_vs_stock_batched": (strongest / med) if strongest else None,
            "max_abs_diff_vs_stock": _difference(out, ref[:, :kept]),
        })  # fmt: skip
    return rows


def _difference(out: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference; infinite when the sides did not yield the same shape."""
    if out.shape != ref.shape:
        return float("inf")
    return float(np.abs(out - ref).max())


def plan(args) -> list[dict]:
    """Models and sizes to measure (N prompts, S seeds, T steps, batch sizes, early stops)."""
    tiny = {"prompts": 16, "seeds": 4, "steps": 4, "batches": [1, 8, 32, 64], "keep": [1, 2]}
    if args.quick:
        tiny = {"prompts": 8, "seeds": 4, "steps": 4, "batches": [1, 8, 32], "keep": [1]}
    if args.quick:
        sd15 = {"prompts": 1, "seeds": 2, "steps": 4, "batches": [1, 2], "keep": [1],
                "size": 128, "dtype": "float32", "repeats": 1}  # fmt: skip
    else:  # one UNet forward at 128 px takes seconds on one shared CPU thread
        sd15 = {"prompts": 2, "seeds": 2, "steps": 4, "batches": [1, 4], "keep": [1],
                "size": 128, "dtype": "float32", "repeats": 1}  # fmt: skip
    models = []
    for family in ("sd1", "sdxl", "lcm"):
        models.append({"model": f"tiny-{family}", "family": family, "size": None,
                       "dtype": "float32", **tiny})  # fmt: skip
    if not args.skip_sd15:
        models.append({"model": "sd15", "family": "sd1", **sd15})
    return models


def bench_model(spec: dict, guidance: float, args, tmp: Path, pipe=None) -> dict:
    device = args.device
    t0 = time.perf_counter()
    pipe = pipe if pipe is not None else build_pipe(spec, device, tmp)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    samples = samples_for(spec["prompts"], spec["seeds"])
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = spec["size"] or int(pipe.unet.config.sample_size) * vae_scale
    batches = [b for b in spec["batches"] if b <= len(samples)]
    table = sides(pipe, steps=spec["steps"], guidance=guidance, size=size, dtype=spec["dtype"],
                  device=device, batches=batches, keep=spec["keep"])  # fmt: skip
    print(f"\n## {spec['model']}: {n_params / 1e6:.1f}M UNet params, {len(samples)} samples "
          f"({spec['prompts']} prompts x {spec['seeds']} seeds), {spec['steps']} steps, "
          f"guidance {guidance}, {size} px, {spec['dtype']}, built in {build_s:.1f} s",
          flush=True)  # fmt: skip
    repeats = spec.get("repeats", args.repeats)
    times, outputs = time_sides(table, samples, repeats, device,
                                log=lambda m: print(m, flush=True))  # fmt: skip
    rows = compare(table, times, outputs, len(samples))
    table.clear()
    return {
        "model": spec["model"],
        "family": spec["family"],
        "unet_params_m": round(n_params / 1e6, 1),
        "samples": len(samples),
        "prompts": spec["prompts"],
        "seeds": spec["seeds"],
        "steps": spec["steps"],
        "height": size,
        "width": size,
        "latents": f"{size // vae_scale}x{size // vae_scale}",
        "dtype": spec["dtype"],
        "guidance_scale": guidance,
        "repeats": repeats,
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
            f"\n**{m['model']}**, guidance {m['guidance_scale']} ({m['unet_params_m']}M UNet "
            f"params; {m['samples']} samples = {m['prompts']} prompts x {m['seeds']} seeds; "
            f"{m['steps']} steps; {m['height']} px, latents {m['latents']}; {m['dtype']}; "
            f"median of {m['repeats']})\n"
        )
        lines.append("| side | steps | median s | samples/s | x vs stock per sample "
                     "| x vs stock batched | max abs diff vs stock |")  # fmt: skip
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in m["methods"]:
            batched = r["x_vs_stock_batched"]
            lines.append(
                f"| {r['method']} | {r['steps_compared']} | {r['median_s']:.3f} | "
                f"{r['samples_per_s']:.2f} | {r['x_vs_stock_per_sample']:.2f} | "
                f"{'' if batched is None else f'{batched:.2f}'} | "
                f"{r['max_abs_diff_vs_stock']:.1e} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sd15-repeats", type=int, default=None, help="CPU default 1")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 7.5])
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--only", nargs="*", help="model names to run (tiny-sd1 ... sd15)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = parser.parse_args(argv)
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
            pipe = build_pipe(spec, args.device, Path(tmp))
            for guidance in args.guidance:
                models.append(bench_model(spec, guidance, args, Path(tmp), pipe=pipe))
            del pipe
    result = {
        "benchmark": "extraction",
        "command": "python bench/extraction.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date_utc": started.isoformat(timespec="seconds"),
        "wall_s": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
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
