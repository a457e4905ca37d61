"""`costattr sync`: deliver everything pending to the shared backend, then check that it holds it.

Three steps, each safe to repeat (records merge by union: sending one twice changes nothing):
1. publish the records past the backend's delivery mark (`ledger.publish`): what a hook killed
   mid-publish, a backend that was down or a refused key left waiting;
2. for git notes, exchange with the remote: fetch, merge (cat_sort_uniq), push;
3. re-check against the remote: read what it holds, re-send what it lacks of the backend's scope
   (the memory API: every record of this machine; git notes: this repository's), read again.
A mark says what was sent, not what the remote still holds (a server reset, notes deleted on
origin, a publish whose answer was lost): only the re-check can say "delivered". So the exit code
is 0 only when the remote was read and holds every local record of its scope; otherwise 1, with
how many are missing and why.

Records waiting for a backend that is not the one configured (an old URL, another repository's
notes) are listed with what delivers them; `--forget-target` drops such a target, on the user's say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from costattr.errors import CostattrError

if TYPE_CHECKING:
    from costattr.ledger.base import Ledger
    from costattr.ledger.records import AnyRecord
    from costattr.ledger.store import LocalStore, ReadResult


def _repo() -> tuple[Path | None, str | None]:
    """The work tree containing the current directory and its repository id (None outside one)."""
    from costattr import gitctx
    from costattr.errors import NotAGitRepo

    try:
        git = gitctx.discover(Path.cwd())
    except NotAGitRepo:
        return None, None
    return git.workdir, git.repo_id


def _say(message: str) -> None:
    click.echo(message)


@dataclass
class _Remote:
    """The copy of the shared ledger that sync must fill, and how to reach it."""

    where: str  # for people: "the memory API", "origin's refs/notes/costattr"
    exchange: Callable[[], None]  # git notes: fetch, merge, push; the memory API: add() already is the exchange
    held: Callable[[], ReadResult]  # what the remote holds now, read from it
    add_is_remote: bool  # whether publishing itself talked to the remote (the memory API) or wrote locally


def _remote_of(ledger: Ledger, remote: str) -> _Remote:
    from costattr.ledger.git_notes import GitNotesLedger

    if isinstance(ledger, GitNotesLedger):
        notes = ledger

        def exchange() -> None:
            notes.sync(remote, progress=_say)

        return _Remote(f"{remote}'s {notes.ref}", exchange, lambda: notes.read_remote(remote), add_is_remote=False)
    return _Remote(f"the {ledger.label}", lambda: None, ledger.read, add_is_remote=True)


def _missing(scope: ReadResult, held: ReadResult) -> list[AnyRecord]:
    return [record for rid, record in scope.records.items() if rid not in held.records]


def _still_missing(where: str, missing: int, whose: str, held: ReadResult) -> CostattrError:
    from costattr.ledger.publish import plural

    why = "it accepts them but does not keep them"
    if held.set_aside.count:
        # A copy there with the same id that fails validation (a hand edit, a buggy writer) hides ours.
        why += f"; there, {held.set_aside.summary()}"
    return CostattrError(
        f"sync incomplete: {where} still lacks {plural(missing, 'record')} of {whose} "
        f"after they were sent again: {why}",
        hint="check the backend (a proxy, mirror or server rewriting what it stores); "
             "the records stay in the local ledger",
    )


def _deliver(store: LocalStore, ledger: Ledger, repo: str | None, remote: str) -> CostattrError | None:
    """Publish, exchange, re-check and re-send; None when the remote holds every record of the
    scope, else the error to exit with (how many are missing, and why)."""
    from costattr.ledger.publish import plural, publish, waiting

    result = publish(store, ledger, repo)
    _say(result.message)
    theirs = _remote_of(ledger, remote)
    per_repo = ledger.scope == "repository"
    scope = store.read_repo(repo) if per_repo and repo else store.read()
    whose = "this repository" if per_repo else "this machine"
    if not result.ok and theirs.add_is_remote:
        # The remote was just tried and failed (down, hanging, refusing the key): asking it again
        # in the same run would only double the wait.
        return CostattrError(f"sync incomplete: {_waits(result.waiting, theirs.where)}: {result.message}",
                             hint="run `costattr sync` again once it answers")
    missing: list[AnyRecord] | None = None  # what the remote lacked when last read
    read_tried = False
    try:
        theirs.exchange()
        read_tried = True
        held = theirs.held()
        missing = _missing(scope, held)
        if missing:
            _say(f"{theirs.where} lacks {plural(len(missing), 'record')} of {whose}: sending them again")
            ledger.add(missing)
            theirs.exchange()
            held = theirs.held()
            missing = _missing(scope, held)
    except CostattrError as e:
        if missing is None and not read_tried:
            missing = _lacking(theirs, scope)  # the exchange failed (a refused push): reading may still work
        if missing is not None:
            count = f"{theirs.where} lacks {plural(len(missing), 'record')} of {whose}"
        elif (left := waiting(store, ledger, repo)):
            count = _waits(left, theirs.where)
        else:
            count = f"could not check that {theirs.where} holds the {plural(len(scope.records), 'record')} of {whose}"
        return CostattrError(f"sync incomplete: {count}: {e.message}", hint=e.hint or "run `costattr sync` again later")
    if missing:
        return _still_missing(theirs.where, len(missing), whose, held)
    if not result.ok:
        publish(store, ledger, repo)  # the re-check delivered what publishing could not: move the mark past it
    _say(f"{theirs.where} holds all {plural(len(scope.records), 'record')} of {whose}")
    return None


def _waits(n: int, where: str) -> str:
    from costattr.ledger.publish import plural

    return f"{plural(n, 'record')} {'waits' if n == 1 else 'wait'} for {where}"


def _lacking(theirs: _Remote, scope: ReadResult) -> list[AnyRecord] | None:
    """What the remote lacks, or None when it cannot be read either."""
    try:
        return _missing(scope, theirs.held())
    except CostattrError:
        return None


def _report_other_targets(store: LocalStore, current: str | None) -> None:
    """Records waiting for some other backend (an old URL, another repository's notes) stay
    visible, with what delivers them and what drops them."""
    from costattr.ledger.publish import plural

    for target, label, waiting in store.targets():
        if target != current and waiting:
            _say(f"waiting: {plural(waiting, 'record')} for {label} (not the backend configured here)")
            deliver = ("run `costattr sync` in that repository" if target.startswith("git-notes-")
                       else "configure that backend again and run `costattr sync`")
            _say(f"  to deliver them: {deliver}; to drop them: `costattr sync --forget-target {target}`")


def _forget(store: LocalStore, targets: Sequence[str]) -> None:
    """Forget delivery targets: their waiting records are no longer sent there nor reported (the
    records themselves stay in the local ledger, and in every backend that has them)."""
    from costattr.ledger.publish import plural

    known = {target: (label, waiting) for target, label, waiting in store.targets()}
    unknown = [t for t in targets if t not in known]
    if unknown:
        listed = ", ".join(known) if known else "none"
        raise CostattrError(f"no delivery target named {unknown[0]!r}",
                            hint=f"targets known here: {listed} (`costattr sync` lists those with records waiting)")
    for target in dict.fromkeys(targets):
        label, waiting = known[target]
        store.forget_target(target)
        _say(f"forgot {label}: {plural(waiting, 'record')} waiting for it will not be sent there "
             "(they stay in the local ledger)")


@click.command("sync")
@click.option("--ledger", "backend", type=click.Choice(["json", "memory-api", "git-notes"]),
              help="Backend to sync (default: COSTATTR_LEDGER, else [ledger] backend in the config).")
@click.option("--remote", default="origin", show_default=True, help="git remote to exchange notes with (git-notes).")
@click.option("--all", "send_all", is_flag=True, hidden=True,
              help="Kept for scripts: every sync now compares with what the backend holds.")
@click.option("--forget-target", "forget", multiple=True, metavar="TARGET",
              help="Stop delivering to TARGET (as `sync` lists it, e.g. an old URL) and exit; repeatable.")
def command(backend: str | None, remote: str, send_all: bool, forget: tuple[str, ...]) -> None:
    """Deliver everything the shared ledger lacks, then check it: the records it has not received
    (all of this machine's for the memory API; this repository's for git notes), for git notes an
    exchange with the remote (fetch, merge with cat_sort_uniq, push), and a re-check that reads
    the remote and sends again whatever it lacks. Exits 0 only when the remote holds every record;
    otherwise 1, saying how many are missing and why. Safe to run any time: records merge by
    union, so sending one twice changes nothing.

    \b
    Example:
      costattr sync                      # the configured backend
      costattr sync --ledger git-notes --remote upstream
      costattr sync --forget-target memory-api-0123456789ab   # drop records waiting for an old URL
    """
    from costattr.config import load_config
    from costattr.ledger.publish import target_id
    from costattr.ledger.select import backend_name, open_backend, shared_settings
    from costattr.record import local_store

    workdir, repo = _repo()
    cfg = load_config(workdir)
    store = local_store(cfg, workdir)
    if forget:
        _forget(store, forget)
        return
    name = backend or backend_name(cfg.ledger.backend)
    if name == "json":
        _say(f"local ledger ({store.describe()}): nothing to sync")
        _report_other_targets(store, None)
        return
    ledger = open_backend(name, workdir, shared_settings(cfg))
    _say(f"{ledger.label}: {ledger.describe()}")
    if ledger.scope == "repository" and repo is None:
        raise CostattrError("the git-notes ledger belongs to a repository", hint="run `costattr sync` inside one")
    problem = _deliver(store, ledger, repo, remote)
    _report_other_targets(store, target_id(ledger))
    if problem is not None:
        raise problem
