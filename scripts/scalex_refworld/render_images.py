"""Render ground-truth world images with their attributes, for the projection check.

``python -m scalex_refworld.render_images --out resources/reference/images`` writes one PNG per
identity of the world (every profession, gender, age and wealth, plus the neutral person) and a
``labels.tsv`` whose ``label`` column is 1 for women, 0 for men, as the projection rule expects.
Deterministic from ``--seed``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from scalex_refworld.world import DEFAULT_WORLD, load_world


def render_labelled(
    out: str | Path, copies: int = 1, seed: int = 0, world: str = DEFAULT_WORLD
) -> Path:
    """Write the images and labels.tsv into ``out``; return the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = load_world(world)
    attrs = w.all_combinations() * copies
    images = w.render_batch(attrs, seed=seed)
    rows = ["image\tlabel\tprofession\tgender\tage\twealth"]
    for i, (a, img) in enumerate(zip(attrs, images, strict=True)):
        name = f"{i:04d}-{a.profession}-{a.gender}-{a.age}-{a.wealth}.png"
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(out / name, optimize=True)
        fields = (name, int(a.gender == "woman"), a.profession, a.gender, a.age, a.wealth)
        rows.append("\t".join(str(f) for f in fields))
    (out.parent / f"{out.name}-labels.tsv").write_text("\n".join(rows) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="resources/reference/images")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(render_labelled(args.out, args.copies, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
