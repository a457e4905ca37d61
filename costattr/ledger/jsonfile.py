"""The default backend: one JSON file in the memory API's own shape,
`{"path": "agent-costs", "schema_version": 1, "data": {session_id: entry}}`.

Writes are atomic (temp + fsync + rename) under a file lock; a file that cannot be read is moved
aside and reported, never overwritten.

The lock is a kernel lock (flock) on `ledger.json.lock`: a process that dies, even by SIGKILL,
releases it, so a stale lock file never blocks. A live holder is waited for at most
COSTATTR_LOCK_TIMEOUT seconds (default 10), then the caller gets a CostattrError (the hook logs it
and exits 0; its spend is recorded by the next upload, since nothing moved).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout
from pydantic import ValidationError

from costattr import paths
from costattr.errors import CostattrError, LedgerCorrupt
from costattr.fsutil import atomic_write_bytes, move_aside, remove_stale_temps
from costattr.ledger.base import LEDGER_PATH_NAME, merge_entries
from costattr.models import SCHEMA_VERSION, LedgerEntry

LOCK_TIMEOUT_S = 10.0
ENV_LOCK_TIMEOUT = "COSTATTR_LOCK_TIMEOUT"


def lock_timeout() -> float:
    """Seconds to wait for the ledger lock: COSTATTR_LOCK_TIMEOUT when it is a positive number."""
    raw = os.environ.get(ENV_LOCK_TIMEOUT, "").strip()
    try:
        value = float(raw) if raw else LOCK_TIMEOUT_S
    except ValueError:
        return LOCK_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else LOCK_TIMEOUT_S


def default_path() -> Path:
    return paths.costattr_home() / "ledger.json"


def encode_ledger(entries: dict[str, LedgerEntry]) -> bytes:
    data = {sid: entries[sid].model_dump(mode="json") for sid in sorted(entries)}
    return orjson.dumps(
        {"path": LEDGER_PATH_NAME, "schema_version": SCHEMA_VERSION, "data": data},
        option=orjson.OPT_INDENT_2,
    )


def decode_ledger(raw: bytes) -> dict[str, LedgerEntry]:
    """Entries from a ledger document; raises ValueError when it is not one."""
    doc: Any = orjson.loads(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise ValueError("not a ledger document (no 'data' object)")
    out: dict[str, LedgerEntry] = {}
    for sid, raw_entry in doc["data"].items():
        try:
            entry = LedgerEntry.model_validate(raw_entry)
        except ValidationError as e:
            raise ValueError(f"entry {sid!r} is invalid: {e.errors()[0]['msg']}") from e
        out[entry.session_id] = entry
    return out


class JsonLedger:
    name = "json"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self.lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout())

    def describe(self) -> str:
        return str(self.path)

    def _load(self, *, locked: bool) -> dict[str, LedgerEntry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return decode_ledger(raw)
        except ValueError as e:
            error = e
        if not locked:
            # Judge and move the file only under the lock: a reader must never move aside a good
            # ledger a writer put in place after it read a damaged one.
            with self._locked():
                return self._load(locked=True)
        try:
            kept = move_aside(self.path)
        except FileNotFoundError:
            return {}
        reason = " ".join(str(error).split())[:300]
        corrupt = LedgerCorrupt(
            f"the ledger {self.path} could not be read ({reason}); it was moved to {kept}",
            hint=f"inspect or repair {kept} and move it back, or run `costattr upload` to rebuild "
            "this machine's entries from the transcripts",
        )
        corrupt.kept = kept  # type: ignore[attr-defined]
        corrupt.path = self.path  # type: ignore[attr-defined]
        raise corrupt from error

    def read(self) -> dict[str, LedgerEntry]:
        return self._load(locked=False)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger lock (for state that must change together with the ledger)."""
        with self._locked():
            yield

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout as e:
            raise CostattrError(
                f"the ledger {self.path} is locked by another costattr process (waited {self.lock.timeout:g}s)",
                hint="a stuck hook holds it; the spend is recorded by the next upload, nothing is lost "
                f"(a lock left by a dead process never blocks; {ENV_LOCK_TIMEOUT} sets the wait)",
            ) from e
        try:
            yield
        finally:
            self.lock.release()

    @contextmanager
    def transaction(self) -> Iterator[dict[str, LedgerEntry]]:
        """Read-modify-write under the lock; the dict the caller changes is written on success.

        The new file is durable (fsync + rename + directory fsync) before the caller's `with` ends:
        the watermarks it holds (closed segments' until_ts) never run ahead of what is on disk.
        """
        with self._locked():
            remove_stale_temps(self.path)  # left by writers killed mid-write; we hold their lock
            entries = self._load(locked=True)
            yield entries
            atomic_write_bytes(self.path, encode_ledger(entries))

    def upsert(self, entries: Iterable[LedgerEntry]) -> None:
        with self.transaction() as current:
            merged = merge_entries(current, entries)
            current.clear()
            current.update(merged)
