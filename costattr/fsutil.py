"""Safe files: durable writes shared by the state files, the price table and damaged-file
handling, and the rules every file costattr keeps for itself follows.

Everything under COSTATTR_HOME is the user's alone: folders 0700, files 0600 (the ledger knows
which repositories the user works on and what they cost; the log may quote a server's answer).
Symlinks are never followed for state, lock or log files (O_NOFOLLOW): one found where such a
file belongs is refused with an `UnsafeFile` naming it, and left where it is (not followed, not
deleted: it may be the user's own doing, and removing it would hide the problem).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from costattr import paths
from costattr.errors import CostattrError

if TYPE_CHECKING:
    from filelock import FileLock

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class UnsafeFile(CostattrError, OSError):
    """A symlink (or something else than a file) where costattr keeps one of its own files.

    Also an OSError, so code that copes with a file it cannot open (the scan cache, the log)
    copes with this one the same way.
    """

    def __init__(self, path: Path, what: str = "a symlink") -> None:
        message = (f"{path} is {what}: costattr does not use it (it never follows a symlink for its own files) "
                   "and left it as it is")
        CostattrError.__init__(self, message, hint=f"remove {path} (or point COSTATTR_HOME elsewhere)")
        self.errno = errno.ELOOP
        self.strerror = f"{what}, not followed"
        self.filename = str(path)


def _refuse_link(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFile(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(path, "not a regular file")


def private_dir(path: Path) -> Path:
    """Create `path` (and its missing parents) 0700; under COSTATTR_HOME also tighten an
    existing folder (costattr 0.1 made them 0755). The folder itself may be a symlink (a home
    moved to another disk is the user's choice); the files in it may not."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if paths.is_state_path(path):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, mode & ~0o077)
        except OSError:
            pass  # not ours to change (another owner): the files in it stay 0600 all the same
    return path


def _tighten(fd: int) -> None:
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o077:
        os.fchmod(fd, mode & ~0o077)


def _open_own(path: Path, flags: int) -> int:
    """A descriptor on one of costattr's own files (created 0600), never through a symlink."""
    private_dir(path.parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | NOFOLLOW | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):  # Linux, macOS: ELOOP; FreeBSD: EMLINK
            raise UnsafeFile(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFile(path, "not a regular file")
        _tighten(fd)  # one created by an older costattr
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: Path, companions: tuple[str, ...] = ()) -> None:
    """Make `path` a regular file only its owner can use, created empty if missing. Call it
    before handing the path to code that creates files with the default mode (SQLite: its -wal
    and -shm files copy the database's mode). `companions` (suffixes) may not be symlinks either.

    Raises UnsafeFile for a symlink at `path` or a companion; OSError when it cannot be written.
    """
    for suffix in companions:
        _refuse_link(path.with_name(path.name + suffix))
    os.close(_open_own(path, os.O_WRONLY))


def open_append(path: Path) -> int:
    """A descriptor appending to `path` (created 0600), never through a symlink."""
    return _open_own(path, os.O_WRONLY | os.O_APPEND)


def read_private(path: Path) -> bytes:
    """The bytes of one of costattr's own files, never read through a symlink."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def lock(path: Path, timeout: float) -> FileLock:
    """A lock file for costattr's own use: 0600, in a private folder, never through a symlink
    (filelock refuses one with ELOOP; this names it). Acquire it with `with lock(...):`."""
    from filelock import FileLock

    private_dir(path.parent)
    os.close(_open_own(path, os.O_RDWR))  # 0600 (an older one tightened); a symlink refused by name
    return FileLock(str(path), timeout=timeout, mode=PRIVATE_FILE)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old file or the new one, never a torn one.

    temp file in the same directory + fsync + rename + fsync of the directory: a crash at any
    point leaves either version intact. Under COSTATTR_HOME a symlink at `path` is refused
    (UnsafeFile), not replaced.
    """
    if paths.is_state_path(path):
        private_dir(path.parent)  # the temp file is 0600 (mkstemp), and os.replace keeps its mode
        _refuse_link(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: the hook's fast path imports this module for read_private only

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
