"""The ledger-backend protocol: where session entries are stored and read back.

Every backend stores one entry per session and merges by the same rule (`newer_entry`), so
re-uploading a session overwrites it and two writers never double count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from costattr.models import LedgerEntry, newer_entry

LEDGER_PATH_NAME = "agent-costs"  # the memory API's file name, kept in every backend's shape


class Ledger(Protocol):
    name: str

    def read(self) -> dict[str, LedgerEntry]:
        """Every entry, by session_id."""
        ...

    def upsert(self, entries: Iterable[LedgerEntry]) -> None:
        """Merge entries in: per session the newer entry wins."""
        ...

    def describe(self) -> str:
        """Where it lives, for doctor and messages (never includes a secret)."""
        ...


def merge_entries(current: dict[str, LedgerEntry], incoming: Iterable[LedgerEntry]) -> dict[str, LedgerEntry]:
    merged = dict(current)
    for entry in incoming:
        old = merged.get(entry.session_id)
        merged[entry.session_id] = entry if old is None else newer_entry(entry, old)
    return merged
