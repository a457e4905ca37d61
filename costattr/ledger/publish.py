"""Copying this machine's records to a shared backend, crash-safe and idempotent.

The local store numbers its records in the order they were written (`seq`) and keeps, per
target (a backend instance: its name and where it lives), how far the target has received them.
Publishing sends what lies past the mark and moves the mark only once the backend accepted the
batch. A run killed anywhere, a backend down for a week, a URL changed meanwhile: the records wait
in the store, and the next run sends them; sending one twice is harmless (a union by id).

There is no outbox of copies and no pending list to lose: the records themselves are the outbox.

The hook never publishes over the network itself: for a backend in BACKGROUND_BACKENDS it hands
the records to the background publisher (costattr/ledger/publisher.py) and returns at once.
Backends that live on this machine (git notes: a local ref, pushed only by `costattr sync`) are
written by the hook directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from costattr import logs
from costattr.errors import CostattrError
from costattr.ledger.base import Ledger
from costattr.ledger.store import LocalStore

BACKGROUND_BACKENDS = frozenset({"memory-api"})  # reached over the network: never from a commit


def target_id(ledger: Ledger) -> str:
    """Stable name of one backend instance (describe() never holds a secret)."""
    digest = hashlib.sha256(f"{ledger.name}\0{ledger.describe()}".encode()).hexdigest()[:12]
    return f"{ledger.name}-{digest}"


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


@dataclass(slots=True)
class PublishResult:
    ok: bool
    message: str  # one line
    sent: int = 0  # records the backend accepted
    waiting: int = 0  # records still waiting for it
    warnings: list[str] = field(default_factory=list)


def waiting(store: LocalStore, ledger: Ledger, repo: str | None) -> int:
    records, _top = store.unsent(target_id(ledger), repo if ledger.scope == "repository" else None)
    return len(records)


def publish(store: LocalStore, ledger: Ledger, repo: str | None, *,
            background_from: Path | None = None) -> PublishResult:
    """Send `ledger` the records it has not received (for a per-repository backend: `repo`'s only).

    `background_from`: the hook's work tree. A backend reached over the network then gets the
    records from the background publisher started there, and this returns without waiting
    (ok unless the last background run for this backend failed: its line is the answer).
    Never raises for a backend failure: the records keep waiting, and the answer says why.
    """
    from costattr.ledger.memory_api import RemoteAuthError, RemoteUnavailable

    target = target_id(ledger)
    scope = repo if ledger.scope == "repository" else None
    records, top = store.unsent(target, scope)
    label = ledger.label
    if background_from is not None and ledger.name in BACKGROUND_BACKENDS:
        return _hand_off(store, ledger, len(records), background_from)
    if not records:
        return PublishResult(True, f"{label}: up to date")
    try:
        ledger.add(records)
    except Exception as e:  # noqa: BLE001  # the hook must exit 0 whatever the backend does
        kept = f"{plural(len(records), 'record')} wait in the local ledger"
        if isinstance(e, RemoteAuthError):
            message = f"{label} refused the credentials ({e.reason}); {kept}; fix {e.setting}, then run `costattr sync`"
        elif isinstance(e, RemoteUnavailable):
            message = f"{label} unreachable ({e.reason}); {kept}, `costattr sync` will send them"
        elif isinstance(e, CostattrError):
            message = f"{label} failed ({e.message.splitlines()[0] if e.message else type(e).__name__}); {kept}"
        else:
            logs.log_exception(f"publishing to {ledger.describe()} failed")
            message = f"{label} failed unexpectedly ({type(e).__name__}, see the log); {kept}"
        logs.log(message)
        _register(store, target, ledger, scope)
        return PublishResult(False, message, waiting=len(records))
    store.mark_sent(target, top, _label(ledger), scope)
    return PublishResult(True, f"{label}: published {plural(len(records), 'record')}", sent=len(records))


def _hand_off(store: LocalStore, ledger: Ledger, count: int, workdir: Path) -> PublishResult:
    """The hook's side of background publishing: mark the work tree as waiting (the hook starts
    the publisher once it is done with the ledger: `hookfast.start_publisher`). No network."""
    from costattr import hookfast
    from costattr.ledger.publisher import last_failure

    if not count:
        hookfast.set_waiting(workdir, False)
        return PublishResult(True, f"{ledger.label}: up to date")
    hookfast.set_waiting(workdir, True)
    _register(store, target_id(ledger), ledger, None)
    failed = last_failure(ledger)
    if failed:
        return PublishResult(False, f"last background try: {failed}; trying again in the background", waiting=count)
    return PublishResult(True, f"{ledger.label}: {plural(count, 'record')} publishing in the background",
                         waiting=count)


def _label(ledger: Ledger) -> str:
    return f"{ledger.label}: {ledger.describe()}"


def _register(store: LocalStore, target: str, ledger: Ledger, scope: str | None) -> None:
    """Make a backend that has never received anything known to the store (its mark stays where
    it is, 0 for a new one), so `costattr sync` and `doctor` name the records waiting for it even
    once the configuration points elsewhere. Best effort: the records wait either way.
    A backend known already is not written again: a write changes the ledger file, which makes the
    next hook leave its fast path."""
    try:
        if any(known == target for known, _label_, _waiting in store.targets()):
            return
        store.mark_sent(target, 0, _label(ledger), scope)
    except CostattrError as e:
        logs.log(f"could not note {ledger.label} as waiting: {e.message}")
