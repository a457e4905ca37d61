"""Ledger v2 records for tests that need a ledger without running the hook.

`spend(...)` builds one valid SpendRecord (ids computed the way the hook computes them); `link` and
`rewrite` build the other kinds; `store_with(records)` writes them into the isolated local store
(COSTATTR_HOME), exactly as the hook's transaction would.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

from costattr.ledger.records import (
    AnyRecord,
    LinkRecord,
    Part,
    RewriteRecord,
    SpendRecord,
    bucket_of,
    canonical_ts,
    keys_digest,
    link_id,
    rewrite_id,
    spend_id,
)
from costattr.ledger.store import LocalStore
from costattr.models import Tokens

_n = itertools.count(1)


def part(ts: str = "2026-11-20T10:00:00.000Z", model: str = "claude-sonnet-4-5-20250929", *, cost: str | Decimal = "0.01",
         requests: int = 1, unpriced: int = 0, authoritative: str | Decimal = "0", input: int = 10, output: int = 100,
         cache_write_5m: int = 1000, cache_write_1h: int = 0, cache_read: int = 5000, reasoning: int = 0) -> Part:
    return Part(bucket_of(ts), model, requests, unpriced,
                Tokens(input, output, cache_write_5m, cache_write_1h, cache_read, reasoning),
                Decimal(cost), Decimal(authoritative))


def spend(session: str = "sess-1", *, repo: str = "acme/app", state: str = "closed", branch: str | None = "main",
          commit: str | None = None, issue: str | None = None, related: Sequence[str] = (),
          message: str | None = None, note: str | None = None, first_ts: str = "2026-11-20T10:00:00.000Z",
          last_ts: str | None = None, parts: Sequence[Part] | None = None, tool: str = "claude",
          host: str | None = "laptop", author: str | None = "Dev", cwd: str | None = "/src/app",
          closes: Sequence[str] = (), prices: str | None = "2026-11-24", keys: Sequence[str] | None = None) -> SpendRecord:
    """One spend record; `commit` defaults to a fresh fake SHA for closed records."""
    if state == "closed" and commit is None:
        commit = f"{next(_n):040x}"
    parts = tuple(parts) if parts is not None else (part(first_ts),)
    last = last_ts or first_ts
    covers = keys_digest(keys if keys is not None else [f"k{next(_n)}"])
    return SpendRecord(
        id=spend_id(repo, session, state, branch, commit, note, covers), session_id=session, tool=tool, repo=repo,
        state=state, branch=branch, commit=commit, issue=issue, related=tuple(related),  # type: ignore[arg-type]
        message=message, note=note, first_ts=canonical_ts(first_ts), last_ts=canonical_ts(last), parts=parts,
        closes=tuple(closes), host=host, author=author, cwd=cwd, recorded_at="2026-11-20T12:00:00.000Z", prices=prices,
    )


def link(session: str, branch: str, pr: int, *, repo: str = "acme/app", source: str = "upload") -> LinkRecord:
    return LinkRecord(link_id(repo, session, branch, pr), session, repo, branch, pr, source)


def rewrite(session: str, old: str, new: str, *, repo: str = "acme/app", branch: str | None = "main",
            message: str | None = None, issue: str | None = None, related: Sequence[str] = ()) -> RewriteRecord:
    """`branch` must be the branch of the records on `old` that should follow."""
    return RewriteRecord(rewrite_id(repo, session, branch, old, new), session, repo, branch, old, new, message, issue,
                         tuple(related))


def store_with(records: Iterable[AnyRecord], path: Path | None = None) -> LocalStore:
    """The local store (COSTATTR_HOME's unless `path`) with `records` added."""
    store = LocalStore(path)
    with store.write() as tx:
        tx.insert(list(records))
    return store


def cli(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """`costattr ARGS` in a real process, as a user (or a hook) runs it; `ok`: it must exit 0."""
    proc = subprocess.run([sys.executable, "-m", "costattr", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc
