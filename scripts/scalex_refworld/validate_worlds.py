"""Validate scalex on every committed world, with every readout, in one command.

    python -m scalex_refworld.validate_worlds            # all worlds, results/worlds/
    python -m scalex_refworld.validate_worlds --check    # exit 1 when a target is missed

For each world under ``resources/worlds/`` it runs the real workflow (the demo config, only
``model.id`` and ``results`` changed, as ``docs/validation.md`` fixes) up to the validation
summary, then writes one table, world x readout x metric, to ``<out>/summary.tsv`` and a Markdown
copy to ``<out>/summary.md``. The check (docs/validation.md):

- clusters and descriptors meet their targets on every world with the readouts validated for them
  (``VALIDATED``);
- gender defaults, which no readout reads to the 0.9 target on every world (docs/validation.md),
  must at least beat the text-encoder control by ``GENDER_MARGIN`` on every world with the best
  H-space readout: a finding that the text encoder alone could not make;
- the text-encoder control misses at least one target on every world built to disagree with a
  text encoder (``DISCRIMINATING``), which shows that the worlds discriminate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from scalex_refworld import world as W
from scalex_refworld.validate import TARGETS

ROOT = Path(__file__).resolve().parents[2]
#: worlds whose truth disagrees with a text encoder's associations: the control must fail there
DISCRIMINATING = (
    "opposed",
    "scrambled",
    "heldout",
    "heldout2",
    "heldout3",
    "heldout4",
    "heldout5-dit",
    "heldout6-dit",
)
#: the worlds the rule is checked on by default: the UNet worlds. The DiT worlds (transformer
#: readout, docs/validation.md) are judged apart, by name: ``--worlds stereotyped-dit
#: heldout6-dit heldout5-dit``.
DEFAULT_DENOISER = "unet"
#: the analyses that meet their targets on every world, and the readouts that do it
VALIDATED = {
    "spearman_realised_vote": ("content",),
    "ari_families": ("content",),
    "top1": ("content", "prompt"),
    # each vote against its own sample's rendered image (docs/validation.md, deviation 6)
    "agreement_gender": ("content",),
    "agreement_age": ("content",),
    "agreement_wealth": ("content",),
}
#: how far the best H-space readout's gender rho must stay above the text control's
GENDER_MARGIN = 0.3
#: The check on the model (docs/validation.md, "The check"): the axes it is judged on, how far
#: the corrected shares may lie further from the images than the raw votes where the vote is
#: unbiased, and the raw gap above which a vote counts as biased.
CHECK_AXES = ("gender", "age", "wealth")
CORRECTION_SLACK = 0.02
BIASED_GAP = 0.05
#: The biased vote the corrected shares are judged on: the content readout restricted to its
#: first step after the seed's noise (``--biased-vote``).
BIASED_KEEP_STEPS = [0, 1]
#: the gender scores compared with the text control (docs/validation.md, deviations 4 and 5)
GENDER_METRICS = ("spearman_realised", "spearman_realised_descriptor", "spearman_realised_vote")


def world_config(base: dict, world: str, results: Path) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(base))
    cfg["model"]["id"] = str(W.world_model(world).relative_to(ROOT))
    cfg["results"] = str(results)
    return cfg


def run_world(world: str, base: dict, out: Path, cores: int, extra: list[str]) -> Path:
    """Run the workflow on one world; return its validation summary."""
    from scalex.config import results_tree, validate_config

    folder = out / world
    folder.mkdir(parents=True, exist_ok=True)
    # every world's tree in one results folder, where validate_comparisons finds them
    cfg = world_config(base, world, out / "trees")
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tree = results_tree(validate_config(cfg, base=ROOT))
    target = f"{tree}/validation/summary.tsv"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(ROOT),
        "--configfile",
        str(config_path),
        "--cores",
        str(cores),
        "--quiet",
        "rules",
        *extra,
        "--",
        target,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    print(f"[{world}] {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return ROOT / target


def collect(summaries: dict[str, Path]) -> pd.DataFrame:
    frames = []
    for world, path in summaries.items():
        frame = pd.read_csv(path, sep="\t")
        frame.insert(0, "world", world)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def check(table: pd.DataFrame) -> list[str]:
    """What fails the validation rule (empty when it holds)."""
    problems = []
    for world, rows in table.groupby("world"):
        for metric, readouts in VALIDATED.items():
            for readout in readouts:
                rec = rows[(rows["readout"] == readout) & (rows["metric"] == metric)]
                if rec.empty:
                    problems.append(f"{world}: no {metric} for the {readout} readout")
                for _, r in rec.iterrows():
                    if not r["value"] >= TARGETS[metric]:
                        problems.append(
                            f"{world}: the {readout} readout misses {metric} "
                            f"({r['value']:.3f} < {TARGETS[metric]})"
                        )
        gender = rows[rows["metric"].isin(GENDER_METRICS)]
        best = gender[gender["readout"] != "text"]["value"].max()
        control = gender[gender["readout"] == "text"]["value"].max()
        if not best >= control + GENDER_MARGIN:
            problems.append(
                f"{world}: the best H-space gender rho ({best:.3f}) is not {GENDER_MARGIN} "
                f"above the text control's ({control:.3f})"
            )
        rows = rows[rows["metric"].isin(TARGETS)]
        text = rows[rows["readout"] == "text"]
        if world in DISCRIMINATING and len(text) and (text["value"] >= text["target"]).all():
            problems.append(f"{world}: the text-encoder control meets every target")
    return problems


def _metric(rows: pd.DataFrame, readout: str, metric: str) -> float:
    found = rows[(rows["readout"] == readout) & (rows["metric"] == metric)]["value"]
    return float(found.iloc[0]) if len(found) else float("nan")


def check_problems(world: str, rows: pd.DataFrame) -> list[str]:
    """The check judged on one world (docs/validation.md, "The check", 1-3): it passes and its
    CI holds the validation's agreement on all samples; shuffled, it fails; the corrected
    shares lie no further from the images than the raw votes (by ``CORRECTION_SLACK``).
    Reported beside the validated claims, not among them: its outcome is in docs/validation.md.
    """
    if not (rows["readout"] == "check").any():
        return []
    problems = []
    for axis in CHECK_AXES:
        passed = _metric(rows, "check", f"check_passed_{axis}")
        low = _metric(rows, "check", f"check_ci_low_{axis}")
        high = _metric(rows, "check", f"check_ci_high_{axis}")
        agreement = _metric(rows, "check", f"check_agreement_{axis}")
        full = _metric(rows, "content", f"agreement_{axis}")
        if passed != 1.0:
            problems.append(f"{world}: the check fails on {axis} (agreement {agreement:.3f})")
        if not low <= full <= high:
            problems.append(
                f"{world}: the check's CI on {axis} ({low:.3f}-{high:.3f}) misses the "
                f"validation's agreement {full:.3f}"
            )
        if _metric(rows, "check", f"check_shuffled_passed_{axis}") != 0.0:
            problems.append(f"{world}: the shuffled check passes on {axis}")
        raw = _metric(rows, "check", f"share_mae_vote_{axis}")
        fixed = _metric(rows, "check", f"share_mae_corrected_{axis}")
        if not fixed <= raw + CORRECTION_SLACK:
            problems.append(
                f"{world}: corrected {axis} shares lie further from the images ({fixed:.3f}) "
                f"than the votes ({raw:.3f})"
            )
    return problems


def biased_vote_problems(table: pd.DataFrame) -> list[str]:
    """Where the vote is biased (its raw share gap above ``BIASED_GAP``), the corrected shares
    must lie closer to the images than the raw votes (docs/validation.md, "The check", 3)."""
    problems = []
    for world, rows in table.groupby("world", sort=False):
        for axis in CHECK_AXES:
            raw = _metric(rows, "check", f"share_mae_vote_{axis}")
            fixed = _metric(rows, "check", f"share_mae_corrected_{axis}")
            if raw > BIASED_GAP and not fixed < raw:
                problems.append(
                    f"{world}: on the biased vote, corrected {axis} shares ({fixed:.3f}) are not "
                    f"closer to the images than the votes ({raw:.3f})"
                )
    return problems


def check_markdown(table: pd.DataFrame) -> str:
    """The check's rows per world: agreement (CI low), kappa, passed; shuffled; share gaps."""
    rows = table[table["readout"] == "check"]
    if rows.empty:
        return ""
    lines = [
        "| world | axis | check agreement (CI low) | kappa | passed | validation agreement "
        "| shuffled: agreement, kappa, passed | share gap: vote → corrected |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]
    for world, block in table.groupby("world", sort=False):
        for axis in CHECK_AXES:
            m = {k: _metric(block, "check", f"{k}_{axis}") for k in (
                "check_agreement", "check_ci_low", "check_kappa", "check_passed",
                "check_shuffled_agreement", "check_shuffled_kappa", "check_shuffled_passed",
                "share_mae_vote", "share_mae_corrected")}  # fmt: skip
            full = _metric(block, "content", f"agreement_{axis}")
            lines.append(
                f"| {world} | {axis} | {m['check_agreement']:.2f} ({m['check_ci_low']:.2f}) "
                f"| {m['check_kappa']:.2f} | {'yes' if m['check_passed'] == 1 else 'NO'} "
                f"| {full:.2f} | {m['check_shuffled_agreement']:.2f}, "
                f"{m['check_shuffled_kappa']:.2f}, "
                f"{'YES' if m['check_shuffled_passed'] == 1 else 'no'} "
                f"| {m['share_mae_vote']:.3f} → {m['share_mae_corrected']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def markdown(table: pd.DataFrame) -> str:
    shown = ["spearman_realised", "spearman_realised_descriptor", "spearman_realised_vote"]
    shown += ["ari_families"]
    shown += ["ari_families_raw", "top1"]
    shown += [f"agreement_{axis}" for axis in ("gender", "age", "wealth")]
    wide = table[table["metric"].isin(shown)].pivot_table(
        index=["world", "readout"], columns="metric", values="value", sort=False
    )
    cols = [c for c in shown if c in wide]
    lines = [
        "| world | readout | " + " | ".join(cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for (world, readout), row in wide[cols].iterrows():
        cells = []
        for c in cols:
            v = row[c]
            mark = "" if c not in TARGETS else (" ✓" if v >= TARGETS[c] else " ✗")
            cells.append(f"{v:.2f}{mark}")
        lines.append(f"| {world} | {readout} | " + " | ".join(cells) + " |")
    targets = ", ".join(f"{k} ≥ {v}" for k, v in TARGETS.items())
    return "\n".join(lines) + f"\n\nTargets: {targets} (✓ met, ✗ missed).\n"


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every validation command shares: the base config, where the trees go, the
    cores, --check, and Snakemake's own arguments."""
    ap.add_argument("--configfile", default=str(ROOT / "config" / "config.yaml"))
    ap.add_argument("--out", default=str(ROOT / "results" / "worlds"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("snakemake_args", nargs="*", help="passed to snakemake after --")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worlds", nargs="+", default=None, help="default: every committed UNet world")
    ap.add_argument(
        "--biased-vote",
        action="store_true",
        help="keep steps 0 and 1 only (a biased vote) and judge the corrected shares alone",
    )
    add_run_arguments(ap)
    a = ap.parse_args(argv)
    base = yaml.safe_load(Path(a.configfile).read_text())
    if a.biased_vote:
        base.setdefault("extraction", {})["keep_steps"] = BIASED_KEEP_STEPS
    worlds = a.worlds or W.committed_worlds(DEFAULT_DENOISER)
    out = Path(a.out).resolve()
    summaries = {w: run_world(w, base, out, a.cores, a.snakemake_args) for w in worlds}
    table = collect(summaries)
    table.to_csv(out / "summary.tsv", sep="\t", index=False, float_format="%.4f")
    (out / "summary.md").write_text(markdown(table) + "\n" + check_markdown(table))
    print(markdown(table))
    print(check_markdown(table))
    problems = biased_vote_problems(table) if a.biased_vote else check(table)
    if not a.biased_vote:  # the check's rule as declared: reported, not (yet) a validated claim
        for world, rows in table.groupby("world", sort=False):
            for p in check_problems(world, rows):
                print("check rule not met (docs/validation.md, 'The check'):", p)
    for p in problems:
        print("NOT MET:", p)
    if not problems:
        print(f"validation rule holds on {', '.join(worlds)}")
    return 1 if (a.check and problems) else 0


if __name__ == "__main__":
    raise SystemExit(main())
