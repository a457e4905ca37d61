"""`costattr upload`: the post-commit hook's work. In hook mode it never fails a commit."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from costattr.errors import CostattrError, LedgerCorrupt

# How long the hook waits for a peer holding the local ledger (another hook, a `sync`, a long
# backfill) before giving up on this commit: what it would have recorded stays in the transcripts,
# and the next hook records it (coverage is by request key, so nothing is lost or doubled).
# COSTATTR_LOCK_TIMEOUT, when set, is the user's choice and wins.
HOOK_LOCK_WAIT_S = 1.5


def _usd(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount in USD (e.g. 12.34)") from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter("the base must be a non-negative amount")
    return amount


@click.command("upload")
@click.option("--pr", "prs", type=click.IntRange(min=1), multiple=True,
              help="Link the checked-out branch's spend to PR N, now and later (repeatable).")
@click.option("--base", callback=_usd, help="USD spent before this branch began (from `costattr base`).")
@click.option("--session", help="Only this session (id or prefix).")
@click.option("--dry-run", is_flag=True, help="Show what would be recorded; write nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless something went wrong.")
@click.option("--hook", is_flag=True, hidden=True, help="Hook mode: log any error and exit 0.")
def command(prs: tuple[int, ...], base: Decimal | None, session: str | None, dry_run: bool, quiet: bool,
            hook: bool) -> None:
    """Record the spend of the sessions that ran in this work tree and that no record covers yet:
    what the checked-out branch spent up to HEAD's commit goes to HEAD and its issue, what other
    branches spent waits for their commits. Prints what this commit recorded,
    `cost (cache hit %) on ISSUE`, and where the rest went.

    \b
    Example:
      costattr upload                 # what the post-commit hook runs
      costattr upload --pr 142 --pr 143
      costattr upload --dry-run
    """
    if not hook:
        _run(prs, base, session, dry_run, quiet, hook=False)
        return
    record_for_hook(prs, base, session, dry_run, quiet)


def record_for_hook(prs: tuple[int, ...] = (), base: Decimal | None = None, session: str | None = None,
                    dry_run: bool = False, quiet: bool = False) -> bool:
    """The hook's upload: never raises, so a commit is never failed or blocked. True when the
    spend was recorded; False after one `costattr: spend not recorded (...)` line on stderr (the
    pre-commit route turns that into a visible Failed, see hook_impl)."""
    try:
        try:
            _run(prs, base, session, dry_run, quiet, hook=True)
        except LedgerCorrupt as e:
            # The damaged ledger is already moved aside (never overwritten): say where, then record
            # this commit's spend into a fresh ledger rather than losing it.
            click.echo(f"costattr: {_one_line(e.message)}; recording into a fresh ledger", err=True)
            _run(prs, base, session, dry_run, quiet, hook=True)
        return True
    except Exception as e:  # the hook must never fail or block a commit
        from costattr.cli import environment_fault
        from costattr.logs import log_exception

        where = log_exception("upload (hook)")
        # An expected failure's hint is the useful half of the line ("recorded by the next hook").
        if isinstance(e, CostattrError):
            reason = f"{e.message}; {e.hint}" if e.hint else e.message
        else:
            reason = (environment_fault(e) if isinstance(e, OSError) else None) or f"{type(e).__name__}: {e}"
        click.echo(f"costattr: spend not recorded ({_one_line(reason.replace(chr(10) + '  hint: ', '; '))}); "
                   f"{where.note}", err=True)
        return False


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_shared(cfg: object) -> bool:
    """Whether a shared backend is configured (an invalid name counts: publishing will say why)."""
    from costattr.ledger.select import backend_name

    try:
        return backend_name(getattr(getattr(cfg, "ledger", None), "backend", None)) != "json"
    except CostattrError:
        return True


def _run(prs: tuple[int, ...], base: Decimal | None, session: str | None, dry_run: bool, quiet: bool, *,
         hook: bool) -> None:
    from costattr import gitctx, hookfast
    from costattr.config import load_config
    from costattr.ledger.select import publish_shared, shared_settings
    from costattr.ledger.store import ENV_LOCK_TIMEOUT, lock_timeout
    from costattr.record import local_store, upload

    git = gitctx.discover(Path.cwd())
    cfg = load_config(git.workdir)
    quiet = quiet or cfg.hook.quiet
    seen = hookfast.transcripts_fingerprint()  # before the scan: a file that changes meanwhile is read next time
    store = local_store(cfg, git.workdir)
    if hook:  # read when the store first connects, which is later
        store.timeout = lock_timeout() if os.environ.get(ENV_LOCK_TIMEOUT, "").strip() else HOOK_LOCK_WAIT_S
    result = upload(git, cfg, prs=prs, base=base, session=session, dry_run=dry_run, store=store)
    if dry_run:
        for rec in result.attribution.records:
            where = f"{rec.commit[:7]} " if rec.commit else ""
            click.echo(f"would record {rec.session_id[:8]}: {rec.cost:.4f} {rec.state} "
                       f"{where}{rec.display_branch or '(no branch)'}")
    messages = list(result.messages)
    if not dry_run and _is_shared(cfg):
        # The hook hands network publishing to the background publisher: a commit never waits on a
        # server. `costattr upload` by hand publishes here, within the backend's own deadline.
        line = publish_shared(store, workdir=git.workdir, repo=git.repo_id, configured_backend=cfg.ledger.backend,
                              settings=shared_settings(cfg), background=hook)
        messages.append(line or "")
    # Closed first: SQLite folds its -wal file back in when the last connection closes, and the
    # fast path compares the files as they are then (remembered with the WAL still open, the next
    # hook would always find them changed).
    store.close()
    # An unborn HEAD names the same ref before and after the first commit: remembering it would let
    # the fast path skip the first commit, whose hook must close the spend recorded so far.
    if not dry_run and session is None and git.head_sha is not None:
        try:  # best effort: the spend is recorded already; without it the next hook takes the full path
            hookfast.remember(Path(os.path.realpath(git.workdir)), seen, store.path, quiet=cfg.hook.quiet)
        except Exception:  # noqa: BLE001 - e.g. a HEAD naming a branch that is not UTF-8
            from costattr.logs import log_exception

            log_exception("hook fast-path state not saved")
    if hook and hookfast.is_waiting(git.workdir):
        hookfast.start_publisher(git.workdir)  # last, the ledger closed: no connection of ours keeps its WAL
    if not quiet:
        click.echo(f"costattr: {result.summary}")
    for line in messages:
        if line:
            click.echo(f"costattr: {line}", err=True)
