"""`costattr upload`: the post-commit hook's work. In hook mode it never fails a commit."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from costattr.errors import CostattrError, LedgerCorrupt


def _usd(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount in USD (e.g. 12.34)") from None
    if amount < 0:
        raise click.BadParameter("the base cannot be negative")
    return amount


@click.command("upload")
@click.option("--pr", "prs", type=click.IntRange(min=1), multiple=True, help="Link this session to PR N (repeatable).")
@click.option("--base", callback=_usd, help="USD spent before this branch began (from `costattr base`).")
@click.option("--session", help="Only this session (id or prefix).")
@click.option("--dry-run", is_flag=True, help="Show what would be recorded; write nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless something went wrong.")
@click.option("--hook", is_flag=True, hidden=True, help="Hook mode: log any error and exit 0.")
def command(prs: tuple[int, ...], base: Decimal | None, session: str | None, dry_run: bool, quiet: bool,
            hook: bool) -> None:
    """Attribute the spend of the sessions that ran in this work tree to its branch, commit and
    issue, and upsert one entry per session into the ledger. Prints `cost (cache hit %)` of
    what was new.

    \b
    Example:
      costattr upload                 # what the post-commit hook runs
      costattr upload --pr 142 --pr 143
      costattr upload --dry-run
    """
    if not hook:
        _run(prs, base, session, dry_run, quiet)
        return
    try:
        try:
            _run(prs, base, session, dry_run, quiet)
        except LedgerCorrupt as e:
            # The damaged ledger is already moved aside (never overwritten): say where, then record
            # this commit's spend into a fresh ledger rather than losing it.
            click.echo(f"costattr: {_corrupt_line(e)}", err=True)
            _run(prs, base, session, dry_run, quiet)
    except Exception as e:  # the hook must never fail or block a commit
        from costattr.logs import log_exception

        where = log_exception("upload (hook)")
        reason = e.message if isinstance(e, CostattrError) else f"{type(e).__name__}: {e}"
        click.echo(f"costattr: spend not recorded ({_one_line(reason)}); details in {where}", err=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _corrupt_line(e: LedgerCorrupt) -> str:
    kept, path = getattr(e, "kept", None), getattr(e, "path", None)
    if kept is None or path is None:
        return _one_line(f"{e.message}; recording into a fresh ledger")
    return _one_line(f"{e.message}; recording into a fresh ledger (to restore the earlier attributions: "
                     f"repair {kept}, move it back to {path} and run `costattr upload`)")


def _is_shared(cfg: object) -> bool:
    """Whether a shared backend is configured (an invalid name counts: publishing will say why)."""
    from costattr.ledger.select import backend_name

    try:
        return backend_name(getattr(getattr(cfg, "ledger", None), "backend", None)) != "json"
    except CostattrError:
        return True


def _outbox_aside() -> set[Path]:
    """Outbox files moved aside so far (an unreadable outbox file is kept, never deleted)."""
    from costattr.ledger.outbox import outbox_root

    root = outbox_root()
    return set(root.glob("*/*.corrupt-*")) if root.is_dir() else set()


def _run(prs: tuple[int, ...], base: Decimal | None, session: str | None, dry_run: bool, quiet: bool) -> None:
    from costattr import gitctx, hookfast
    from costattr.config import load_config
    from costattr.ledger.select import publish_shared, shared_settings
    from costattr.record import clear_pending, pending_entries, upload

    git = gitctx.discover(Path.cwd())
    cfg = load_config(git.workdir)
    quiet = quiet or cfg.hook.quiet
    seen = hookfast.transcripts_fingerprint()  # before the scan: a file that changes meanwhile is read next time
    shared = not dry_run and _is_shared(cfg)
    result = upload(git, cfg, prs=prs, base=base, session=session, dry_run=dry_run, shared=shared)
    if dry_run:
        for entry in result.changed:
            click.echo(f"would record {entry.session_id[:8]}: {entry.cost_str} on "
                       f"{', '.join(sorted({s.branch or '(no branch)' for s in entry.segments}))}")
    messages = list(result.messages)
    if not dry_run:
        # Copies the new entries to the shared backend; failures wait in the outbox, never raise.
        aside = _outbox_aside()
        # Sessions an earlier hook wrote locally but was killed before handing over go out too.
        batch = list(result.changed) + (pending_entries({e.session_id for e in result.changed}, messages)
                                        if shared else [])
        messages.append(publish_shared(batch, workdir=git.workdir, configured_backend=cfg.ledger.backend,
                                       settings=shared_settings(cfg)) or "")
        if shared:
            clear_pending(batch)  # handed over: published, or queued in the outbox
        damaged = sorted(p for p in _outbox_aside() - aside if not p.name.endswith(("-wal", "-shm", "-journal")))
        for kept in damaged:
            messages.append(f"outbox file {kept.with_name(kept.name.split('.corrupt-')[0])} was unreadable; kept as "
                            f"{kept}; this machine's entries were sent again in its place")
        if damaged:
            # What the damaged file held is unknown: send every local entry (the newest copy wins).
            from costattr.ledger import local_ledger

            messages.append(publish_shared(list(local_ledger().read().values()), workdir=git.workdir,
                                           configured_backend=cfg.ledger.backend, settings=shared_settings(cfg)) or "")
    # An unborn HEAD names the same ref before and after the first commit: remembering it would let
    # the fast path skip the first commit, whose hook must close the spend recorded so far.
    if not dry_run and session is None and git.head_sha is not None:
        try:  # best effort: the spend is recorded already; without it the next hook takes the full path
            hookfast.remember(Path(os.path.realpath(git.workdir)), seen, quiet=cfg.hook.quiet)
        except Exception:  # noqa: BLE001 - e.g. a HEAD naming a branch that is not UTF-8
            from costattr.logs import log_exception

            log_exception("hook fast-path state not saved")
    if not quiet:
        click.echo(result.summary)
    for line in messages:
        if line:
            click.echo(f"costattr: {line}", err=True)
