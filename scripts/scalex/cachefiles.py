"""Files kept under ``<tree>/reuse/`` for later runs, and the check that they are still what
was kept.

A kept file is a copy-on-write clone of the result where the file system offers one (btrfs, XFS,
APFS-like reflinks), else a hard link to the result's own inode: no second copy on disk either
way. A hard link shares every later in-place write to the result (``df.to_csv(same path)``,
``h5py`` in ``r+`` mode, an editor that keeps links), so each kept file has a stamp beside it
(``.<name>.stamp``: inode, size, modification time and sha256 as kept) and is used only while it
still matches: an edited or replaced file costs a recompute, never a stale result. Snakemake
itself touches a job's outputs after the job, so a kept file whose modification time alone has
moved is hashed again, and stamped anew when its content is still the same.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("scalex")

#: Folder of a results tree that holds what later runs reuse: kept shards (:mod:`scalex.reuse`)
#: and, under :data:`MEMO_DIR`, the job memo (:mod:`scalex.memo`).
REUSE_DIR = "reuse"
MEMO_DIR = "jobs"
#: ioctl number of Linux's FICLONE (share the source's extents: a copy-on-write clone)
FICLONE = 0x40049409


def stamp_path(kept: Path) -> Path:
    """Where the stamp of a kept file lives: a hidden file beside it."""
    return kept.with_name(f".{kept.name}.stamp")


def fingerprint(path: Path | int) -> dict[str, int]:
    """Size, modification time (ns) and inode of a file (a path or an open descriptor)."""
    st = os.fstat(path) if isinstance(path, int) else os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def content_digest(path: Path | int) -> str:
    """sha256 of a file's content (a path, or an open descriptor read without moving it)."""
    h = hashlib.sha256()
    fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while block := os.pread(fd, 1 << 22, offset):
            h.update(block)
            offset += len(block)
    finally:
        if not isinstance(path, int):
            os.close(fd)
    return h.hexdigest()


def clone(src: Path, dest: Path) -> bool:
    """A copy-on-write clone of ``src`` at ``dest``; False (and nothing left) where the file
    system has none."""
    try:
        with open(src, "rb") as s, open(dest, "wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
    except OSError:
        dest.unlink(missing_ok=True)
        return False
    return True


def _place(src: Path, dest: Path) -> None:
    """``dest`` becomes a clone of ``src``, else a hard link to it (atomically replaced)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        if not clone(src, tmp):
            os.link(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _write_stamp(kept: Path, digest: str | None = None) -> None:
    stamp = {**fingerprint(kept), "sha256": digest or content_digest(kept)}
    tmp = stamp_path(kept).with_name(f"{stamp_path(kept).name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(stamp) + "\n")
    os.replace(tmp, stamp_path(kept))


def keep_copy(result: str | Path, kept: str | Path) -> bool:
    """Keep ``result`` at ``kept`` with its stamp; False (nothing kept) where the file system
    refuses both clones and hard links."""
    kept = Path(kept)
    try:
        stamp_path(kept).unlink(missing_ok=True)  # no stamp while the file changes
        _place(Path(result), kept)
        _write_stamp(kept)
    except OSError as err:
        log.warning("not kept for reuse: %s (%s)", result, err)
        return False
    return True


def kept_stamp(kept: str | Path) -> dict[str, int] | None:
    """The stamp recorded when ``kept`` was kept, or None."""
    try:
        return json.loads(stamp_path(Path(kept)).read_text())
    except (OSError, ValueError):
        return None


def is_intact(kept: str | Path, fd: int | None = None) -> bool:
    """Whether ``kept`` (or the open descriptor ``fd`` of it) is exactly the file that was kept:
    same inode and size as its stamp, and the same modification time or, where only that
    moved (Snakemake touches outputs), the same sha256 (the stamp then takes the new time)."""
    recorded = kept_stamp(kept)
    source = Path(kept) if fd is None else fd
    try:
        now = fingerprint(source)
        if recorded is None or any(now[k] != recorded.get(k) for k in ("inode", "size")):
            return False
        if now["mtime_ns"] == recorded.get("mtime_ns"):
            return True
        if content_digest(source) != recorded.get("sha256"):
            return False
        if fingerprint(Path(kept))["inode"] == now["inode"]:
            _write_stamp(Path(kept), recorded["sha256"])
        return True
    except (OSError, KeyError):
        return False


def restore_copy(kept: str | Path, result: str | Path) -> None:
    """Put a kept file back at ``result``, new to Snakemake's eyes (modification time now).

    Raises OSError when it cannot; the stamp follows the shared inode of a hard link.
    """
    kept, result = Path(kept), Path(result)
    result.unlink(missing_ok=True)
    _place(kept, result)
    os.utime(result)
    if os.stat(result).st_ino == os.stat(kept).st_ino:
        _write_stamp(kept, (kept_stamp(kept) or {}).get("sha256"))


def forget(kept: str | Path) -> int:
    """Delete a kept file and its stamp; the bytes freed (0 where its inode lives on)."""
    kept = Path(kept)
    freed = 0
    try:
        st = kept.stat()
        freed = st.st_size if st.st_nlink == 1 else 0
        kept.unlink()
    except OSError:
        pass
    stamp_path(kept).unlink(missing_ok=True)
    return freed
