"""Validate the two-model comparison on world pairs whose changes are known, in one command.

    python -m scalex_refworld.validate_comparisons            # every pair, results/worlds/
    python -m scalex_refworld.validate_comparisons --check    # exit 1 when a target is missed

Each pair of ``PAIRS`` runs the real workflow with the demo config, the base world's model as
``model`` and the new one as ``compare.model`` (docs/validation.md, "Comparing two models", the
rule declared before any comparison existed). The results trees live in ``<out>/trees``, where
``validate_worlds`` puts them too, so after it a comparison costs only what is new (the null
pair's other seeds) and the ``diff`` jobs. The realised change of every (profession, axis) is the
difference of the two worlds' realised rates (``evaluation/rates.tsv``, stock pipeline and
attribute reader, as the world validation reads them). Writes ``<out>/comparisons.tsv`` (one
row per pair), ``<out>/comparison_changes.tsv`` (every pair's every estimate beside its realised
change) and ``<out>/comparisons.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from scalex_refworld import world as W
from scalex_refworld.validate_worlds import ROOT, add_run_arguments, world_config


@dataclass(frozen=True)
class Pair:
    """A comparison whose truth is known: ``base`` and ``new`` worlds (and the new run's seeds)."""

    name: str
    base: str
    new: str
    seeds: dict | None = None
    #: nothing changed: flags must stay at or under the FDR
    null: bool = False
    #: the targets held on this pair (see TARGETS)
    targets: tuple[str, ...] = field(default_factory=tuple)


#: The declared pairs (docs/validation.md).
PAIRS = (
    Pair(
        "fine-tune",
        "stereotyped",
        "stereotyped-ft",
        targets=("recall", "false_flags", "rho", "ari"),
    ),
    Pair("opposed", "stereotyped", "opposed", targets=("recall",)),
    Pair("null: seeds", "stereotyped", "stereotyped", seeds={"start": 16, "count": 16}, null=True),
    Pair("null: retrain", "stereotyped-ft", "stereotyped-ft-seed1", null=True),
    # drawn after deviation 2 was declared (docs/validation.md)
    Pair(
        "held-out fine-tune",
        "heldout2",
        "heldout2-ft",
        targets=("recall", "false_flags", "rho", "ari"),
    ),
)
#: Declared targets: recall among pairs whose realised share moved by at least MOVED, at most
#: FALSE_FLAGS flags among pairs that moved by less than STILL, Spearman rho, clusters' ARI.
MOVED, STILL = 0.2, 0.05
TARGETS = {"recall": 0.9, "false_flags": 1, "rho": 0.9, "ari": 0.9}
#: The realised-rate value of each descriptor axis's first value, and the sign relating them:
#: the age axis is [young, old] while the rates give P(old).
RATE_OF_FIRST = {
    "female": ("gender", 1),
    "young": ("age", -1),
    "old": ("age", 1),
    "rich": ("wealth", 1),
    "poor": ("wealth", -1),
    "male": ("gender", -1),
}


def pair_config(base: dict, pair: Pair, trees: Path, n_seeds: int | None = None) -> dict:
    """The workflow config of one pair: the demo config on the base world, the new world as
    ``compare.model``; with ``n_seeds``, seeds 0..n-1 (and the seeds null pair's n..2n-1)."""
    cfg = world_config(base, pair.base, trees)
    compare = {"model": {"id": str(W.world_model(pair.new).relative_to(ROOT))}}
    seeds = pair.seeds
    if n_seeds is not None:
        cfg["sampling"]["seeds"] = {"start": 0, "count": n_seeds}
        seeds = None if seeds is None else {"start": n_seeds, "count": n_seeds}
    if seeds is not None:
        compare["seeds"] = seeds
    cfg["compare"] = compare
    return cfg


def run_pair(
    pair: Pair, base: dict, out: Path, cores: int, extra: list[str], n_seeds: int | None = None
) -> Path:
    """Run the workflow's comparison of one pair; return its ``compare/<tree>/`` folder."""
    from scalex.config import compared_config, results_tree, validate_config

    folder = out / "comparisons" / pair.name.replace(":", "").replace(" ", "-")
    folder.mkdir(parents=True, exist_ok=True)
    cfg = pair_config(base, pair, out / "trees", n_seeds)
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    valid = validate_config(cfg, base=ROOT)
    tree = results_tree(valid)
    compared = Path(results_tree(compared_config(valid, base=ROOT))).name
    target = f"{tree}/compare/{compared}"
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(ROOT), "--configfile", str(config_path), "--cores", str(cores),
        "--quiet", "rules", *extra, "--", f"{target}/diff.tsv", f"{target}/summary.json",
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    print(f"[{pair.name}] {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return ROOT / target


def realised_rates_at(world: str, guidance: float) -> pd.DataFrame:
    """A world's realised rate per (profession, axis) at one guidance scale of its evaluation."""
    rates = pd.read_csv(W.world_table(world).parent / "evaluation" / "rates.tsv", sep="\t")
    rates = rates[rates["profession"].isin(W.load_world(world).professions)]
    at = rates[np.isclose(rates["guidance_scale"], guidance)]
    if at.empty:
        raise SystemExit(
            f"{world}: its evaluation has no rates at guidance {guidance} (it has "
            f"{sorted(rates['guidance_scale'].unique())}): rerun build_world --skip-training"
        )
    return at.pivot(index="profession", columns="axis", values="realised").astype(float)


def realised_changes(pair: Pair, guidance: float) -> pd.DataFrame:
    """Per (profession, first value): the realised change new - base of the share of images
    showing the value, from both worlds' evaluations at the workflow's guidance scale (one
    guidance for both models: guidance alone moves rates; docs/validation.md, deviation 1 of the
    comparison rule). Zero for a pair of one world."""
    delta = realised_rates_at(pair.new, guidance) - realised_rates_at(pair.base, guidance)
    rows = []
    for value, (axis, sign) in RATE_OF_FIRST.items():
        for profession, change in delta[axis].items():
            rows.append({"concept": profession, "value": value, "realised": sign * float(change)})
    return pd.DataFrame(rows)


#: How the attribute reader names each descriptor axis's first value in sample_images.tsv.
IMAGE_VALUE = {"female": ("gender", "woman"), "young": ("age", "young"), "rich": ("wealth", "rich")}


def image_changes(folder: Path) -> pd.DataFrame | None:
    """Per (concept, first value): the change of the share of *the compared samples' own images*
    showing the value (each (prompt, seed) rendered by both models' stock pipelines and read by
    the attribute reader: ``validation/sample_images.tsv`` of both trees); None when a tree has
    no rendered samples (a tree the world validation did not make)."""
    base_tree = folder.parents[1]
    new_tree = base_tree.parent / folder.name
    files = [tree / "validation" / "sample_images.tsv" for tree in (base_tree, new_tree)]
    if not all(f.is_file() for f in files):
        return None
    base, new = (pd.read_csv(f, sep="\t") for f in files)
    both = base.merge(new, on=["concept", "prompt", "seed"], suffixes=("_base", "_new"))
    rows = []
    for value, (axis, read) in IMAGE_VALUE.items():
        hit = {s: both[f"{axis}_{s}"] == read for s in ("base", "new")}
        shares = pd.DataFrame(hit).groupby(both["concept"]).mean()
        for concept, r in shares.iterrows():
            rows.append({"concept": concept, "value": value, "images": r["new"] - r["base"]})
    return pd.DataFrame(rows)


def score(pair: Pair, folder: Path, guidance: float) -> tuple[dict, pd.DataFrame]:
    """One pair's row of the table, and its estimates beside the realised changes."""
    import json

    from scipy.stats import spearmanr

    diff = pd.read_csv(folder / "diff.tsv", sep="\t")
    summary = json.loads((folder / "summary.json").read_text())
    new_seeds = summary["new"]["settings"]["sampling"]["seeds"]
    changes = diff.merge(realised_changes(pair, guidance), on=["concept", "value"], how="left")
    images = image_changes(folder)
    if images is not None:
        changes = changes.merge(images, on=["concept", "value"], how="left")
    changes.insert(0, "pair", pair.name)
    moved = changes["realised"].abs() >= MOVED
    still = changes["realised"].abs() < STILL
    row = {
        "pair": pair.name,
        "base": pair.base,
        "new": pair.new + (f" (seeds {min(new_seeds)}-{max(new_seeds)})" if pair.seeds else ""),
        "seeds": len(new_seeds),
        "tested": len(diff),
        "flagged": int(diff["flagged"].sum()),
        "moved": int(moved.sum()),
        "recall": float(changes.loc[moved, "flagged"].mean()) if moved.any() else np.nan,
        "still": int(still.sum()),
        "false_flags": int(changes.loc[still, "flagged"].sum()),
        "rho": float(spearmanr(changes["difference"], changes["realised"]).statistic)
        if changes["realised"].nunique() > 1
        else np.nan,
        "ari": float(summary["clusters"]["ari"]),
        "text_max_change": float(diff["text_difference"].abs().max())
        if "text_difference" in diff
        else np.nan,
        "null_limit": int(np.floor(summary["fdr"] * len(diff))) if pair.null else np.nan,
    }
    # reported beside the rule's figures: the realised change on the compared samples' own images
    if images is not None and changes["images"].notna().all():
        moved_images = changes["images"].abs() >= MOVED
        row["moved_images"] = int(moved_images.sum())
        row["recall_images"] = (
            float(changes.loc[moved_images, "flagged"].mean()) if moved_images.any() else np.nan
        )
        row["rho_images"] = (
            float(spearmanr(changes["difference"], changes["images"]).statistic)
            if changes["images"].nunique() > 1
            else np.nan
        )
    return row, changes


def check(table: pd.DataFrame) -> list[str]:
    """What fails the declared targets (empty when they hold)."""
    problems = []
    for pair in PAIRS:
        row = table[table["pair"] == pair.name]
        if row.empty:
            problems.append(f"{pair.name}: not run")
            continue
        row = row.iloc[0]
        for target in pair.targets:
            value, goal = row[target], TARGETS[target]
            ok = value <= goal if target == "false_flags" else value >= goal
            if not ok:
                problems.append(f"{pair.name}: {target} {value:.3f} misses {goal}")
        limit = max(1, row["null_limit"]) if pair.null else None
        if pair.null and not row["flagged"] <= limit:
            problems.append(f"{pair.name}: {row['flagged']} flags on a null pair (at most {limit})")
    return problems


def markdown(table: pd.DataFrame) -> str:
    cols = [
        "pair",
        "base",
        "new",
        "seeds",
        "tested",
        "flagged",
        "moved",
        "recall",
        "still",
        "false_flags",
        "rho",
        "ari",
        "text_max_change",
    ]
    cols += [c for c in ("moved_images", "recall_images", "rho_images") if c in table]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            v = float(v) if isinstance(v, np.floating) else v
            if c in ("moved_images",) and isinstance(v, float) and not np.isnan(v):
                v = int(v)
            cells.append(
                "-"
                if isinstance(v, float) and np.isnan(v)
                else (f"{v:.2f}" if isinstance(v, float) else str(v))
            )
        lines.append("| " + " | ".join(cells) + " |")
    rule = (
        f"Targets: fine-tune recall >= {TARGETS['recall']} (|realised| >= {MOVED}), at most "
        f"{TARGETS['false_flags']} false flag (|realised| < {STILL}), rho >= {TARGETS['rho']}, "
        f"ARI >= {TARGETS['ari']}; opposed recall >= {TARGETS['recall']}; null pairs: flags at "
        "most the FDR's share of the tested pairs (at least one allowed)."
    )
    return "\n".join(lines) + "\n\n" + rule + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=None, help="pair names (default: all)")
    add_run_arguments(ap)
    ap.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per sample (0..N-1; the seeds null pair N..2N-1) instead of the config's "
        "(docs/validation.md, deviation 2: 64)",
    )
    a = ap.parse_args(argv)
    base = yaml.safe_load(Path(a.configfile).read_text())
    out = Path(a.out).resolve()
    pairs = [p for p in PAIRS if a.pairs is None or p.name in a.pairs]
    rows, changes = [], []
    for pair in pairs:
        folder = run_pair(pair, base, out, a.cores, a.snakemake_args, a.seeds)
        row, change = score(pair, folder, float(base["sampling"]["guidance_scale"]))
        rows.append(row)
        changes.append(change)
    table = pd.DataFrame(rows)
    table.to_csv(out / "comparisons.tsv", sep="\t", index=False, float_format="%.4f")
    pd.concat(changes).to_csv(
        out / "comparison_changes.tsv", sep="\t", index=False, float_format="%.4f"
    )
    (out / "comparisons.md").write_text(markdown(table))
    print(markdown(table))
    problems = check(table) if a.pairs is None else []
    for p in problems:
        print("NOT MET:", p)
    return 1 if (a.check and problems) else 0


if __name__ == "__main__":
    raise SystemExit(main())
