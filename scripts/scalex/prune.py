"""``scalex prune``: delete what a results tree keeps for reuse but the current config no longer
makes.

``<tree>/reuse/`` keeps every finished shard and each job's last outputs (:mod:`scalex.reuse`,
:mod:`scalex.memo`) so that reruns redo only what changed. Files of buckets, vocabularies or
analyses that the config has since dropped stay there until pruned; the current outputs' files
are kept (pruning them would only cost their recompute). ``--all`` empties ``reuse/``: the next
run then computes everything again.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scalex.cachefiles import MEMO_DIR, REUSE_DIR, forget
from scalex.memo import drop, recorded_outputs


@dataclass
class Pruned:
    """What pruning one tree removed."""

    tree: Path
    files: int = 0
    freed: int = 0

    def line(self) -> str:
        return (
            f"{self.tree / REUSE_DIR}: {self.files} kept files pruned, "
            f"{self.freed / 2**20:.1f} MiB freed"
        )


def current_outputs(snakemake_args: Sequence[str]) -> list[Path]:
    """Every output file of the workflow's DAG for these arguments (``snakemake --summary``)."""
    cmd = [sys.executable, "-m", "snakemake", *snakemake_args, "--summary"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else cmd)
    rows = csv.reader(io.StringIO(done.stdout), delimiter="\t")
    return [Path(row[0]).resolve() for row in rows if row and row[0] and row[0] != "output_file"]


def trees_of(outputs: Iterable[Path]) -> dict[Path, set[str]]:
    """Results tree -> the outputs in it (relative paths), for trees that keep a reuse folder."""
    trees: dict[Path, set[str]] = {}
    for path in outputs:
        for parent in path.parents:
            if (parent / REUSE_DIR).is_dir():
                trees.setdefault(parent, set()).add(path.relative_to(parent).as_posix())
                break
    return trees


def prune_tree(tree: Path, produced: set[str], everything: bool = False) -> Pruned:
    """Delete the kept files of ``tree`` that no output in ``produced`` (relative paths) is made
    from; all of them with ``everything``."""
    pruned = Pruned(tree)
    root = tree / REUSE_DIR
    if not root.is_dir():
        return pruned
    if everything:
        for path in root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                pruned.files += 1
                pruned.freed += path.stat().st_size if path.stat().st_nlink == 1 else 0
        shutil.rmtree(root)
        return pruned
    memo = root / MEMO_DIR
    for record in sorted(memo.glob("*/*.json")) if memo.is_dir() else []:
        outputs = recorded_outputs(record)
        if outputs is None or not set(outputs) <= produced:
            pruned.files += len(outputs or [])
            pruned.freed += drop(record)
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(root)
        if rel.parts[0] == MEMO_DIR:
            # jobs/<rule>/<name>.json is a record; jobs/<rule>/<name>/<file> what it keeps
            if len(rel.parts) == 4 and not path.parent.with_suffix(".json").is_file():
                pruned.files += 1
                pruned.freed += forget(path)
            continue
        if rel.as_posix() not in produced:
            pruned.files += 1
            pruned.freed += forget(path)
    for path in sorted(root.rglob(".*"), reverse=True):  # stamps and temporaries left alone
        kept = path.with_name(path.name[1:].removesuffix(".stamp"))
        if path.is_file() and not kept.exists():
            path.unlink()
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return pruned


def main(args: Sequence[str]) -> int:
    """``scalex prune [--all] [snakemake arguments...]``: prune the trees of this config."""
    everything = "--all" in args
    rest = [a for a in args if a != "--all"]
    outputs = current_outputs(rest)
    trees = trees_of(outputs)
    if not trees:
        print("scalex prune: no results tree of this config has been made yet")
        return 0
    for tree, produced in sorted(trees.items()):
        print(prune_tree(tree, produced, everything).line())
    return 0
