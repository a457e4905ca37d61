"""`costattr base`: the running total to capture before a branch begins (CloudClawer's --base)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import click


@click.command("base")
def command() -> None:
    """Print the total spend of the sessions that ran in this work tree so far.

    Capture it before starting a branch, then pass it to `costattr upload --base` so spend from
    before the branch is kept apart (as unattributed) instead of charged to the branch.

    \b
    Example:
      BASE=$(costattr base)
      costattr upload --base "$BASE"
    """
    from costattr import gitctx
    from costattr.config import load_config
    from costattr.record import session_events

    git = gitctx.discover(Path.cwd())
    scanned = session_events(git, load_config(git.workdir))
    total = sum((ev.cost or Decimal(0) for evs in scanned.by_session.values() for ev in evs), Decimal(0))
    click.echo(f"{total:.4f}")
