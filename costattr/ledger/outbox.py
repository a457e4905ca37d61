"""Entries waiting for a shared ledger that could not take them yet.

    $COSTATTR_HOME/outbox/<backend>-<hash of its description>/<session>.json

One file per (backend, session), written atomically; a newer entry replaces an older one for the
same session (`newer_entry`), so the outbox never holds more than one copy of a session and
re-sending is idempotent. Files are removed only after the backend accepted them, and only if
nobody replaced them meanwhile. A file that cannot be read is moved aside, never deleted.

`publish` is what the post-commit hook calls: it never raises for a remote failure, it answers
with one line to show or log.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout
from pydantic import ValidationError

from costattr import logs, paths
from costattr.errors import CostattrError
from costattr.fsutil import atomic_write_bytes, move_aside
from costattr.ledger.base import Ledger, merge_entries
from costattr.ledger.memory_api import RemoteAuthError, RemoteUnavailable
from costattr.models import LedgerEntry, newer_entry

LOCK_TIMEOUT_S = 1.0  # the hook must not wait on a stuck peer; without the lock we still write atomically
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

Warn = Callable[[str], None]


def outbox_root() -> Path:
    return paths.costattr_home() / "outbox"


def target_id(ledger: Ledger) -> str:
    """Stable directory name for one backend instance (describe() never holds a secret)."""
    digest = hashlib.sha256(f"{ledger.name}\0{ledger.describe()}".encode()).hexdigest()[:12]
    return f"{ledger.name}-{digest}"


def target_dir(ledger: Ledger) -> Path:
    return outbox_root() / target_id(ledger)


def _file_name(session_id: str) -> str:
    if _SAFE_NAME.match(session_id):
        return f"{session_id}.json"
    # Odd ids ("/", "..", very long) get a sanitised prefix plus a hash: unique and harmless as a name.
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", session_id)[:60].lstrip(".") or "session"
    return f"{readable}-{hashlib.sha256(session_id.encode()).hexdigest()[:16]}.json"


def _label(ledger: Ledger) -> str:
    return str(getattr(ledger, "label", ledger.name))


def _plural(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


@contextmanager
def _locked() -> Iterator[bool]:
    """The outbox lock, briefly; yields False when a stuck peer holds it (callers degrade)."""
    root = outbox_root()
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _default_warn(message: str) -> None:
    logs.log(message)


# ----------------------------------------------------------------------------------------------
# Files


@dataclass(slots=True)
class _Item:
    path: Path
    raw: bytes  # exactly what we read: removal checks nobody replaced it meanwhile
    entry: LedgerEntry


def _decode(raw: bytes) -> LedgerEntry:
    doc: Any = orjson.loads(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("entry"), dict):
        raise ValueError("no 'entry' object")  # noqa: TRY004  # callers treat any ValueError as corrupt
    return LedgerEntry.model_validate(doc["entry"])


def _encode(entry: LedgerEntry, ledger: Ledger) -> bytes:
    return orjson.dumps(
        {
            "backend": ledger.name,
            "target": ledger.describe(),
            "stored_at": time.time(),
            "entry": entry.model_dump(mode="json"),
        }
    )


def _read_items(directory: Path, warn: Warn) -> list[_Item]:
    items: list[_Item] = []
    if not directory.is_dir():
        return items
    for path in sorted(directory.glob("*.json")):
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # delivered by a concurrent run
            continue
        try:
            entry = _decode(raw)
        except (ValueError, ValidationError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            try:
                kept = move_aside(path)
            except OSError:
                continue
            warn(f"outbox file {path} is unreadable ({reason}); kept as {kept}")
            continue
        items.append(_Item(path, raw, entry))
    return items


def pending(ledger: Ledger, *, warn: Warn | None = None) -> list[LedgerEntry]:
    """The entries waiting for `ledger`."""
    return [item.entry for item in _read_items(target_dir(ledger), warn or _default_warn)]


def store(entries: Iterable[LedgerEntry], ledger: Ledger, *, warn: Warn | None = None) -> int:
    """Keep entries for `ledger` (newer replaces older per session); returns how many now wait."""
    directory = target_dir(ledger)
    batch = list(entries)
    # Without the lock (a stuck peer) we still write: atomic writes keep every file whole.
    with _locked():
        directory.mkdir(parents=True, exist_ok=True)
        for entry in batch:
            path = directory / _file_name(entry.session_id)
            try:
                old = _decode(path.read_bytes())
            except FileNotFoundError:
                old = None
            except (ValueError, ValidationError):
                kept = move_aside(path)
                (warn or _default_warn)(f"outbox file {path} was unreadable; kept as {kept}")
                old = None
            if old is not None and newer_entry(entry, old) is old:
                continue  # the outbox already holds a strictly newer copy of this session (ties: the new one)
            atomic_write_bytes(path, _encode(entry, ledger))
    return sum(1 for _ in directory.glob("*.json"))


def _remove_delivered(items: Iterable[_Item]) -> None:
    """Drop the files we sent, unless a concurrent run replaced them with a newer entry."""
    with _locked() as locked:
        if not locked:
            return  # they stay and are sent again next time: the merge rule makes that harmless
        for item in items:
            try:
                if item.path.read_bytes() == item.raw:
                    item.path.unlink()
            except FileNotFoundError:
                pass


def count(ledger: Ledger) -> int:
    directory = target_dir(ledger)
    return sum(1 for _ in directory.glob("*.json")) if directory.is_dir() else 0


# ----------------------------------------------------------------------------------------------
# Delivery


def deliver(ledger: Ledger, *, warn: Warn | None = None) -> tuple[int, int]:
    """Send everything waiting for `ledger` in one upsert: (sent, still waiting).

    Raises the backend's error (RemoteError, ...) when the upsert fails; nothing is removed then.
    """
    directory = target_dir(ledger)
    items = _read_items(directory, warn or _default_warn)
    if items:
        ledger.upsert(item.entry for item in items)
        _remove_delivered(items)
    return len(items), count(ledger)


@dataclass(slots=True)
class PublishResult:
    ok: bool
    message: str  # one line
    sent: int = 0  # entries the backend accepted (outbox included)
    from_outbox: int = 0
    queued: int = 0  # entries waiting in the outbox afterwards
    warnings: list[str] = field(default_factory=list)


def publish_result(entries: Iterable[LedgerEntry], ledger: Ledger) -> PublishResult:
    """Outbox first, then the new entries, as one upsert; on failure keep them all in the outbox."""
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        logs.log(message)

    new = list(entries)
    items = _read_items(target_dir(ledger), warn)
    # One merged batch: a session both waiting and re-uploaded goes out once, newest copy.
    batch = merge_entries({i.entry.session_id: i.entry for i in items}, new)
    label = _label(ledger)
    try:
        if batch:
            ledger.upsert(batch.values())
    except Exception as e:  # noqa: BLE001  # the hook must exit 0 whatever the backend does
        queued = store(new, ledger, warn=warn)
        message = _failure_message(e, label, queued)
        if not isinstance(e, CostattrError):
            logs.log_exception(f"publishing to {ledger.describe()} failed")
        logs.log(message)
        return PublishResult(False, message, queued=queued, warnings=warnings)
    _remove_delivered(items)
    queued = count(ledger)
    message = f"{label}: published {_plural(len(new))}"
    if items:
        message += f" (+{_plural(len(items))} from the outbox)"
    if queued:
        message += f"; {_plural(queued)} still waiting in the outbox"
    return PublishResult(True, message, sent=len(batch), from_outbox=len(items), queued=queued, warnings=warnings)


def publish(entries: Iterable[LedgerEntry], ledger: Ledger) -> str:
    """publish_result's one-line message; never raises for a backend failure."""
    return publish_result(entries, ledger).message


def _failure_message(error: BaseException, label: str, queued: int) -> str:
    kept = f"{_plural(queued)} kept in the outbox"
    if isinstance(error, RemoteAuthError):
        return f"{label} refused the credentials ({error.reason}); {kept}; fix {error.setting}, then run `costattr sync`"
    if isinstance(error, RemoteUnavailable):
        return f"{label} unreachable ({error.reason}); {kept}, `costattr sync` will send them"
    if isinstance(error, CostattrError):
        return f"{label} failed ({_short(error)}); {kept}, `costattr sync` will send them"
    return f"{label} failed unexpectedly ({type(error).__name__}, see the log); {kept}"


def _short(error: CostattrError) -> str:
    return error.message.splitlines()[0] if error.message else type(error).__name__


# ----------------------------------------------------------------------------------------------
# Overview (doctor, sync)


@dataclass(slots=True)
class OutboxTarget:
    directory: Path
    backend: str
    target: str
    count: int


def summary() -> list[OutboxTarget]:
    """Every non-empty outbox directory, whatever backend it waits for."""
    root = outbox_root()
    out: list[OutboxTarget] = []
    if not root.is_dir():
        return out
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(directory.glob("*.json"))
        if not files:
            continue
        backend, target = directory.name.rsplit("-", 1)[0], "?"
        try:
            doc = orjson.loads(files[0].read_bytes())
            backend, target = str(doc.get("backend", backend)), str(doc.get("target", target))
        except (OSError, ValueError, AttributeError):
            pass
        out.append(OutboxTarget(directory, backend, target, len(files)))
    return out
