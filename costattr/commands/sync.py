"""`costattr sync`: send what waits in the outbox; for git notes also fetch, merge and push."""

from __future__ import annotations

from pathlib import Path

import click

from costattr.errors import CostattrError


def _workdir() -> Path | None:
    """The work tree containing the current directory (None outside a repository)."""
    import pygit2

    gitdir = pygit2.discover_repository(str(Path.cwd()))
    if gitdir is None:
        return None
    workdir = pygit2.Repository(gitdir).workdir
    return Path(workdir) if workdir else None


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _say(message: str) -> None:
    click.echo(message)


def _warn(message: str) -> None:
    click.echo(f"costattr: {message}", err=True)


def _report_other_outboxes(current: Path | None) -> None:
    """Entries waiting for some other backend (an old URL, another repository) stay visible."""
    from costattr.ledger import outbox

    for target in outbox.summary():
        if target.directory != current:
            _say(f"outbox: {_entries(target.count)} wait for {target.backend} "
                 f"({target.target}); run `costattr sync --ledger {target.backend}`")


@click.command("sync")
@click.option("--ledger", "backend", type=click.Choice(["json", "memory-api", "git-notes"]),
              help="Backend to sync (default: COSTATTR_LEDGER, else [ledger] backend in the config).")
@click.option("--remote", default="origin", show_default=True, help="git remote to exchange notes with (git-notes).")
@click.option("--all", "send_all", is_flag=True,
              help="Also send every entry of this machine's local ledger (e.g. after switching backend).")
def command(backend: str | None, remote: str, send_all: bool) -> None:
    """Deliver the entries waiting in the outbox to the shared ledger; for git notes, also fetch
    the remote's notes, merge them (cat_sort_uniq) and push. Safe to run any time: entries are
    merged per session, newest wins.

    \b
    Example:
      costattr sync                      # the configured backend
      costattr sync --ledger git-notes --remote upstream
      COSTATTR_API_KEY=... costattr sync --ledger memory-api --all
    """
    from costattr.ledger import local_ledger, outbox
    from costattr.ledger.select import backend_name, open_backend, settings_from_config

    workdir = _workdir()
    settings = settings_from_config(workdir)
    name = backend or backend_name(settings.get("backend"))
    if name == "json":
        _say(f"json ledger ({local_ledger().describe()}): local file, nothing to sync")
        _report_other_outboxes(None)
        return
    ledger = open_backend(name, workdir, settings)
    label = str(getattr(ledger, "label", name))
    _say(f"{label}: {ledger.describe()}")
    failures: list[CostattrError] = []

    try:
        sent, remaining = outbox.deliver(ledger, warn=_warn)
        _say(f"outbox: sent {sent}, {remaining} still waiting" if sent or remaining else "outbox: empty")
    except CostattrError as e:
        failures.append(e)
        _say(f"outbox: not delivered; {_entries(outbox.count(ledger))} still waiting")

    if send_all and not failures:
        try:
            entries = list(local_ledger().read().values())
            ledger.upsert(entries)
            _say(f"local ledger: sent {_entries(len(entries))}")
        except CostattrError as e:
            failures.append(e)
            _say("local ledger: not sent")

    if name == "git-notes":
        try:
            ledger.sync(remote, progress=_say)  # type: ignore[attr-defined]
        except CostattrError as e:
            failures.append(e)
    elif not failures:
        count = len(ledger.read())  # proves the URL, user and key work even when nothing waited
        _say(f"{label}: reachable, {_entries(count)}")

    _report_other_outboxes(outbox.target_dir(ledger))
    if failures:
        first = failures[0]
        raise CostattrError(f"sync incomplete: {first.message}", hint=first.hint or "run `costattr sync` again later")
