"""HDF5 files of scalex: atomic writes, a documented layout and checks on every read.

Every file is written under a temporary name and renamed into place only after its last byte and
the ``complete`` attribute are on disk, so a killed job never leaves a file that looks finished.
Every reader checks the format, the ``complete`` flag and the settings hash, so a step never mixes
inputs from different models or settings. The layout is described in the README ("HDF5 format").
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from scalex.errors import StoreError  # noqa: F401  (re-exported)

FORMAT_VERSION = 2
STR = h5py.string_dtype(encoding="utf-8")


@contextlib.contextmanager
def atomic_h5(path: str | Path, fmt: str, attrs: dict[str, Any]) -> Iterator[h5py.File]:
    """Open ``path`` for writing through a temporary file, renamed on success only.

    ``fmt`` and ``attrs`` go on the root group; ``complete=True`` is set last.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # best-effort locking: file systems without locks (some NFS, Lustre mounts) still work
        with h5py.File(tmp, "w", track_order=True, locking="best-effort") as f:
            f.attrs["format"] = fmt
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["complete"] = False
            for key, value in attrs.items():
                set_attr(f, key, value)
            yield f
            f.attrs["complete"] = True
            f.flush()
        durable_replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file into place so that a crash (power, node failure) leaves
    either the old file or the whole new one: the data reaches the disk before the rename, and
    the rename before this returns."""
    tmp, path = Path(tmp), Path(path)
    _fsync(tmp)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some file systems refuse to fsync a directory
        _fsync(path.parent)


def atomic_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary name and :func:`durable_replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        durable_replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def set_attr(obj: h5py.HLObject, key: str, value: Any) -> None:
    """Store dicts as JSON strings and string lists as UTF-8 arrays, numbers as they are."""
    if value is None:
        value = "null"
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        value = np.array(value, dtype=STR)
    elif isinstance(value, (list, tuple)):
        value = np.asarray(value)
    obj.attrs[key] = value


def open_checked(path: str | Path, fmt: str, settings_hash: str | None = None) -> h5py.File:
    """Open a scalex file for reading after checking kind, completeness and settings."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: file does not exist")
    try:
        f = h5py.File(path, "r", locking="best-effort")
    except OSError as err:
        raise StoreError(f"{path}: not a readable HDF5 file ({err})") from err
    try:
        problem = _header_problem(f, fmt, settings_hash)
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        problem = f"has a damaged header ({err})"
    if problem:
        f.close()
        raise StoreError(f"{path}: {problem}")
    return f


def _header_problem(f: h5py.File, fmt: str, settings_hash: str | None) -> str | None:
    problem = None
    if f.attrs.get("format") != fmt:
        problem = f"is a {f.attrs.get('format')!r} file, expected {fmt!r}"
    elif not bool(f.attrs.get("complete", False)):
        problem = "is incomplete (its writer did not finish)"
    elif int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
        problem = f"has format version {f.attrs.get('format_version')}, expected {FORMAT_VERSION}"
    elif settings_hash is not None and f.attrs.get("settings_hash") != settings_hash:
        problem = (
            f"comes from settings {f.attrs.get('settings_hash')!r}, expected {settings_hash!r} "
            "(another model or extraction settings)"
        )
    return problem


def write_strings(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    group.create_dataset(name, data=np.array(list(values), dtype=STR))


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return decode_strings(read_dataset(dataset.file, dataset.name))


def decode_strings(values: Any) -> list[str]:
    """HDF5 strings (bytes or str) as Python strings."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def attr_json(obj: h5py.HLObject, key: str) -> Any:
    return json.loads(obj.attrs[key])


# -- activation shards -----------------------------------------------------------------------
ACTIVATIONS = "scalex.activations"


def write_readouts(f: h5py.File, readouts: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The ``readouts/<name>`` groups: each readout's step indices and timesteps."""
    for name, (step_indices, timesteps) in readouts.items():
        g = f.create_group(f"readouts/{name}")
        g.attrs["step_indices"] = np.asarray(step_indices, dtype=np.int64)
        g.attrs["timesteps"] = np.asarray(timesteps, dtype=np.int64)


def readout_steps(f: h5py.File, readout: str) -> tuple[list[int], list[int]]:
    """``(step_indices, timesteps)`` of a readout stored in an activation shard."""
    key = f"readouts/{readout}"
    if key not in f:
        have = sorted(f["readouts"]) if "readouts" in f else []
        raise StoreError(
            f"{f.filename}: holds no {readout!r} readout (has {have}); add it to "
            "extraction.readouts"
        )
    g = f[key]
    return [int(i) for i in g.attrs["step_indices"]], [int(t) for t in g.attrs["timesteps"]]


def write_concept_activations(
    f: h5py.File,
    concept_id: str,
    meta: dict[str, Any],
    prompts: Sequence[str],
    template_index: Sequence[int],
    arrays: dict[str, dict[str, dict[str, np.ndarray]]],
    compression: str | None = None,
    terms: Sequence[str] | None = None,
) -> None:
    """One concept's group: prompts, template index and ``<readout>/<tap>/<kind>`` float16 arrays.

    ``arrays[readout][tap][kind]`` has shape (P, S, T, C) for ``pooled`` and (P, S, T, C, h, w)
    for ``full``; chunks hold one prompt (pooled) or one prompt-seed (full).
    """
    group = f.create_group(f"concepts/{concept_id}")
    for key, value in meta.items():
        set_attr(group, key, value)
    write_strings(group, "prompts", prompts)
    group.create_dataset("template_index", data=np.asarray(template_index, dtype=np.int16))
    if terms is not None:
        write_strings(group, "terms", terms)
    for readout, taps in arrays.items():
        for tap, kinds in taps.items():
            for kind, arr in kinds.items():
                chunks = (1, *arr.shape[1:]) if kind == "pooled" else (1, 1, *arr.shape[2:])
                group.create_dataset(
                    f"{readout}/{tap}/{kind}",
                    data=arr.astype(np.float16),
                    chunks=chunks,
                    compression=None if compression in (None, "none") else compression,
                )


def read_activations(
    f: h5py.File, concept_id: str, tap: str, kind: str, readout: str = "prompt"
) -> np.ndarray:
    """float32 activations of one concept and readout: (P, S, T, C) or (P, S, T, C, h, w).

    The text readout has a single tap (``text_encoder``) whatever ``tap`` says.
    """
    if readout == "text":
        tap = "text_encoder"
    key = f"concepts/{concept_id}/{readout}/{tap}/{kind}"
    if key not in f:
        raise StoreError(
            f"{f.filename}: no {kind!r} activations of {concept_id!r} at tap {tap!r} in the "
            f"{readout!r} readout"
        )
    arr = read_dataset(f, key).astype(np.float32)
    if not np.isfinite(arr).all():
        raise StoreError(f"{f.filename}: {key} holds NaN or infinite values")
    return arr


def shard_concepts(f: h5py.File) -> list[str]:
    """The concepts of a shard or directions file, checked against the list its writer declared
    (root attribute ``concepts``): a file marked complete that lacks one is refused, so a concept
    cannot silently vanish from the analyses."""
    present = list(f["concepts"].keys()) if "concepts" in f else []
    if "concepts" in f.attrs:
        declared = decode_strings(f.attrs["concepts"])
        missing = sorted(set(declared) - set(present))
        extra = sorted(set(present) - set(declared))
        if missing or extra:
            raise StoreError(
                f"{f.filename}: holds concepts {sorted(present)} but declares {sorted(declared)}"
                f" (missing {missing}, unexpected {extra}); delete it to have it rebuilt"
            )
    return present


def read_dataset(f: h5py.File, key: str) -> np.ndarray:
    """A whole dataset; a damaged file gives an error naming it instead of a traceback."""
    try:
        return f[key][()]
    except (OSError, KeyError, RuntimeError) as err:
        raise StoreError(
            f"{f.filename}: cannot read {key} ({err}); delete it to have it rebuilt"
        ) from err


def audit_tree(tree: str | Path, settings_hash: str) -> int:
    """Check every finished HDF5 file of a results tree before the workflow plans anything.

    Each must open, carry a known format, be complete, come from this tree's settings, and hold
    the concepts it declares. Run when Snakemake parses the workflow, so that a damaged or
    foreign file stops the run with its name before any job starts or any output is deleted.
    Reads headers and group names only (no data). Returns the number of files checked.
    """
    root = Path(tree)
    checked = 0
    if not root.is_dir():
        return 0
    for path in sorted(root.rglob("*.h5")):
        if path.name.startswith("."):  # a writer's temporary file
            continue
        try:
            with h5py.File(path, "r", locking="best-effort") as f:
                fmt = str(f.attrs.get("format", ""))
        except OSError as err:
            raise StoreError(f"{path}: not a readable HDF5 file ({err}); delete it") from err
        if not fmt.startswith("scalex."):
            raise StoreError(f"{path}: not a scalex file (format {fmt!r}); move it out of the tree")
        with open_checked(path, fmt, settings_hash) as f:
            shard_concepts(f)
        checked += 1
    return checked
