"""`costattr publish-background` (hidden): the background publisher, as the hook starts it.

The hook (costattr/hookfast.py: `start_publisher`) runs it detached in the work tree, with the
publisher lock already taken and handed over as `--lock-fd`. Run by hand it takes the lock
itself, and does nothing when a publisher runs already.
"""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command("publish-background", hidden=True)
@click.option("--lock-fd", type=int, help="The publisher lock, taken by the process that started this one.")
def command(lock_fd: int | None) -> None:
    """Send this work tree's waiting records to its shared backend over the network."""
    from costattr.ledger.publisher import run

    run(Path(os.path.realpath(Path.cwd())), lock_fd)
