"""The ledger-backend protocol: where records are stored and read back.

Every backend stores records and merges by the same rule, a union of records by id
(`records.union`): adding a record twice, from two machines or in any order, changes nothing.
A backend's `scope` says which records belong in it: "machine" (the memory API file holds every
repository's), or "repository" (git notes hold only the records of the repository they live in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from costattr.ledger.records import AnyRecord
from costattr.ledger.store import ReadResult

LEDGER_PATH_NAME = "agent-costs"  # the memory API's file name, kept in every backend's shape

Scope = Literal["machine", "repository"]


class Ledger(Protocol):
    name: str  # the backend's name in config: "json", "memory-api", "git-notes"
    label: str  # for people: "local ledger", "memory API", "git notes"
    scope: Scope

    def read(self) -> ReadResult:
        """Every record (and the count of those that fail validation, set aside)."""
        ...

    def add(self, records: Sequence[AnyRecord]) -> None:
        """Merge records in: a union by id."""
        ...

    def describe(self) -> str:
        """Where it lives, for doctor and messages (never includes a secret)."""
        ...


@runtime_checkable
class SyncableLedger(Ledger, Protocol):
    """A backend with a remote of its own to exchange with (git notes and `git push`)."""

    def sync(self, remote: str = "origin", *, progress: object = None) -> list[str]:
        ...
