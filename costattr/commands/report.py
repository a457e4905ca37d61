"""`costattr report`: what each issue, PR, branch, session, model, day or author cost."""

from __future__ import annotations

from datetime import date, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import click

from costattr.commands.options import date_range
from costattr.report.rollup import GROUPINGS

if TYPE_CHECKING:
    from costattr.ledger.base import Ledger
    from costattr.ledger.store import ReadResult

LEDGER_CHOICES = ("json", "memory-api", "git-notes")


@click.command("report")
@click.option("--by", type=click.Choice(GROUPINGS), default="issue", show_default=True, help="What each row is.")
@date_range
@click.option("--issue", help="Only spend linked to this issue key.")
@click.option("--branch", help="Only spend on this branch.")
@click.option("--repo", help="Only this repository (owner/name).")
@click.option("--pr", type=int, help="Only spend linked to this pull request.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True)
@click.option("--top", type=click.IntRange(min=0), default=0, help="Only the N costliest rows (the rest folded).")
@click.option("--tree", is_flag=True, help="Drill down: row -> sessions -> commits, with shares of the parent.")
@click.option("--ledger", type=click.Choice(LEDGER_CHOICES), help="Read this backend instead of the configured one.")
def command(by: str, since: date | None, until: date | None, tz: tzinfo | None, issue: str | None,
            branch: str | None, repo: str | None, pr: int | None, fmt: str, top: int, tree: bool,
            ledger: str | None) -> None:
    """Roll the ledger up: cost, tokens, cache hit rate, sessions, commits and PRs per row.

    Rows plus `unattributed` (spend with no key for this grouping) add up to the total.

    \b
    Example:
      costattr report --by issue
      costattr report --by day --since 2026-11-01 --tz Europe/Berlin
      costattr report --by pr --format markdown
      costattr report --issue PROJ-123 --by session --tree
    """
    from costattr.config import load_config
    from costattr.ledger import open_configured
    from costattr.ledger.view import visible
    from costattr.output import echo_json, note
    from costattr.report import budget, render, rollup

    workdir = _workdir()
    cfg = load_config(workdir)
    source = open_configured(cfg, workdir, ledger)
    read = source.read()
    announce(source, read, "the rest is reported")
    spends = visible(read.records)
    if not spends:
        if read.records or read.set_aside.count:
            note(f"The ledger ({source.describe()}) holds no spend to report.")
        else:
            note(f"The ledger ({source.describe()}) is empty: nothing has been recorded yet.")
            note("Start with `costattr install` in a repository (spend is recorded on every commit), "
                 "or `costattr demo` to see a report on demo data.")
        if fmt == "json":
            echo_json(rollup.rollup([], by).as_json())
        return
    filters = rollup.Filters(since=since, until=until, issue=issue, branch=branch, repo=repo, pr=pr, tz=tz)
    roll = rollup.rollup(spends, by, filters, budget.budget_lookup(cfg.budgets))
    roll = rollup.top(roll, top)
    price_date = max((s.record.prices for s in spends if s.record.prices), default=None)
    if fmt == "json":
        echo_json(roll.as_json())
    elif fmt == "csv":
        click.echo(render.render_csv(roll), nl=False)
    elif fmt == "markdown":
        click.echo(render.render_markdown(roll, price_date), nl=False)
    elif tree:
        click.echo(render.render_tree(roll, price_date), nl=False)
    else:
        render.render_table(roll, price_date)


def announce(source: Ledger, read: ReadResult, rest: str) -> None:
    """What a reader of the ledger says first, on stderr: one-time events (a 0.1 ledger converted)
    and how many records failed validation and were set aside (`rest`: what is done with the others)."""
    from costattr.output import note

    for line in getattr(source, "notices", ()):
        note(f"costattr: {line}")
    if read.set_aside.count:
        note(f"costattr: {read.set_aside.summary()} (in {source.describe()}); {rest}")


def _workdir() -> Path | None:
    from costattr import gitctx
    from costattr.errors import NotAGitRepo

    try:
        return gitctx.discover(Path.cwd()).workdir
    except NotAGitRepo:
        return None  # reports work anywhere; only per-repo config needs a repository
