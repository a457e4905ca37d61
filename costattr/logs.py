"""costattr's own log under COSTATTR_HOME: where the hook writes what it could not print.

Every line is redacted first (URL userinfo, and the keys, tokens and URL passwords the
environment holds: a traceback or a server's answer may quote one). The file is 0600 and never
written through a symlink. A line that could not be written says so (`Logged.note`), so a
one-line message names where it could not write and why instead of pointing at a log that does
not hold the details.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from costattr import fsutil, paths
from costattr.secrets import env_secrets, fingerprint, redact

MAX_LOG_BYTES = 1 << 20
NOTICES_NAME = "notices.json"  # digests of what was said once (see first_time)


@dataclass(frozen=True, slots=True)
class Logged:
    """Where a log line went: `error` says why it could not be written (None: it was)."""

    path: Path
    error: str | None = None

    def __str__(self) -> str:
        return str(self.path)

    @property
    def note(self) -> str:
        """The end of a one-line message: where the details are, or why there are none."""
        if self.error is None:
            return f"details in {self.path}"
        return f"no details logged: could not write {self.path} ({self.error})"


def log_path() -> Path:
    return paths.costattr_home() / "costattr.log"


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _rotate(path: Path) -> None:
    try:
        big = path.lstat().st_size > MAX_LOG_BYTES
    except FileNotFoundError:
        return
    if big and not path.is_symlink():
        old = path.with_suffix(".log.1")
        if old.is_symlink():
            raise fsutil.UnsafeFile(old)  # os.replace would delete it
        os.replace(path, old)


def log(message: str) -> Logged:
    """Append one line (rotated at 1 MiB); never raises: logging must not break a commit."""
    path = log_path()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    line = redact(f"{stamp} pid={os.getpid()} {message}", *env_secrets()) + "\n"
    try:
        _rotate(path)
        fd = fsutil.open_append(path)
        try:
            os.write(fd, line.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)
    except OSError as e:
        return Logged(path, _why(e))
    return Logged(path)


def log_exception(context: str) -> Logged:
    return log(f"{context}:\n{traceback.format_exc()}")


def first_time(key: str) -> bool:
    """True the first time `key` is asked about in this COSTATTR_HOME, then False: for what the
    hook says once (how to trust a repository). Keys are kept as digests. When the record cannot
    be read or written the answer is True: said twice is better than never."""
    path = paths.costattr_home() / NOTICES_NAME
    digest = fingerprint("notice", key)[:32]
    try:
        seen = json.loads(fsutil.read_private(path))
        if not isinstance(seen, list):
            seen = []
    except (OSError, ValueError):
        seen = []
    if digest in seen:
        return False
    try:
        fsutil.atomic_write_bytes(path, json.dumps([*seen, digest][-1000:]).encode())
    except OSError:
        pass
    return True
