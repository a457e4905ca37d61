"""Durable file writes shared by the state files, the price table and damaged-file handling."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old file or the new one, never a torn one.

    temp file in the same directory + fsync + rename + fsync of the directory: a crash at any
    point leaves either version intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def move_aside(path: Path) -> Path:
    """Keep a damaged file for inspection under a new name; never overwrite or delete it.

    The new name is reserved with O_EXCL before the rename, so two processes moving files aside
    at the same second never replace each other's copy. SQLite companions (`-wal`, `-shm`,
    `-journal`) go along with their database: the copy stays whole, and a fresh database never
    inherits a stale journal. Raises FileNotFoundError when `path` is gone (someone else moved it).
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    n = 0
    while True:
        target = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        break
    try:
        os.replace(path, target)
    except BaseException:
        try:
            os.unlink(target)  # our own empty placeholder
        except OSError:
            pass
        raise
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            try:
                os.replace(companion, target.with_name(target.name + suffix))
            except OSError:
                pass
    return target


def remove_stale_temps(path: Path) -> int:
    """Delete the temp files `atomic_write_bytes(path, ...)` left when its process was killed.

    Only safe while holding the lock every writer of `path` holds: then no temp file of `path` can
    belong to a live writer. A temp file is never the only copy of anything: until the rename the
    previous version of `path` is intact.
    """
    removed = 0
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return 0
    for tmp in candidates:
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
