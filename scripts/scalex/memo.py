"""Job memo: a rule job whose inputs have the same content as at its last run gets that run's
outputs back instead of computing them again.

Snakemake reruns every job downstream of a job that reran, even where the rerun wrote the same
bytes (a descriptor table untouched by an edit elsewhere, clusters of a set the edit did not
touch). Each finished job therefore keeps its outputs under ``<tree>/reuse/jobs/`` (clones or
hard links with stamps: :mod:`scalex.cachefiles`) with a key: the rule, its wildcards and
params, the outputs' paths, the sha256 of every input file, the code of scalex and its plug-ins
and the versions of every library that can change a result. A job whose key matches, and whose
kept outputs are intact, gets them back and skips its work; it still pays its process start-up.
Rules that run the model on samples (extraction) reuse samples instead, and a job with more input
than :data:`MAX_INPUT_BYTES` is never memoised (hashing would cost more than the work it saves).
``extraction.reuse: false`` turns the memo off, and a job that Snakemake was told to force
(``--forceall``, ``--forcerun RULE``, ``--force TARGET``) computes (:data:`FORCED_ENV`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalex.cachefiles import MEMO_DIR, REUSE_DIR, forget, is_intact, keep_copy, restore_copy

log = logging.getLogger("scalex")

#: Jobs with more input than this are not memoised.
MAX_INPUT_BYTES = 256 * 2**20
#: Environment variable by which the workflow tells its jobs what Snakemake was told to force:
#: JSON ``{"all": bool, "rules": [...], "files": [...]}`` (see :func:`forced_spec`).
FORCED_ENV = "SCALEX_FORCED"


def forced_spec(forceall: bool, forcerun: Iterable[str], targets: Iterable[str]) -> str:
    """The value of :data:`FORCED_ENV` for Snakemake's force settings (``targets``: the
    command-line targets when ``--force`` was given, else none; each may name a rule or a
    file, so it is taken as both)."""
    targets = list(targets)
    return json.dumps(
        {
            "all": bool(forceall),
            "rules": sorted(set(forcerun) | set(targets)),
            "files": sorted(str(Path(t).resolve()) for t in targets),
        }
    )


def is_forced(rule: str, outputs: Iterable[Path]) -> bool:
    """Whether Snakemake was told to force this job (by :data:`FORCED_ENV`)."""
    try:
        spec = json.loads(os.environ.get(FORCED_ENV) or "{}")
    except json.JSONDecodeError:
        return False
    if spec.get("all") or rule in spec.get("rules", []):
        return True
    files = set(spec.get("files", []))
    return any(str(Path(o).resolve()) in files for o in outputs)


def tree_of_job(smk: Any) -> Path | None:
    """The results tree of a job that logs under ``<tree>/logs/<rule>/`` (every scalex rule)."""
    if not getattr(smk, "log", None):
        return None
    parents = Path(smk.log[0]).resolve().parents
    if len(parents) < 3 or parents[1].name != "logs":
        return None
    return parents[2]


def _files(paths: Iterable[Any]) -> list[Path]:
    return [Path(str(p)) for p in paths]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class JobMemo:
    """The memo of one job: its key and where its record and output links live."""

    key: str
    record: Path
    outputs: list[Path]
    links: list[Path]
    #: the outputs' paths relative to the tree (recorded, so that pruning knows them)
    rel_outputs: list[str]

    @classmethod
    def of(cls, smk: Any, scope: dict[str, Any] | None = None) -> JobMemo | None:
        """The memo of a Snakemake job, or None where it cannot be memoised.

        ``scope`` maps input names to the concepts the job reads from those files (shards or
        directions), or to ``{"datasets": [...]}``, the root datasets it reads: only those
        enter the key (:func:`scalex.io.concepts_digest`, :func:`scalex.io.datasets_digest`),
        so an edit of another concept in the same file leaves the job's key unchanged.
        """
        from scalex.provenance import code_version, package_versions

        tree = tree_of_job(smk)
        outputs = _files(smk.output)
        if tree is None or not outputs:
            return None
        inputs = _files(smk.input)
        try:
            if any(not p.is_file() for p in inputs) or any(o.is_dir() for o in outputs):
                return None
            if sum(p.stat().st_size for p in inputs) > MAX_INPUT_BYTES:
                return None
            rel_outputs = [str(o.resolve().relative_to(tree)) for o in outputs]
        except (OSError, ValueError):
            return None
        scoped = _scoped_digests(smk, scope or {})
        content = {
            "rule": smk.rule,
            "scope": scope or {},
            "wildcards": dict(smk.wildcards.items()),
            "params": dict(smk.params.items()),
            "outputs": rel_outputs,
            "inputs": [str(p) for p in inputs],
            "input_sha256": [scoped.get(str(p)) or _digest(p) for p in inputs],
            "code": code_version(),
            "versions": package_versions(),
        }
        key = hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode()).hexdigest()
        name = hashlib.sha256("\0".join(rel_outputs).encode()).hexdigest()[:24]
        root = tree / REUSE_DIR / MEMO_DIR / smk.rule
        links = [root / name / f"{i}-{Path(o).name}" for i, o in enumerate(rel_outputs)]
        return cls(
            key=key,
            record=root / f"{name}.json",
            outputs=outputs,
            links=links,
            rel_outputs=rel_outputs,
        )

    def restore(self) -> bool:
        """Put the last run's outputs back when the key matches and every kept output is intact
        (unedited since it was kept); False (nothing done) if not."""
        try:
            if json.loads(self.record.read_text()).get("key") != self.key:
                return False
        except (OSError, json.JSONDecodeError):
            return False
        changed = [link for link in self.links if not is_intact(link)]
        if changed:
            log.info("job memo not used: %s changed since it was kept: computing", changed[0])
            return False
        done: list[Path] = []
        try:
            for link, out in zip(self.links, self.outputs, strict=True):
                out.parent.mkdir(parents=True, exist_ok=True)
                restore_copy(link, out)
                done.append(out)
        except OSError as err:
            for out in done:
                out.unlink(missing_ok=True)
            log.warning("job memo not restored (%s): computing", err)
            return False
        return True

    def keep(self) -> None:
        """Keep the finished outputs under ``reuse/jobs/`` and record the key (best effort)."""
        try:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self.record.unlink(missing_ok=True)  # no record while the kept files change
            for link, out in zip(self.links, self.outputs, strict=True):
                if not keep_copy(out, link):
                    return
            tmp = self.record.with_name(f".{self.record.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps({"key": self.key, "outputs": self.rel_outputs}) + "\n")
            os.replace(tmp, self.record)
        except OSError as err:
            log.warning("job memo not kept (%s)", err)


def drop(record: Path) -> int:
    """Delete a memo record and its kept outputs; the bytes freed."""
    freed = 0
    folder = record.with_suffix("")
    if folder.is_dir():
        for path in list(folder.iterdir()):
            if not path.name.startswith("."):
                freed += forget(path)
            else:
                path.unlink(missing_ok=True)
        folder.rmdir()
    record.unlink(missing_ok=True)
    return freed


def recorded_outputs(record: Path) -> list[str] | None:
    """The outputs (relative to the tree) a memo record was kept for; None when unreadable."""
    try:
        outputs = json.loads(record.read_text()).get("outputs")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return outputs if isinstance(outputs, list) else None


def _scoped_digests(smk: Any, scope: dict[str, Any]) -> dict[str, str]:
    """Input path -> digest of the scoped concepts' data, for the inputs named in ``scope``."""
    from scalex.io import concepts_digest, datasets_digest

    out: dict[str, str] = {}
    for name, what in scope.items():
        files = getattr(smk.input, name)
        for path in [files] if isinstance(files, str) else list(files):
            if isinstance(what, dict):  # {"datasets": [...]}: named root datasets only
                out[str(path)] = "datasets:" + datasets_digest(path, what["datasets"])
            else:
                out[str(path)] = "concepts:" + concepts_digest(path, what)
    return out
