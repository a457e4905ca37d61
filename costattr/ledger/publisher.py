"""The background publisher: sends a work tree's waiting records to its shared backend over the
network (the memory API), so that no `git commit` ever waits on a server.

The hook records into the local ledger, marks the work tree as waiting and starts this process
detached (costattr/hookfast.py: `start_publisher`), handing it the locked `publisher.lock`; it
runs as `costattr publish-background` in the work tree, output to costattr's log.

One run has one overall deadline, the backend's timeout (`[ledger] api_timeout`,
COSTATTR_API_TIMEOUT): every request of the run, every retry and every new batch ends by it,
whatever a server drips or withholds (see memory_api). Past it (plus a grace period) faulthandler
ends the process outright, whatever it is stuck in. The local ledger's marks move only for what
the backend accepted, so a run killed anywhere loses nothing: the next one sends it again.

The run sends what waits, then looks again (a hook may have recorded meanwhile without starting
a publisher, since this one held the lock) and sends that too while time is left. Once nothing
waits it clears the work tree's mark, lets the lock go, and looks one last time: a hook that
recorded after the last look but before the lock was free started nothing, so this run takes the
lock back and goes on. `publisher.json` in COSTATTR_HOME says how the last run ended (the hook
shows a failure from it; tests and doctor read it).
"""

from __future__ import annotations

import faulthandler
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from costattr import hookfast, logs, paths
from costattr.errors import CostattrError
from costattr.ledger.base import Ledger
from costattr.ledger.publish import PublishResult, publish, target_id, waiting
from costattr.ledger.store import LocalStore

STATUS_NAME = "publisher.json"
WATCHDOG_GRACE_S = 30.0  # beyond the run's deadline: only a bug or a dead disk gets this far


@dataclass(slots=True)
class Status:
    """How the last run went (or how the current one is going)."""

    pid: int
    state: str  # "running" | "done"
    target: str | None = None  # publish.target_id of the backend
    started_at: float = 0.0
    finished_at: float | None = None
    ok: bool | None = None
    message: str = ""
    sent: int = 0
    waiting: int = 0


def status_path() -> Path:
    return paths.costattr_home() / STATUS_NAME


def last_status() -> Status | None:
    try:
        from costattr.fsutil import read_private

        raw = orjson.loads(read_private(status_path()))
        return Status(**{f.name: raw[f.name] for f in fields(Status) if f.name in raw})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _save(status: Status) -> None:
    from costattr.fsutil import atomic_write_bytes

    try:
        atomic_write_bytes(status_path(), orjson.dumps(asdict(status)))
    except OSError as e:
        logs.log(f"background publisher: status not saved ({e.strerror or e})")


def last_failure(ledger: Ledger) -> str | None:
    """The one line of the last run's failure for this backend, if its last run failed."""
    status = last_status()
    if status is None or status.state != "done" or status.ok or status.target != target_id(ledger):
        return None
    return status.message or None


# ----------------------------------------------------------------------------------------------
# The run


def run(workdir: Path, lock_fd: int | None = None) -> int:
    """Publish `workdir`'s waiting records in the background; returns how many were sent.

    `lock_fd`: the publisher lock, taken by the hook that started this process. Without one the
    lock is taken here, and when another publisher holds it this run does nothing (that one
    picks up what was added)."""
    fd = lock_fd if lock_fd is not None else hookfast.try_lock()
    if fd is None:
        return 0
    try:
        opened = _open(workdir)
    except BaseException:
        os.close(fd)
        raise
    if opened is None:
        os.close(fd)
        return 0
    store, ledger = opened
    # The deadline of the whole run: the backend's own timeout, once.
    ledger.deadline = time.monotonic() + ledger.timeout  # type: ignore[attr-defined]
    faulthandler.dump_traceback_later(ledger.timeout + WATCHDOG_GRACE_S, exit=True)  # type: ignore[attr-defined]
    sent = 0
    status = Status(os.getpid(), "running", target_id(ledger), time.time())
    try:
        while fd is not None:
            _save(status)
            result, batch, left = _send_all(store, ledger)
            sent += batch
            if result.ok and left == 0:
                hookfast.set_waiting(workdir, False)
            status = Status(os.getpid(), "done", status.target, status.started_at, time.time(), result.ok,
                            result.message, sent, left)
            _save(status)
            os.close(fd)
            fd = None
            # A hook that recorded after our last look found the lock taken and started nothing:
            # look once more now that it is free, and go on if something waits.
            if result.ok and _time_left(ledger) and waiting(store, ledger, None):
                hookfast.set_waiting(workdir, True)
                fd = hookfast.try_lock()
                status.state = "running"
    finally:
        if fd is not None:
            os.close(fd)
        faulthandler.cancel_dump_traceback_later()
        store.close()
    logs.log(f"background publisher: {status.message} ({status.waiting} waiting)")
    return sent


def _open(workdir: Path) -> tuple[LocalStore, Ledger] | None:
    """The local ledger and the work tree's network backend; None when it has none (any more)."""
    from costattr.config import load_config
    from costattr.ledger.publish import BACKGROUND_BACKENDS
    from costattr.ledger.select import backend_name, open_backend, shared_settings
    from costattr.record import local_store

    try:
        cfg = load_config(workdir)
        name = backend_name(cfg.ledger.backend)
        if name not in BACKGROUND_BACKENDS:
            hookfast.set_waiting(workdir, False)
            return None
        ledger = open_backend(name, workdir, shared_settings(cfg))
    except CostattrError as e:
        # The configuration changed since the hook opened it: the next hook says what is wrong.
        logs.log(f"background publisher: the shared ledger is unusable ({e.message})")
        return None
    return local_store(cfg, workdir), ledger


def _time_left(ledger: Any) -> bool:
    return bool(ledger.deadline is None or time.monotonic() < ledger.deadline)


def _send_all(store: LocalStore, ledger: Ledger) -> tuple[PublishResult, int, int]:
    """Publish until nothing waits, a send fails, or the run's deadline passes: the last answer,
    how many records were sent, how many still wait."""
    sent = 0
    while True:
        result = publish(store, ledger, None)
        sent += result.sent
        if not result.ok:
            return result, sent, result.waiting
        left = waiting(store, ledger, None)
        if not left or not _time_left(ledger):
            return result, sent, left
