"""`costattr upload`: the post-commit hook's work. In hook mode it never fails a commit."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from costattr.errors import CostattrError


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
        _run(prs, base, session, dry_run, quiet)
    except Exception as e:  # the hook must never fail or block a commit
        from costattr.logs import log_exception

        where = log_exception("upload (hook)")
        reason = e.message if isinstance(e, CostattrError) else f"{type(e).__name__}: {e}"
        click.echo(f"costattr: spend not recorded ({reason}); details in {where}", err=True)


def _run(prs: tuple[int, ...], base: Decimal | None, session: str | None, dry_run: bool, quiet: bool) -> None:
    from costattr import gitctx
    from costattr.config import load_config
    from costattr.ledger.select import publish_shared, shared_settings
    from costattr.record import upload

    from costattr import hookfast

    git = gitctx.discover(Path.cwd())
    cfg = load_config(git.workdir)
    quiet = quiet or cfg.hook.quiet
    seen = hookfast.transcripts_fingerprint()  # before the scan: a file that changes meanwhile is read next time
    result = upload(git, cfg, prs=prs, base=base, session=session, dry_run=dry_run)
    if dry_run:
        for entry in result.changed:
            click.echo(f"would record {entry.session_id[:8]}: {entry.cost_str} on "
                       f"{', '.join(sorted({s.branch or '(no branch)' for s in entry.segments}))}")
    messages = list(result.messages)
    if not dry_run:
        # Copies the new entries to the shared backend; failures wait in the outbox, never raise.
        messages.append(publish_shared(result.changed, workdir=git.workdir, configured_backend=cfg.ledger.backend,
                                       settings=shared_settings(cfg)) or "")
    if not dry_run and session is None:
        hookfast.remember(Path(os.path.realpath(git.workdir)), seen, quiet=cfg.hook.quiet)
    if not quiet:
        click.echo(result.summary)
    for line in messages:
        if line:
            click.echo(f"costattr: {line}", err=True)
