"""`costattr sync`: send the shared ledger what it lacks; for git notes also fetch, merge and push."""

from __future__ import annotations

from pathlib import Path

import click

from costattr.errors import CostattrError


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


def _report_other_targets(store: object, current: str | None) -> None:
    """Records waiting for some other backend (an old URL, another repository) stay visible."""
    from costattr.ledger.publish import plural

    for target, label, waiting in store.targets():  # type: ignore[attr-defined]
        if target != current and waiting:
            _say(f"waiting: {plural(waiting, 'record')} for {label} (not the backend configured here)")


@click.command("sync")
@click.option("--ledger", "backend", type=click.Choice(["json", "memory-api", "git-notes"]),
              help="Backend to sync (default: COSTATTR_LEDGER, else [ledger] backend in the config).")
@click.option("--remote", default="origin", show_default=True, help="git remote to exchange notes with (git-notes).")
@click.option("--all", "send_all", is_flag=True,
              help="Compare with what the backend holds and send every record it lacks (e.g. after switching backend).")
def command(backend: str | None, remote: str, send_all: bool) -> None:
    """Send the shared ledger the records it has not received yet (all of this machine's for the
    memory API; this repository's for git notes); for git notes, also fetch the remote's notes,
    merge them (cat_sort_uniq) and push. Safe to run any time: records merge by union, so sending
    one twice changes nothing.

    \b
    Example:
      costattr sync                      # the configured backend
      costattr sync --ledger git-notes --remote upstream
      COSTATTR_API_KEY=... costattr sync --ledger memory-api --all
    """
    from costattr.config import load_config
    from costattr.ledger.publish import plural, publish, target_id
    from costattr.ledger.select import backend_name, open_backend, shared_settings
    from costattr.record import local_store

    workdir, repo = _repo()
    cfg = load_config(workdir)
    store = local_store(cfg, workdir)
    name = backend or backend_name(cfg.ledger.backend)
    if name == "json":
        _say(f"local ledger ({store.describe()}): nothing to sync")
        _report_other_targets(store, None)
        return
    ledger = open_backend(name, workdir, shared_settings(cfg))
    _say(f"{ledger.label}: {ledger.describe()}")
    if ledger.scope == "repository" and repo is None:
        raise CostattrError("the git-notes ledger belongs to a repository", hint="run `costattr sync` inside one")
    failures: list[CostattrError] = []

    result = publish(store, ledger, repo)
    _say(result.message)
    if not result.ok:
        failures.append(CostattrError(result.message))

    if send_all and not failures:
        try:
            held = set(ledger.read().records)
            scope = store.read_repo(repo) if ledger.scope == "repository" and repo else store.read()
            missing = [r for rid, r in scope.records.items() if rid not in held]
            if missing:
                ledger.add(missing)
            _say(f"{ledger.label} lacked {plural(len(missing), 'record')}" + (": sent" if missing else ""))
        except CostattrError as e:
            failures.append(e)
            _say(f"{ledger.label}: not compared ({e.message})")

    if name == "git-notes":
        try:
            ledger.sync(remote, progress=_say)  # type: ignore[attr-defined]
        except CostattrError as e:
            failures.append(e)
    elif not failures:
        count = len(ledger.read().records)  # proves the URL, user and key work even when nothing waited
        _say(f"{ledger.label}: reachable, {plural(count, 'record')}")

    _report_other_targets(store, target_id(ledger))
    if failures:
        first = failures[0]
        raise CostattrError(f"sync incomplete: {first.message}", hint=first.hint or "run `costattr sync` again later")
