"""The default backend: one JSON file in the memory API's own shape,
`{"path": "agent-costs", "schema_version": 1, "data": {session_id: entry}}`.

Writes are atomic (temp + fsync + rename) under a file lock; a file that cannot be read is moved
aside and reported, never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout
from pydantic import ValidationError

from costattr import paths
from costattr.errors import CostattrError, LedgerCorrupt
from costattr.fsutil import atomic_write_bytes, move_aside
from costattr.ledger.base import LEDGER_PATH_NAME, merge_entries
from costattr.models import SCHEMA_VERSION, LedgerEntry

LOCK_TIMEOUT_S = 10.0


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
        self.lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)

    def describe(self) -> str:
        return str(self.path)

    def _load(self) -> dict[str, LedgerEntry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return decode_ledger(raw)
        except ValueError as e:
            kept = move_aside(self.path)
            raise LedgerCorrupt(
                f"the ledger {self.path} could not be read ({e}); it was moved to {kept}",
                hint=f"inspect or repair {kept} and move it back, or run `costattr upload` to rebuild "
                "this machine's entries from the transcripts",
            ) from e

    def read(self) -> dict[str, LedgerEntry]:
        return self._load()

    @contextmanager
    def transaction(self) -> Iterator[dict[str, LedgerEntry]]:
        """Read-modify-write under the lock; the dict the caller changes is written on success."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.lock:
                entries = self._load()
                yield entries
                atomic_write_bytes(self.path, encode_ledger(entries))
        except Timeout as e:
            raise CostattrError(
                f"the ledger {self.path} is locked by another costattr process",
                hint=f"wait for it to finish; if none is running, delete {self.lock.lock_file}",
            ) from e

    def upsert(self, entries: Iterable[LedgerEntry]) -> None:
        with self.transaction() as current:
            merged = merge_entries(current, entries)
            current.clear()
            current.update(merged)
