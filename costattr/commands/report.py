"""`costattr report`: what each issue, PR, branch, session, model, day or author cost."""

from __future__ import annotations

from datetime import date, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import click

from costattr.commands.options import date_range
from costattr.report.rollup import GROUPINGS

if TYPE_CHECKING:
    from costattr.config import Config
    from costattr.ledger.base import Ledger
    from costattr.ledger.store import ReadResult
    from costattr.report import rollup as rollup_t

LEDGER_CHOICES = ("json", "memory-api", "git-notes")


@click.command("report")
@click.option("--by", type=click.Choice(GROUPINGS), default="issue", show_default=True, help="What each row is.")
@date_range
@click.option("--issue", help="Only spend linked to this issue key.")
@click.option("--branch", help="Only spend on this branch.")
@click.option("--repo", help="Only this repository: owner/name, or a path to its work tree "
                             "(default inside a repository: that repository).")
@click.option("--all-repos", is_flag=True, help="Every repository in the ledger, not only this one.")
@click.option("--pr", "prs", type=click.IntRange(min=1), multiple=True,
              help="Only spend linked to this pull request (repeatable: any of them).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the N costliest rows (the rest folded).")
@click.option("--tree", is_flag=True, help="Drill down: row -> sessions -> commits, with shares of the parent.")
@click.option("--ledger", type=click.Choice(LEDGER_CHOICES), help="Read this backend instead of the configured one.")
@click.option("--strict", is_flag=True,
              help="Fail when the shared ledger cannot be read (default: say so and report the local ledger).")
def command(by: str, since: date | None, until: date | None, tz: tzinfo | None, issue: str | None,
            branch: str | None, repo: str | None, all_repos: bool, prs: tuple[int, ...], fmt: str, top: int | None,
            tree: bool, ledger: str | None, strict: bool) -> None:
    """Roll the ledger up: cost, tokens, cache hit rate, sessions, commits and PRs per row.

    Rows plus `unattributed` (spend with no key for this grouping) add up to the total. Inside a
    repository the report covers that repository (`--all-repos` for everything in the ledger).
    Time groupings (day, week, month) are in time order, the others costliest first.

    \b
    Example:
      costattr report --by issue
      costattr report --by day --since 2026-11-01 --tz Europe/Berlin
      costattr report --by pr --format markdown
      costattr report --issue PROJ-123 --by session --tree
      costattr report --all-repos --by repo
    """
    from costattr.config import load_config
    from costattr.errors import CostattrError
    from costattr.ledger.view import visible
    from costattr.output import echo_json, note
    from costattr.report import budget, render, rollup

    if since and until and since > until:
        raise CostattrError(f"--since {since} is after --until {until}: no day can match both",
                            hint="swap them, or leave one out")
    workdir, here = _where()
    cfg = load_config(workdir)
    source, read = read_ledger(cfg, workdir, ledger, strict=strict)
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
    scope = None if all_repos else (_repo_id(repo) if repo else here)
    filters = rollup.Filters(since=since, until=until, issue=issue, branch=branch, repo=scope, prs=prs, tz=tz)
    roll = rollup.rollup(spends, by, filters, budget.budget_lookup(cfg.budgets))
    if top is not None:
        roll = rollup.top(roll, top)
    if not roll.total.requests:
        note(f"costattr: no spend matched {_described(filters, repo, all_repos)}"
             + ("; `--all-repos` shows every repository in the ledger" if scope and scope == here else ""))
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


def read_ledger(cfg: Config, workdir: Path | None, ledger: str | None, *, strict: bool) -> tuple[Ledger, ReadResult]:
    """The configured (or `--ledger`) backend's records. A shared backend that cannot be read is
    replaced, with one line on stderr, by this machine's own ledger, unless `strict`."""
    from costattr.errors import RemoteError
    from costattr.ledger import open_configured
    from costattr.output import note
    from costattr.record import local_store

    source = open_configured(cfg, workdir, ledger)
    try:
        return source, source.read()
    except RemoteError as e:
        if strict or source.name == "json":
            raise
        local = local_store(cfg, workdir)
        note(f"costattr: the {source.label} could not be read ({' '.join(e.message.split())}); "
             f"showing this machine's local ledger instead (`--ledger json` says so quietly, --strict fails)")
        return local, local.read()


def _described(filters: rollup_t.Filters, repo: str | None, all_repos: bool) -> str:
    said = [f"--{name} {value}" for name, value in (("issue", filters.issue), ("branch", filters.branch),
                                                     ("since", filters.since), ("until", filters.until)) if value]
    said += [f"--pr {n}" for n in filters.prs]
    if filters.repo and not all_repos:
        said.append(f"--repo {repo}" if repo else f"this repository ({filters.repo})")
    return ", ".join(said) or "anything"


def _where() -> tuple[Path | None, str | None]:
    """The work tree we are in (None outside one) and its repository id."""
    from costattr import gitctx
    from costattr.errors import NotAGitRepo

    try:
        git = gitctx.discover(Path.cwd())
    except NotAGitRepo:
        return None, None  # reports work anywhere; only per-repo config needs a repository
    return git.workdir, git.repo_id


def _repo_id(value: str) -> str:
    """`--repo`: owner/name as given, or the repository at a path (any repository, remote or not)."""
    from costattr import gitctx
    from costattr.errors import NotAGitRepo

    path = Path(value).expanduser()
    if path.exists():
        try:
            return gitctx.discover(path).repo_id
        except NotAGitRepo:
            pass
    return value


def announce(source: Ledger, read: ReadResult, rest: str) -> None:
    """What a reader of the ledger says first, on stderr: one-time events (a 0.1 ledger converted)
    and how many records failed validation and were set aside (`rest`: what is done with the others)."""
    from costattr.output import note

    for line in getattr(source, "notices", ()):
        note(f"costattr: {line}")
    if read.set_aside.count:
        note(f"costattr: {read.set_aside.summary()} (in {source.describe()}); {rest}")


def _workdir() -> Path | None:
    return _where()[0]
