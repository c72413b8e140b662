"""Sample reuse: an extraction job computes only the (prompt, seed) samples that no earlier shard
of its results tree holds.

Snakemake deletes a job's outputs before it reruns the job, so every finished shard is also kept
under ``<tree>/reuse/`` (a copy-on-write clone or a hard link, with a stamp:
:mod:`scalex.cachefiles`) and outlives that deletion. A later job reads from those kept shards
every sample whose identity is unchanged and runs the model on the rest. The identity of a sample
is its prompt text and seed plus what the shard's header proves: the results tree's settings hash
(model content digest, sampling and readout settings), the scalex code version, the versions of
the libraries that compute activations and where the noise was drawn. Reused samples are the
stored float16 values themselves, and every model batch has one shape (see
:meth:`scalex.extract.HSpaceExtractor.run_all`), so on the same device and batch size a shard
built from reused samples is byte-identical to one from a clean run.

Another job of the same run may replace a kept shard at any time (``--cores N``, SLURM), and a
user may edit a result in place. So a row is taken only from a file that is, at the moment it is
read and through the same open handle, the intact kept file with the right header, and only from
the position where that file itself names the sample's prompt and seed; anything else is
computed. A bad kept file costs a recompute, never a wrong sample.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalex.cachefiles import MEMO_DIR, REUSE_DIR, is_intact, keep_copy
from scalex.errors import StoreError
from scalex.io import ACTIVATIONS, concept_arrays, open_checked, shard_index
from scalex.provenance import code_version

log = logging.getLogger(__name__)


Sample = tuple[str, int]
#: readout -> tap -> kind -> array with one row per sample
Arrays = dict[str, dict[str, dict[str, np.ndarray]]]


def tree_of(shard: str | Path, settings_hash: str) -> Path | None:
    """The results tree (``<results>/<model>-<hash>``) that holds ``shard``, if any."""
    for parent in Path(shard).resolve().parents:
        if parent.name.endswith(f"-{settings_hash}"):
            return parent
    return None


def link_path(shard: str | Path, tree: Path) -> Path:
    """Where the kept copy of ``shard`` lives: its path in the tree, under ``reuse/``."""
    return tree / REUSE_DIR / Path(shard).resolve().relative_to(tree)


def keep(shard: str | Path, tree: Path) -> bool:
    """Keep a finished shard under ``reuse/`` (atomically replacing its earlier version). False,
    and nothing kept, where the file system refuses clones and hard links."""
    return keep_copy(shard, link_path(shard, tree))


def kept_shards(tree: Path) -> list[Path]:
    """The kept shards of a tree (the job memo's files aside)."""
    root = tree / REUSE_DIR
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.rglob("*.h5")
        if not p.name.startswith(".") and p.relative_to(root).parts[0] != MEMO_DIR
    )


@dataclass(frozen=True)
class Identity:
    """What a stored sample must have been computed under to be reused."""

    settings_hash: str
    noise_source: str
    versions: dict[str, str]
    code: str = field(default_factory=code_version)

    def problem(self, attrs: Any) -> str | None:
        """Why a shard's header does not match, or None."""
        if str(attrs.get("code_version")) != self.code:
            return f"other scalex code ({attrs.get('code_version')})"
        if str(attrs.get("noise_source")) != self.noise_source:
            return f"noise drawn on {attrs.get('noise_source')!r}, not {self.noise_source!r}"
        try:
            versions = json.loads(str(attrs.get("versions", "{}")))
        except json.JSONDecodeError:
            return "unreadable library versions"
        if versions != self.versions:
            return f"other library versions ({versions})"
        return None


def _open_kept(path: Path, identity: Identity):
    """An open kept shard that is intact (checked on the open handle) and of ``identity``, or
    None with the reason logged."""
    try:
        f = open_checked(path, ACTIVATIONS, identity.settings_hash)
    except StoreError as err:
        log.warning("not reusing %s: %s", path, err)
        return None
    problem = None
    try:
        if not is_intact(path, f.id.get_vfd_handle()):
            problem = "changed since it was kept (edited in place, or replaced)"
        else:
            problem = identity.problem(f.attrs)
    except (OSError, KeyError, ValueError, TypeError) as err:
        problem = str(err)
    if problem:
        log.info("not reusing %s: %s", path, problem)
        f.close()
        return None
    return f


@dataclass
class Reused:
    """Samples read from kept shards: their rows, and the header of the shard each came from."""

    arrays: Arrays = field(default_factory=dict)
    #: sample -> index of its row in ``arrays``
    row: dict[Sample, int] = field(default_factory=dict)
    #: sample -> header of the shard it was read from
    header: dict[Sample, dict[str, Any]] = field(default_factory=dict)
    #: each readout's (step indices, timesteps), from the shards read
    readouts: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)


@dataclass
class SampleStore:
    """The samples of a tree's kept shards, looked up by (prompt, seed)."""

    identity: Identity
    #: sample -> the kept shard that held it when scanned
    where: dict[Sample, Path] = field(default_factory=dict)

    @classmethod
    def scan(cls, tree: Path | None, identity: Identity) -> SampleStore:
        store = cls(identity)
        if tree is None:
            return store
        for path in kept_shards(tree):
            f = _open_kept(path, identity)
            if f is None:
                continue
            try:
                with f:
                    index, _, _ = shard_index(f)
            except (StoreError, OSError, KeyError, ValueError) as err:
                log.warning("not reusing %s: %s", path, err)
                continue
            for sample in index:
                store.where.setdefault(sample, path)
        return store

    def find(self, samples: Iterable[Sample]) -> list[Sample]:
        """The samples that the store held when scanned."""
        return [s for s in samples if s in self.where]

    def read(self, samples: Sequence[Sample]) -> Reused:
        """The stored float16 activations of those ``samples`` that are still held.

        Each kept shard is opened once and checked (intact, same identity) on that handle; its
        sample index is read again from it, so a row is taken where the file itself names the
        prompt and seed. Samples not read (their shard replaced, edited or gone since the scan)
        are simply absent: the caller computes them.
        """
        by_file: dict[Path, list[Sample]] = {}
        for sample in samples:
            if sample in self.where:
                by_file.setdefault(self.where[sample], []).append(sample)
        rows: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {}
        got = Reused()
        for path, wanted in by_file.items():
            f = _open_kept(path, self.identity)
            if f is None:
                continue
            try:
                with f:
                    index, header, readouts = shard_index(f)
                    seeds = [int(s) for s in f.attrs["seeds"]]
                    found = [s for s in wanted if s in index]
                    arrays = {}
                    for sample in found:
                        cid, p, s = index[sample]
                        prompts = f[f"concepts/{cid}/prompts"]
                        if (prompts.asstr()[p], seeds[s]) != sample:  # the file's own word
                            raise StoreError(f"{path}: index does not name {sample}")
                        if cid not in arrays:
                            arrays[cid] = concept_arrays(f, cid)
            except (StoreError, OSError, KeyError, ValueError) as err:
                log.warning("not reusing %s: %s", path, err)
                continue
            for sample in found:
                cid, p, s = index[sample]
                for readout, taps in arrays[cid].items():
                    for tap, kinds in taps.items():
                        for kind, arr in kinds.items():
                            dest = rows.setdefault(readout, {}).setdefault(tap, {})
                            dest.setdefault(kind, []).append(arr[p, s])
                got.row[sample] = len(got.row)
                got.header[sample] = header
            for readout, steps in readouts.items():
                got.readouts.setdefault(readout, steps)
        got.arrays = {
            r: {t: {k: np.stack(v) for k, v in kinds.items()} for t, kinds in taps.items()}
            for r, taps in rows.items()
        }
        return got
