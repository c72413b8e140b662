"""Sample reuse: an extraction job computes only the (prompt, seed) samples that no earlier shard
of its results tree holds.

Snakemake deletes a job's outputs before it reruns the job, so every finished shard is also kept
under ``<tree>/reuse/`` as a hard link (no second copy on disk) and outlives that deletion. A
later job reads from those links every sample whose identity is unchanged and runs the model on
the rest. The identity of a sample is its prompt text and seed plus what the shard's header
proves: the results tree's settings hash (model content digest, sampling and readout settings),
the scalex code version, the versions of the libraries that compute activations and where the
noise was drawn. Reused samples are the stored float16 values themselves, and every model batch
has one shape (see :meth:`scalex.extract.HSpaceExtractor.run_all`), so on the same device and
batch size a shard built from reused samples is byte-identical to one from a clean run.

A link that cannot be read, or was written under another identity, is skipped (and said so in
the job's log): the cost of a bad link is recomputation, never a wrong sample.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalex.errors import StoreError
from scalex.io import ACTIVATIONS, concept_arrays, open_checked, shard_index
from scalex.provenance import code_version

log = logging.getLogger(__name__)

#: Folder of the tree that holds the links to finished shards.
REUSE_DIR = "reuse"

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
    """Where the reuse link of ``shard`` lives: its path in the tree, under ``reuse/``."""
    return tree / REUSE_DIR / Path(shard).resolve().relative_to(tree)


def keep(shard: str | Path, tree: Path) -> bool:
    """Link a finished shard under ``reuse/`` (atomically replacing the link of its earlier
    version). False, and nothing kept, where the file system refuses hard links."""
    target = link_path(shard, tree)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(shard, tmp)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        log.warning("sample reuse off for %s: cannot hard-link it (%s)", shard, err)
        return False
    return True


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


@dataclass
class SampleStore:
    """The samples of a tree's reuse links, looked up by (prompt, seed)."""

    #: sample -> (file, concept id, prompt index, seed index)
    where: dict[Sample, tuple[Path, str, int, int]] = field(default_factory=dict)
    #: the header of one matching shard (for a job whose samples are all stored)
    header: dict[str, Any] | None = None
    #: each readout's (step indices, timesteps), from the same shard
    readouts: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)

    @classmethod
    def scan(cls, tree: Path | None, identity: Identity) -> SampleStore:
        store = cls()
        if tree is None or not (tree / REUSE_DIR).is_dir():
            return store
        for path in sorted((tree / REUSE_DIR).rglob("*.h5")):
            if path.name.startswith("."):
                continue
            try:
                with open_checked(path, ACTIVATIONS, identity.settings_hash) as f:
                    problem = identity.problem(f.attrs)
                    if problem:
                        log.info("not reusing %s: %s", path, problem)
                        continue
                    index, header, readouts = shard_index(f)
            except (StoreError, OSError, KeyError, ValueError) as err:
                log.warning("not reusing %s: %s", path, err)
                continue
            for sample, (cid, p, s) in index.items():
                store.where.setdefault(sample, (path, cid, p, s))
            if store.header is None:
                store.header, store.readouts = header, readouts
        return store

    def find(self, samples: Iterable[Sample]) -> list[Sample]:
        """The samples that the store holds."""
        return [s for s in samples if s in self.where]

    def read(self, samples: Sequence[Sample]) -> Arrays:
        """The stored float16 activations of ``samples`` (all held), one row each, in order."""
        if not samples:
            return {}
        out: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {}
        loaded: dict[tuple[Path, str], Arrays] = {}
        for sample in samples:
            path, cid, p, s = self.where[sample]
            if (path, cid) not in loaded:
                with open_checked(path, ACTIVATIONS) as f:
                    loaded[(path, cid)] = concept_arrays(f, cid)
            for readout, taps in loaded[(path, cid)].items():
                for tap, kinds in taps.items():
                    for kind, arr in kinds.items():
                        rows = out.setdefault(readout, {}).setdefault(tap, {})
                        rows.setdefault(kind, []).append(arr[p, s])
        return {
            r: {t: {k: np.stack(v) for k, v in kinds.items()} for t, kinds in taps.items()}
            for r, taps in out.items()
        }
