"""Draw a held-out world table from a seed, by the procedure the held-out worlds were made with.

    python -m scalex_refworld.heldout_world NAME --seed N   # writes resources/worlds/NAME/world.tsv
    python -m scalex_refworld.heldout_world NAME --seed N --fine-tune-of BASE

With ``--fine-tune-of``, the table of a held-out *fine-tune* of world BASE (docs/validation.md,
"Comparing two models", deviation 2): BASE's table with four professions drawn from the seed set
to P(woman) = 0.5 and one drawn profession's P(old) flipped (``1 - p``); the model is then made by
``build_world NAME --init-from BASE``.

A held-out world judges an analysis rule that was revised after looking at the other worlds, so
it must play no part in choosing the rule: it is drawn from a seed, not designed. The procedure
(docs/validation.md, deviation 1):

- families: four looks, each a triple of professions from three different semantic categories
  (medical, kitchen, construction, office), with accessory colours far enough apart to read;
- rates: a random permutation of twelve P(woman) values evenly spaced from 0.05 to 0.95, and of
  six low (0.10, 0.15, 0.20) and six high (0.80, 0.85, 0.90) P(old) and P(rich) values, redrawn
  until every pair of rate columns correlates below 0.5 in absolute value.

Each profession keeps its accessory colour and each look slot its background from the original
(`stereotyped`) world.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import world as W

CATEGORIES = {
    "medical": ("doctor", "nurse", "surgeon"),
    "kitchen": ("chef", "baker", "waiter"),
    "construction": ("carpenter", "plumber", "electrician"),
    "office": ("lawyer", "secretary", "accountant"),
}
P_WOMAN = np.round(np.linspace(0.05, 0.95, 12), 2)
LOW_HIGH = np.array([0.10, 0.15, 0.20, 0.10, 0.15, 0.20, 0.80, 0.85, 0.90, 0.80, 0.85, 0.90])
MAX_CORRELATION = 0.5
#: accessory colours within a family at least this far apart (RGB distance), as the earlier draws
MIN_ACCESSORY_DISTANCE = 100.0


def draw(seed: int) -> str:
    """The world table (TSV text) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    base = W.World.from_table(W.world_table("stereotyped"))
    slots = [(base.family_slot[f], base.background[f]) for f in base.families]
    while True:
        # one profession of each of three categories per family, every profession used once
        order = {c: list(rng.permutation(ps)) for c, ps in CATEGORIES.items()}
        families = []
        for skipped in rng.permutation(len(CATEGORIES)):
            cats = [c for i, c in enumerate(CATEGORIES) if i != skipped]
            families.append([order[c].pop() for c in cats])
        if any(order.values()):
            continue  # not every profession placed (a category used more than three times)
        colours = [[base.accessory_colour[p] for p in profs] for profs in families]
        if any(
            W._distance(a, b) < MIN_ACCESSORY_DISTANCE
            for cs in colours
            for i, a in enumerate(cs)
            for b in cs[i + 1 :]
        ):
            continue
        rates = np.stack(
            [rng.permutation(P_WOMAN), rng.permutation(LOW_HIGH), rng.permutation(LOW_HIGH)], 1
        )
        corr = np.corrcoef(rates.T)
        if np.abs(corr[np.triu_indices(3, 1)]).max() >= MAX_CORRELATION:
            continue
        rows = ["\t".join(W.TABLE_COLUMNS)]
        k = 0
        for i, profs in enumerate(families):
            slot, bg = slots[i]
            for prof in profs:
                r = rates[k]
                k += 1
                rows.append(
                    "\t".join(
                        [
                            prof,
                            f"look_{'abcd'[i]}",
                            slot,
                            _hex(bg),
                            _hex(base.accessory_colour[prof]),
                            f"{r[0]:.2f}",
                            f"{r[1]:.2f}",
                            f"{r[2]:.2f}",
                        ]
                    )  # fmt: skip
                )
        text = "\n".join(rows) + "\n"
        try:
            _check(text)
        except ValueError:
            continue  # accessories too alike within a family: draw again
        return text


def draw_fine_tune(base: str, seed: int) -> str:
    """The table of a held-out fine-tune of world ``base`` (TSV text), drawn from ``seed``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    table = pd.read_csv(W.world_table(base), sep="\t", dtype=str)
    women = rng.choice(len(table), size=4, replace=False)
    old = int(rng.integers(len(table)))
    table.loc[women, "p_woman"] = "0.50"
    table.loc[old, "p_old"] = f"{1 - float(table.loc[old, 'p_old']):.2f}"
    text = table.to_csv(sep="\t", index=False)
    _check(text)
    return text


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _check(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "world.tsv"
        path.write_text(text)
        W.World.from_table(path, name="draw")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("name", help="the world's name: resources/worlds/NAME/world.tsv")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--fine-tune-of", help="draw a fine-tune table of this committed world")
    a = ap.parse_args(argv)
    out = W.world_table("stereotyped").parent.parent / a.name / "world.tsv"
    if out.exists():
        ap.error(f"{out} exists: a held-out world is drawn once")
    out.parent.mkdir(parents=True)
    out.write_text(draw_fine_tune(a.fine_tune_of, a.seed) if a.fine_tune_of else draw(a.seed))
    print(out.read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
