"""costattr's own log under COSTATTR_HOME: where the hook writes what it could not print."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from costattr import paths

MAX_LOG_BYTES = 1 << 20


def log_path() -> Path:
    return paths.costattr_home() / "costattr.log"


def log(message: str) -> Path:
    """Append one line (rotated at 1 MiB); never raises: logging must not break a commit."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            os.replace(path, path.with_suffix(".log.1"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with path.open("a", encoding="utf-8") as f:
            f.write(f"{stamp} pid={os.getpid()} {message}\n")
    except OSError:
        pass
    return path


def log_exception(context: str) -> Path:
    return log(f"{context}:\n{traceback.format_exc()}")
