"""Every file format of scalex, in one place: HDF5 shards, directions and similarity files,
prompt files, tables, images. Atomic writes, a documented layout and checks on every read.

Every file is written under a temporary name and renamed into place only after its last byte and
the ``complete`` attribute are on disk, so a killed job never leaves a file that looks finished.
Every reader checks the format, the ``complete`` flag and the settings hash, so a step never mixes
inputs from different models or settings. The layout is described in docs/design.md ("HDF5 format").
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from scalex.cachefiles import REUSE_DIR
from scalex.config import canonical_json
from scalex.errors import ConfigError, StoreError
from scalex.layout import TEXT, TEXT_TAP
from scalex.provenance import code_version

if TYPE_CHECKING:
    import pandas as pd

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
            f.attrs["code_version"] = code_version()
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
        # float: a flow-matching schedule's timesteps (sigma x 1000) are not integers
        g.attrs["timesteps"] = np.asarray(timesteps, dtype=np.float64)


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
    return [int(i) for i in g.attrs["step_indices"]], [float(t) for t in g.attrs["timesteps"]]


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
    if readout == TEXT:
        tap = TEXT_TAP
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


#: Root attributes of a shard that belong to its own concepts, not to the run that wrote it.
SHARD_OWN_ATTRS = ("format", "format_version", "complete", "code_version", "concepts", "seeds")


def shard_index(
    f: h5py.File,
) -> tuple[
    dict[tuple[str, int], tuple[str, int, int]],
    dict[str, Any],
    dict[str, tuple[list[int], list[int]]],
]:
    """Where each (prompt, seed) sample of a shard is: ``(concept id, prompt index, seed
    index)``; plus the header of the run that wrote it (without the shard's own concepts and
    seeds) and its readouts' steps. Reads names and attributes only."""
    seeds = [int(s) for s in f.attrs["seeds"]]
    index: dict[tuple[str, int], tuple[str, int, int]] = {}
    for cid in shard_concepts(f):
        for p, prompt in enumerate(read_strings(f[f"concepts/{cid}/prompts"])):
            for s, seed in enumerate(seeds):
                index.setdefault((prompt, seed), (cid, p, s))
    # as stored, in the order written: a shard rewritten from it gets the same bytes
    header = {k: v for k, v in f.attrs.items() if k not in SHARD_OWN_ATTRS}
    readouts = {name: readout_steps(f, name) for name in f["readouts"]}
    return index, header, readouts


def concept_arrays(f: h5py.File, concept_id: str) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """A concept's stored activations as they are (float16), ``[readout][tap][kind]``, each
    (P, S, ...)."""
    group = f[f"concepts/{concept_id}"]
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for readout in f["readouts"]:
        if readout not in group:
            continue
        for tap in group[readout]:
            for kind in group[f"{readout}/{tap}"]:
                key = f"concepts/{concept_id}/{readout}/{tap}/{kind}"
                out.setdefault(readout, {}).setdefault(tap, {})[kind] = read_dataset(f, key)
    return out


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


def concepts_digest(path: str | Path, concepts: Sequence[str]) -> str:
    """sha256 of what a reader of ``concepts`` gets from a shard or directions file: the root
    attributes (but the file's concept list) and those concepts' groups, data and attributes.

    A job that reads a few concepts of a file (steering reads two directions) is then the same
    job whenever those concepts are, whatever else the file holds (:mod:`scalex.memo`).
    """
    import hashlib

    h = hashlib.sha256()

    def add(name: str, value: Any) -> None:
        _hash_value(h, name, value)

    with h5py.File(path, "r", locking="best-effort") as f:
        for key, value in f.attrs.items():
            if key != "concepts":
                add(f"@{key}", value)

        def walk(prefix: str, group: Any) -> None:  # visititems stops on a non-None return
            for key, value in group.attrs.items():
                add(f"{prefix}@{key}", value)
            for name, obj in group.items():
                if isinstance(obj, h5py.Dataset):
                    add(f"{prefix}/{name}", obj[()])
                else:
                    walk(f"{prefix}/{name}", obj)

        present = set(f["concepts"]) if "concepts" in f else set()
        for cid in sorted(set(concepts) & present):
            walk(f"concepts/{cid}", f[f"concepts/{cid}"])
        for name in f:
            if name != "concepts":  # shared groups (each readout's steps)
                walk(name, f[name])
    return h.hexdigest()


def datasets_digest(path: str | Path, names: Sequence[str]) -> str:
    """sha256 of a file's root attributes and the named root datasets only (a clustering job
    reads a similarity file's ids and sets, not its matrices)."""
    import hashlib

    h = hashlib.sha256()
    with h5py.File(path, "r", locking="best-effort") as f:
        items = [(f"@{k}", v) for k, v in f.attrs.items()]
        items += [(name, f[name][()]) for name in names if name in f]
        for name, value in items:
            _hash_value(h, name, value)
    return h.hexdigest()


def _hash_value(h: Any, name: str, value: Any) -> None:
    """Feed one named attribute or dataset value (type, shape and bytes) into a hash."""
    arr = np.asarray(value)
    h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
    h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())


def audit_tree(tree: str | Path, settings_hash: str) -> dict[str, list[str]]:
    """Check every finished HDF5 file of a results tree before the workflow plans anything.

    Each must open, carry a known format, be complete, come from this tree's settings, and hold
    the concepts it declares. Run when Snakemake parses the workflow, so that a damaged or
    foreign file stops the run with its name before any job starts or any output is deleted.
    Reads headers and group names only (no data). Returns the files checked and, by code
    version, those written by other scalex code than this one (``other_code``).
    """
    root = Path(tree)
    checked: list[str] = []
    other: dict[str, list[str]] = {}
    if not root.is_dir():
        return {"checked": checked, "other_code": []}
    current = code_version()
    for path in sorted(root.rglob("*.h5")):
        if path.name.startswith("."):  # a writer's temporary file
            continue
        if path.relative_to(root).parts[0] == REUSE_DIR:
            continue  # links to earlier shards: each job checks them itself before reusing one
        try:
            with h5py.File(path, "r", locking="best-effort") as f:
                fmt = str(f.attrs.get("format", ""))
        except OSError as err:
            raise StoreError(f"{path}: not a readable HDF5 file ({err}); delete it") from err
        if not fmt.startswith("scalex."):
            raise StoreError(f"{path}: not a scalex file (format {fmt!r}); move it out of the tree")
        with open_checked(path, fmt, settings_hash) as f:
            shard_concepts(f)
            version = str(f.attrs.get("code_version", "unknown"))
        checked.append(str(path))
        if version != current:
            other.setdefault(version, []).append(str(path))
    return {"checked": checked, "other_code": [f"{v}: {len(p)} files" for v, p in other.items()]}


def other_code_note(audit: dict[str, list[str]], tree: str | Path) -> str | None:
    """One line for the terminal when results were written by other scalex code."""
    if not audit["other_code"]:
        return None
    versions = "; ".join(audit["other_code"])
    return (
        f"note: {tree} holds results written by other scalex code ({versions};"
        f" this is {code_version()}). They are kept; `snakemake --forcerun <rule>` redoes a step"
        " whose code changed."
    )


# -- prompt files ----------------------------------------------------------------------------
PROMPTS = "scalex.prompts"


def write_prompts(records: Sequence[dict[str, Any]], seeds: Sequence[int], out: str | Path) -> None:
    """The prompt file of a bucket (or vocabulary chunk): every concept's prompts, template
    indices and set, and the seeds all of them share. Canonical JSON, so equal specs give
    equal bytes."""
    doc = {"format": PROMPTS, "seeds": [int(s) for s in seeds], "concepts": list(records)}
    atomic_text(out, canonical_json(doc) + "\n")


def read_prompts(path: str | Path) -> dict[str, Any]:
    """``{"seeds": [...], "concepts": [record, ...]}`` of a prompt file, checked."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{path}: not a readable prompt file ({err}); delete it") from err
    if not isinstance(doc, dict) or doc.get("format") != PROMPTS:
        raise StoreError(f"{path}: not a scalex prompt file; delete it to have it rebuilt")
    return doc


def check_same_noise(f, base_noise: str | None, baseline: str | Path) -> None:
    """Refuse to pair a shard with a baseline whose seeds drew noise elsewhere (cpu vs cuda):
    the same seed would then be different noise and the pairing would cancel nothing."""
    noise = f.attrs.get("noise_source")
    if noise != base_noise:
        raise StoreError(
            f"{f.filename}: noise drawn on {noise!r} but the baseline {baseline} drew it on "
            f"{base_noise!r}; rerun one of them with the same sampling.noise_device and device"
        )


# -- directions and similarity ---------------------------------------------------------------
DIRECTIONS = "scalex.directions"
SIMILARITY = "scalex.similarity"
DIRECTION_FIELDS = ("per_step", "aggregate", "mean_diff")


def check_finite_data(out: str | Path, name: str, data: Any) -> None:
    """Refuse to write NaN or infinity: data is checked when written, so a later reader never
    meets it (a reader still checks, for files damaged since)."""
    if not np.isfinite(np.asarray(data, dtype=np.float64)).all():
        raise StoreError(f"{out}: refusing to write {name}: it holds NaN or infinite values")


def write_directions(
    out: str | Path, attrs: dict[str, Any], directions: dict[str, dict[str, Any]]
) -> None:
    """A directions file: per concept its set, split-half stability, counts and the
    ``per_step`` (T, D), ``aggregate`` (D,) and ``mean_diff`` (T, D) arrays."""
    for cid, d in directions.items():
        for name in DIRECTION_FIELDS:
            check_finite_data(out, f"concepts/{cid}/{name}", d[name])
    with atomic_h5(out, DIRECTIONS, attrs | {"concepts": list(directions)}) as f:
        for cid, d in directions.items():
            g = f.create_group(f"concepts/{cid}")
            for key in ("set", "split_half", "n_prompts", "n_seeds"):
                g.attrs[key] = d[key]
            for name in DIRECTION_FIELDS:
                g.create_dataset(name, data=d[name])


def write_similarity(
    out: str | Path,
    attrs: dict[str, Any],
    ids: Sequence[str],
    sets: Sequence[str],
    split_half: np.ndarray,
    neighbours: np.ndarray,
    neighbour_cosines: np.ndarray,
    matrices: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """A similarity file: ids, sets, stability, nearest neighbours and, when given, the
    ``aggregate`` (N, N) and ``per_step`` (T, N, N) cosine matrices."""
    check_finite_data(out, "neighbour_cosines", neighbour_cosines)
    for name, matrix in zip(("aggregate", "per_step"), matrices or (), strict=False):
        check_finite_data(out, name, matrix)
    with atomic_h5(out, SIMILARITY, attrs | {"matrices": matrices is not None}) as f:
        write_strings(f, "ids", ids)
        write_strings(f, "sets", sets)
        f.create_dataset("split_half", data=split_half)
        f.create_dataset("neighbours", data=neighbours.astype(np.int32))
        f.create_dataset("neighbour_cosines", data=neighbour_cosines)
        if matrices is not None:
            f.create_dataset("aggregate", data=matrices[0])
            f.create_dataset("per_step", data=matrices[1])


def read_directions(
    files: Sequence[str | Path],
    settings_hash: str,
    concepts: Sequence[str] | None = None,
    fields: Sequence[str] = DIRECTION_FIELDS,
) -> dict[str, Any]:
    """Directions of all concepts in ``files`` (optionally only ``concepts``), sorted by id.

    Returns ids, sets, the arrays named in ``fields`` (``per_step`` (N, T, D), ``aggregate``
    (N, D), ``mean_diff`` (N, T, D); read only when asked, since at 10,000 concepts each
    per-step array is hundreds of MB), ``split_half`` (N,) and the step indices.
    """
    unknown = sorted(set(fields) - set(DIRECTION_FIELDS))
    if unknown:
        raise ValueError(f"unknown direction fields {unknown}")
    wanted = None if concepts is None else set(concepts)
    rows: dict[str, dict[str, Any]] = {}
    steps = None
    for path in files:
        with open_checked(path, DIRECTIONS, settings_hash) as f:
            steps = f.attrs["step_indices"]
            for cid in shard_concepts(f):
                if wanted is not None and cid not in wanted:
                    continue
                g = f[f"concepts/{cid}"]
                split_half = float(g.attrs["split_half"])
                rows[cid] = {
                    "set": str(g.attrs["set"]),
                    "split_half": split_half,
                    **{name: read_dataset(f, f"concepts/{cid}/{name}") for name in fields},
                }
                for name in fields:
                    if not np.isfinite(rows[cid][name]).all():
                        raise StoreError(f"{path}: concepts/{cid}/{name} holds NaN or infinity")
    if wanted is not None:
        missing = sorted(wanted - set(rows))
        if missing:
            raise KeyError(f"no directions for concepts {missing}")
    ids = sorted(rows)
    out: dict[str, Any] = {
        "ids": ids,
        "sets": [rows[c]["set"] for c in ids],
        "split_half": np.array([rows[c]["split_half"] for c in ids]),
        "step_indices": np.asarray(steps),
    }
    for name in fields:
        out[name] = np.stack([rows[c][name] for c in ids]) if ids else np.zeros((0,))
    return out


def read_similarity(
    path: str | Path, settings_hash: str | None = None, matrices: bool = True
) -> dict[str, Any]:
    """ids, sets, split-half stability and neighbours; with ``matrices`` also the aggregate and
    per-step matrices (``None`` when the run did not write them)."""
    with open_checked(path, SIMILARITY, settings_hash) as f:
        out = {
            "ids": read_strings(f["ids"]),
            "sets": read_strings(f["sets"]),
            "split_half": read_dataset(f, "split_half"),
            "step_indices": f.attrs["step_indices"],
            "neighbours": read_dataset(f, "neighbours"),
            "neighbour_cosines": read_dataset(f, "neighbour_cosines"),
            "aggregate": None,
            "per_step": None,
        }
        if matrices and "aggregate" in f:
            out["aggregate"] = read_dataset(f, "aggregate")
            out["per_step"] = read_dataset(f, "per_step")
        return out


# -- tables, vocabularies, images ----------------------------------------------------------
def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """TSV with six significant digits, written atomically."""
    atomic_text(path, frame.to_csv(sep="\t", index=False, float_format="%.6g"))


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A table written by :func:`write_tsv`."""
    import pandas as pd

    return pd.read_csv(path, sep="\t")


def write_json(value: Any, path: str | Path) -> None:
    """A JSON document (sorted keys, indented), written atomically."""
    atomic_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """A document written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_reference_table(path: str | Path) -> pd.DataFrame:
    """A user's reference table, CSV or TSV (the separator is sniffed)."""
    import pandas as pd

    return pd.read_csv(path, sep=None, engine="python")


def write_full_tsv(frame: pd.DataFrame, path: str | Path, digits: int = 6) -> None:
    """A labelled matrix (index and columns) as TSV, rounded, written atomically."""
    atomic_text(path, frame.round(digits).to_csv(sep="\t"))


def write_npz(path: str | Path, **arrays: Any) -> None:
    """Compressed NumPy arrays, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        durable_replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """A uint8 (H, W, 3) image as PNG, written atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        Image.fromarray(image).save(tmp)
        durable_replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def placeholder_figure(path: str | Path, text: str) -> None:
    """A small image that says why a figure is absent (outputs must exist for the report)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def read_vocabulary(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a vocabulary file, in order, duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"analysis.discovery vocabulary file {path} does not exist")
    seen: dict[str, None] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"analysis.discovery vocabulary file {path} is not UTF-8 text (byte {err.start})"
        ) from err
    for line in text.splitlines():
        term = line.strip()
        if term and not term.startswith("#"):
            seen.setdefault(term, None)
    if not seen:
        raise ConfigError(f"analysis.discovery vocabulary file {path} is empty")
    return list(seen)


def read_labelled_images(
    folder: str | Path, labels: str | Path
) -> tuple[list[str], np.ndarray, list]:
    """PNG images of a folder (sorted by name) and their labels from a TSV ``image, label``.

    Labels are 1/0 (or true/false); an image missing from the TSV gets no label (None) and is
    scored but left out of the AUC. A TSV row naming no existing image is an error.
    """
    import pandas as pd
    from PIL import Image

    folder = Path(folder)
    names = sorted(p.name for p in folder.glob("*.png"))
    if not names:
        raise ConfigError(f"analysis.projection: no PNG images in {folder}")
    table = pd.read_csv(labels, sep="\t", dtype=str)
    if list(table.columns[:2]) != ["image", "label"]:
        raise ConfigError(f"{labels}: expected columns image, label")
    unknown = sorted(set(table["image"]) - set(names))
    if unknown:
        raise ConfigError(f"{labels}: images not in {folder}: {unknown[:5]}")
    truth = {"1": True, "true": True, "0": False, "false": False}
    bad = sorted({v for v in table["label"].str.lower() if v not in truth})
    if bad:
        raise ConfigError(f"{labels}: labels must be 1/0 or true/false, not {bad}")
    by_name = dict(zip(table["image"], (truth[v.lower()] for v in table["label"]), strict=True))
    arrays = [
        np.asarray(Image.open(folder / n).convert("RGB"), dtype=np.float32) / 255 for n in names
    ]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ConfigError(f"analysis.projection: images in {folder} differ in size: {shapes}")
    return names, np.stack(arrays), [by_name.get(n) for n in names]
