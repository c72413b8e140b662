"""Build a committed world in one command: train its model from its table, then measure it.

    python -m scalex_refworld.build_world opposed            # resources/worlds/opposed/
    python -m scalex_refworld.build_world --table my.tsv --out worlds/mine
    python -m scalex_refworld.build_world stereotyped-ft --init-from stereotyped   # fine-tune
    python -m scalex_refworld.build_world stereotyped-dit --denoiser dit    # a DiT world

Writes ``<world>/model/`` (the trained pipeline, see :mod:`scalex_refworld.train`) and
``<world>/evaluation/`` (prompt following and the rates the model realises, measured with the
stock pipeline by :mod:`scalex_refworld.evaluate`, with the model's content digest). Validation
reads the realised rates from there and refuses them if the model's digest has changed since.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import world as W

#: How the committed worlds were evaluated (stock pipeline, DDIM).
EVALUATION = ["--samples", "48", "--steps", "20", "--guidance", "1.0", "2.0"]


def recorded_recipe(model: Path) -> dict:
    """How a world's existing model was made (its marker): the denoiser, the fine-tune's
    base and a DiT's steps and caption scaling, so that retraining a world without options
    (``--forcerun train_world``) remakes it the same way."""
    from .loader import MARKER

    marker_file = model / MARKER
    if not marker_file.is_file():
        return {}
    marker = json.loads(marker_file.read_text())
    recipe = {"denoiser": marker.get("denoiser", "unet")}
    if marker.get("init_from"):
        recipe["init_from"] = marker["init_from"]["model"]
    elif recipe["denoiser"] == "dit":  # the first DiT worlds predate the caption scaling
        unet = marker.get("unet", {})
        recipe["dit"] = [
            "--unet-steps",
            str(unet.get("planned_steps", 3600)),
            "--dit-caption-init",
            unet.get("caption_init", "none"),
        ]
    return recipe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("world", nargs="?", help="a committed world's name (resources/worlds/NAME)")
    ap.add_argument("--table", help="world table (default: the world's world.tsv)")
    ap.add_argument("--out", help="world folder to write (default: the world's folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--init-from",
        help="fine-tune this model's UNet from its weights instead of training from scratch: a "
        "committed world's name or a model folder (see scalex_refworld.train --init-from)",
    )
    ap.add_argument(
        "--denoiser",
        choices=("unet", "dit"),
        default=None,
        help="train a UNet or a small PixArt-style DiT (default: what the world's model was "
        "trained as, from its marker; a new world: unet)",
    )
    ap.add_argument("--skip-training", action="store_true", help="only (re)evaluate the model")
    ap.add_argument("--skip-evaluation", action="store_true", help="only train the model")
    a = ap.parse_args(argv)
    if not a.world and not (a.table and a.out):
        ap.error("give a world's name, or --table and --out")
    folder = Path(a.out) if a.out else W.world_table(a.world).parent
    table = Path(a.table) if a.table else folder / "world.tsv"
    name = a.world or folder.name
    W.World.from_table(table, name=name)  # fail on a bad table before hours of training
    from . import evaluate, train

    recipe = recorded_recipe(folder / "model")
    if a.denoiser is None:
        a.denoiser = recipe.get("denoiser", "unet")
    if a.init_from is None:
        a.init_from = recipe.get("init_from")

    if not a.skip_training:
        init = []
        if a.init_from:
            base = Path(a.init_from)
            if not (base / "model_index.json").is_file():
                base = W.world_model(a.init_from)
            if not (base / "model_index.json").is_file():
                ap.error(f"--init-from {a.init_from}: neither a model folder nor a world's name")
            repo = W.WORLDS_DIR.parents[1]
            shown = (
                base.resolve().relative_to(repo) if base.resolve().is_relative_to(repo) else base
            )
            init = ["--init-from", str(shown)]
        train.main(
            [
                "--table",
                str(table),
                "--out",
                str(folder / "model"),
                "--seed",
                str(a.seed),
                "--threads",
                str(a.threads),
                "--denoiser",
                a.denoiser,
                *init,
                *recipe.get("dit", []),
            ]
        )
    if a.skip_evaluation:
        return 0
    grid = folder / "evaluation" / "grid.png"
    evaluate.main(
        [
            "--world",
            name,
            "--model",
            str(folder / "model"),
            "--table",
            str(table),
            "--out",
            str(folder / "evaluation"),
            "--grid",
            str(grid),
            "--threads",
            str(a.threads),
            *EVALUATION,
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
