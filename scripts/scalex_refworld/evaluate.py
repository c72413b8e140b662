"""Check the reference model against its planted ground truth with the stock pipeline.

    python -m scalex_refworld.evaluate --world stereotyped --grid docs/reference-grid.png

Writes ``prompt_following.tsv`` (accuracy of the attributes named in explicit prompts, read back
by :mod:`scalex_refworld.reader`) and ``rates.tsv`` (realised P(woman), P(old), P(rich) on
neutral prompts such as "a photo of a nurse" vs the planted rates), one block per guidance scale.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from . import world as W
from .pipeline import model_digest
from .reader import read

log = logging.getLogger("scalex_refworld.evaluate")

ATTRS = ("profession", "gender", "age", "wealth")
AXIS_COLUMN = {"gender": "p_woman", "age": "p_old", "wealth": "p_rich"}
AXIS_VALUE = {"gender": "woman", "age": "old", "wealth": "rich"}


def generate(pipe, prompts, seeds, steps=30, guidance=3.0, batch=64) -> np.ndarray:
    """Images ``(N, 32, 32, 3)`` in [0, 1] for ``prompts[i]`` with seed ``seeds[i]``.

    Each image gets its own ``torch.Generator("cpu").manual_seed(seed)``, so it is the very image
    the stock pipeline makes for that prompt alone with that seed.
    """
    from scalex.conditioning import render_samples

    sampling = {"steps": steps, "guidance_scale": guidance, "noise_device": "cpu"}
    return render_samples(pipe, list(prompts), list(seeds), sampling, batch_size=batch)


def explicit_prompts(world: W.World, templates=("a photo of {}",)) -> list[tuple[str, dict]]:
    """Prompts that name attributes, with the values named.

    ``full``: every identity with gender, age and wealth named ("a photo of an old rich female
    doctor"); ``single``: one attribute named against a profession ("a photo of a male nurse").
    """
    items = []
    for t in templates:
        for prof in (*world.professions, W.PERSON):
            for g in W.GENDERS:
                for a in W.AGES:
                    for w in W.WEALTHS:
                        cap = W.make_caption(t, W.make_term(prof, g, a, w))
                        named = {"profession": prof, "gender": g, "age": a, "wealth": w}
                        items.append((cap, {"set": "full", **named}))
            for axis, values in (("gender", W.GENDERS), ("age", W.AGES), ("wealth", W.WEALTHS)):
                for v in values:
                    cap = W.make_caption(t, W.make_term(prof, **{axis: v}))
                    items.append((cap, {"set": "single", "profession": prof, axis: v}))
    return items


def prompt_following(
    pipe, world: W.World, seeds_per_prompt=2, steps=30, guidance=3.0, seed0=1000, batch=64
):
    """Accuracy of every named attribute, per prompt set. Returns rows for the TSV."""
    items = explicit_prompts(world)
    prompts, seeds, named = [], [], []
    for k, (cap, nm) in enumerate(items):
        for j in range(seeds_per_prompt):
            prompts.append(cap)
            seeds.append(seed0 + k * seeds_per_prompt + j)
            named.append(nm)
    images = generate(pipe, prompts, seeds, steps, guidance, batch)
    readings = read(images, world)
    rows = []
    for set_name in ("full", "single"):
        for attr in ATTRS:
            hits = [
                getattr(r, attr) == nm[attr]
                for r, nm in zip(readings, named, strict=True)
                if nm["set"] == set_name and attr in nm
            ]
            if hits:
                rows.append(
                    {
                        "set": set_name,
                        "attribute": attr,
                        "guidance_scale": guidance,
                        "steps": steps,
                        "n": len(hits),
                        "accuracy": round(float(np.mean(hits)), 4),
                    }
                )
    return rows


def rates(
    pipe,
    world: W.World,
    samples=64,
    steps=30,
    guidance=3.0,
    template="a photo of {}",
    seed0=0,
    batch=64,
):
    """Realised attribute rates on neutral prompts vs the planted ones. Returns TSV rows."""
    rows = []
    for prof in (*world.professions, W.PERSON):
        cap = W.make_caption(template, W.make_term(prof))
        seeds = list(range(seed0, seed0 + samples))
        readings = read(generate(pipe, [cap] * samples, seeds, steps, guidance, batch), world)
        planted = world.rates_of(prof)
        prof_acc = float(np.mean([r.profession == prof for r in readings]))
        for axis, col in AXIS_COLUMN.items():
            realised = float(np.mean([getattr(r, axis) == AXIS_VALUE[axis] for r in readings]))
            rows.append(
                {
                    "prompt": cap,
                    "profession": prof,
                    "family": world.family(prof),
                    "axis": axis,
                    "value": AXIS_VALUE[axis],
                    "planted": planted[col],
                    "realised": round(realised, 4),
                    "gap": round(realised - planted[col], 4),
                    "n": samples,
                    "profession_accuracy": round(prof_acc, 4),
                    "guidance_scale": guidance,
                    "steps": steps,
                }
            )
    return rows


def hspace_defaults(pipe, world: W.World, seeds=16, steps=10, guidance=3.0):
    """A prompt-only check in H-space (the tap ``mid_block``: a UNet's bottleneck, a DiT's middle
    block's image tokens), as scalex does it.

    Directions ``d_c = mean_{s, t} [h(c, s) - h(person, s)]`` (spatially pooled, conditional
    branch, same seeds for every prompt); the default score of a profession on an axis (a, b) is
    ``cos(d_prof, d_a) - cos(d_prof, d_b)`` with a, b = "a photo of a woman"/"man", "an old
    person"/"a young person", "a rich person"/"a poor person". Returns TSV rows and the Spearman
    correlation of each axis' scores with the planted rates.
    """
    from scalex.families import adapter_class, denoiser_of, stock_call_kwargs
    from scalex.hooks import Trace
    from scipy.stats import spearmanr

    store = []
    family = adapter_class(pipe)(pipe, denoiser_of(pipe).device, cfg=False)
    # every step's output, in order (the edit keeps the output and returns None: untouched)
    trace = Trace(
        family.denoiser,
        [family.module_name("mid_block")],
        edit_output=lambda _n, h, _c: store.append(h.detach()),
        stream=family.stream,
    )

    def latent(prompt):
        store.clear()
        gens = [torch.Generator("cpu").manual_seed(s) for s in range(seeds)]
        pipe(
            [prompt] * seeds,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type="latent",
            **stock_call_kwargs(pipe),
        )
        h = torch.stack(store)  # steps, (2)S, C, H, W
        if guidance > 1:
            h = h[:, seeds:]  # the conditional half of the classifier-free-guidance batch
        return h.float().mean(dim=(-1, -2))

    try:
        base = latent("a photo of a person")

        def direction(prompt):
            return (latent(prompt) - base).mean(dim=(0, 1))

        poles = {
            "gender": ("a photo of a woman", "a photo of a man"),
            "age": ("a photo of an old person", "a photo of a young person"),
            "wealth": ("a photo of a rich person", "a photo of a poor person"),
        }
        dirs = {ax: (direction(a), direction(b)) for ax, (a, b) in poles.items()}
        rows = []
        for prof in world.professions:
            d = direction(W.make_caption("a photo of {}", W.make_term(prof)))
            for ax, (da, db) in dirs.items():
                score = torch.cosine_similarity(d, da, 0) - torch.cosine_similarity(d, db, 0)
                rows.append(
                    {
                        "profession": prof,
                        "axis": ax,
                        "value": AXIS_VALUE[ax],
                        "planted": world.rates[prof][AXIS_COLUMN[ax]],
                        "score": round(float(score), 4),
                        "seeds": seeds,
                        "steps": steps,
                        "guidance_scale": guidance,
                    }
                )
    finally:
        trace.close()
    corr = {}
    for ax in poles:
        sub = [r for r in rows if r["axis"] == ax]
        corr[ax] = round(
            float(spearmanr([r["score"] for r in sub], [r["planted"] for r in sub])[0]), 4
        )
    return rows, corr


def write_tsv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def save_grid(pipe, path: Path, prompts, seeds=range(8), steps=30, guidance=3.0, zoom=3):
    """An image grid: one row per prompt, one column per seed (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = list(seeds)
    ps = [p for p in prompts for _ in seeds]
    imgs = generate(pipe, ps, seeds * len(prompts), steps, guidance)
    n_r, n_c = len(prompts), len(seeds)
    fig, axes = plt.subplots(n_r, n_c, figsize=(n_c * 0.9 + 2.6, n_r * 0.9), squeeze=False)
    for i in range(n_r):
        for j in range(n_c):
            ax = axes[i][j]
            ax.imshow(np.kron(imgs[i * n_c + j], np.ones((zoom, zoom, 1))).clip(0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(
                    prompts[i].removeprefix("a photo of "),
                    rotation=0,
                    ha="right",
                    va="center",
                    fontsize=8,
                )
            if i == 0:
                ax.set_title(f"seed {seeds[j]}", fontsize=7)
    fig.suptitle(f"reference model, DDIM {steps} steps, guidance {guidance}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def grid_prompts(world: W.World) -> list[str]:
    """One neutral prompt per profession (up to six), a few explicit ones and the person."""
    profs = list(world.professions)
    out = [W.make_caption("a photo of {}", W.make_term(p)) for p in profs[:6]]
    out += [
        W.make_caption("a photo of {}", W.make_term(profs[0], gender="man")),
        W.make_caption("a photo of {}", W.make_term(profs[-1], "woman", "young")),
        "a photo of an old rich woman",
        "a photo of a person",
    ]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--world", default=W.DEFAULT_WORLD, help="a committed world's name")
    ap.add_argument("--model", default=None, help="model folder (default: the world's model)")
    ap.add_argument("--table", default=None, help="world table (default: the world's table)")
    ap.add_argument(
        "--out", default=None, help="folder for the tables (default: the world's evaluation/)"
    )
    ap.add_argument("--grid", default=None, help="PNG image grid to write")
    ap.add_argument("--samples", type=int, default=64, help="seeds per neutral prompt")
    ap.add_argument("--seeds-per-prompt", type=int, default=2, help="seeds per explicit prompt")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    ap.add_argument("--grid-guidance", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--hspace", action="store_true", help="also write hspace_defaults.tsv (prompt-only check)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    from .pipeline import load_reference_pipeline

    t0 = time.monotonic()
    model = args.model or str(W.world_model(args.world))
    world = W.World.from_table(args.table or W.world_table(args.world), name=args.world)
    out = Path(args.out) if args.out else W.world_model(args.world).parent / "evaluation"
    pipe = load_reference_pipeline(model)
    follow, rate_rows, summary = [], [], {}
    for g in args.guidance:
        f = prompt_following(pipe, world, args.seeds_per_prompt, args.steps, g)
        r = rates(pipe, world, args.samples, args.steps, g)
        follow += f
        rate_rows += r
        prof_rows = [x for x in r if x["profession"] != W.PERSON]
        summary[str(g)] = {
            "accuracy_full": {x["attribute"]: x["accuracy"] for x in f if x["set"] == "full"},
            "accuracy_single": {x["attribute"]: x["accuracy"] for x in f if x["set"] == "single"},
            "mean_abs_gap": {
                axis: round(
                    float(np.mean([abs(x["gap"]) for x in prof_rows if x["axis"] == axis])), 4
                )
                for axis in AXIS_COLUMN
            },
            "mean_abs_gap_all": round(float(np.mean([abs(x["gap"]) for x in prof_rows])), 4),
            "neutral_profession_accuracy": round(
                float(np.mean([x["profession_accuracy"] for x in r])), 4
            ),
        }
        log.info("guidance %s: %s", g, json.dumps(summary[str(g)]))
    write_tsv(out / "prompt_following.tsv", follow)
    write_tsv(out / "rates.tsv", rate_rows)
    if args.grid:
        save_grid(
            pipe,
            Path(args.grid),
            grid_prompts(world),
            steps=args.steps,
            guidance=args.grid_guidance,
        )
    if args.hspace:
        h_rows, corr = hspace_defaults(pipe, world)
        write_tsv(out / "hspace_defaults.tsv", h_rows)
        summary["hspace_spearman"] = corr
        log.info("H-space default scores vs planted rates (Spearman): %s", corr)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["world"] = world.name
    summary["model_digest"] = model_digest(model)
    summary["settings"] = {
        "steps": args.steps,
        "samples": args.samples,
        "seeds_per_prompt": args.seeds_per_prompt,
        "scheduler": "DDIM",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("evaluation took %.0f s", summary["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
