"""`costattr backfill`: attribute the history already in the transcripts (see costattr/backfill.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

from costattr.commands.options import DateParam
from costattr.output import console, echo_json, fmt_usd, plural

if TYPE_CHECKING:
    from costattr.backfill import BackfillResult, Progress, PullsByHead
    from costattr.gitctx import GitContext


@click.command("backfill")
@click.option("--since", type=DateParam(), help="Only requests made on or after this day (UTC, YYYY-MM-DD).")
@click.option("--dry-run", is_flag=True, help="Show what would be recorded; write nothing.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def command(since: date | None, dry_run: bool, fmt: str) -> None:
    """Attribute the spend already in the transcripts to the commits, branches and issues it was
    for: each request goes to the first commit made on its own branch after it (from the branch's
    history, or the reflog and merges for a deleted one); requests with no later commit stay open
    on their branch. Safe to run any number of times, before or after installing the hook: a
    request is recorded once.

    \b
    Example:
      costattr backfill --dry-run
      costattr backfill --since 2026-09-01
      costattr report --by issue
    """
    from costattr import gitctx
    from costattr.backfill import backfill
    from costattr.config import load_config

    git = gitctx.discover(Path.cwd())
    cfg = load_config(git.workdir)
    notices: list[str] = []
    with _progress() as progress:
        result = backfill(git, cfg, since=since, dry_run=dry_run, progress=progress,
                          pulls_by_head=_github_lookup(git, notices))
    result.messages += notices
    if fmt == "json":
        echo_json(result.to_json())
    else:
        _print(result)
    for line in result.messages:
        click.echo(f"costattr: {line}", err=True)


def _github_lookup(git: GitContext, notices: list[str]) -> PullsByHead | None:
    """With GITHUB_TOKEN (or GH_TOKEN) and a GitHub origin: the PRs whose head is each branch.
    A GitHub that refuses or does not answer costs the links, never the backfill (said once)."""
    from costattr import github as gh

    found = gh.resolve_token(os.environ)
    if found is None or not git.repo_slug or (git.forge_host != "github.com" and "GITHUB_API_URL" not in os.environ):
        return None
    token, token_var = found
    slug = git.repo_slug

    def lookup(branches: list[str]) -> dict[str, list[int]]:
        try:
            client = gh.GitHubClient(token, gh.resolve_api_url(os.environ), token_var=token_var,
                                     deadline_s=gh.resolve_deadline(os.environ))
            try:
                return client.pulls_by_head(slug, branches)
            finally:
                client.close()
        except gh.GitHubError as e:
            notices.append(f"pull requests not looked up on GitHub ({e.message})")
            return {}

    return lookup


@contextmanager
def _progress() -> Iterator[Progress | None]:
    """A count of sessions attributed, on stderr, only on a terminal (a pipe or CI gets none)."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("scanning transcripts, reading git history", total=None)

        def update(stage: str, done: int, total: int) -> None:
            if stage == "history":
                bar.update(task, description=f"git history read ({done} commits); attributing sessions")
            else:
                bar.update(task, completed=done, total=total)

        yield update


def _print(result: BackfillResult) -> None:
    from rich import box
    from rich.table import Table

    out = console()
    verb = "would record" if result.dry_run else "recorded"
    out.print(f"backfill {verb} {plural(result.requests, 'request')} of {plural(result.sessions, 'session')}: "
              f"{fmt_usd(result.cost)}" + (f", {plural(len(result.links), 'PR link')}" if result.links else ""))
    if not result.requests:
        out.print("Nothing to backfill: every request in this repository's transcripts is already recorded.")
        return
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    # The figures keep their width on a narrow terminal; the labels give way.
    t.add_column("Attributed to", no_wrap=True, overflow="ellipsis", max_width=44)
    t.add_column("Requests", justify="right", no_wrap=True, min_width=8)
    t.add_column("Cost", justify="right", no_wrap=True, min_width=9)
    sections = (("", result.by_issue()), ("left open on ", result.left_open()),
                ("unattributed: ", result.unattributed()))
    for prefix, rows in sections:
        for key, (n, cost) in rows.items():
            t.add_row(f"{prefix}{key}", str(n), fmt_usd(cost))
    out.print(t)
