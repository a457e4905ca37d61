"""`costattr comment`: post or update the sticky AI-cost comment on a GitHub pull request.

A cost comment must never fail a build: by default any failure is printed (and, in GitHub
Actions, raised as a warning annotation) and the command exits 0. `--strict` makes it exit 1.
Not saying which pull request (no --pr, no Actions event) is a usage mistake, not a failure to
post: it exits 1 either way.

Inside a repository only that repository's spend is considered (records whose `repo` is its
`GitContext.repo_id`, or the PR's repositories on GitHub); outside one, everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from costattr.errors import CostattrError

if TYPE_CHECKING:
    from costattr.ledger.records import AnyRecord

LEDGER_CHOICES = ("json", "memory-api", "git-notes")


@dataclass(frozen=True)
class PrScope:
    """What identifies the PR's spend in the ledger."""

    number: int
    head_branch: str | None
    base_branch: str | None
    commit_shas: tuple[str, ...]
    repos: tuple[str, ...]


@click.command("comment")
@click.option("--pr", "pr_number", type=click.IntRange(min=1),
              help="Pull request number (default: the one in the GitHub Actions event).")
@click.option("--repo", help="owner/name (default: GITHUB_REPOSITORY, else the origin remote here).")
@click.option("--dry-run", is_flag=True, help="Print the comment's Markdown instead of posting it; needs no token.")
@click.option("--strict", is_flag=True, help="Exit 1 when the comment cannot be posted (default: say why, exit 0).")
@click.option("--ledger", type=click.Choice(LEDGER_CHOICES), help="Read this backend instead of the configured one.")
def command(pr_number: int | None, repo: str | None, dry_run: bool, strict: bool, ledger: str | None) -> None:
    """Post or update one sticky comment with what the pull request cost in AI-assistant spend.

    The token comes from GITHUB_TOKEN or GH_TOKEN, the API from GITHUB_API_URL (GitHub
    Enterprise Server: https://HOST/api/v3). The comment is edited in place on every run and
    only when its figures changed; only a comment written by the token's own account is ever
    edited. All GitHub calls together get COSTATTR_GITHUB_TIMEOUT seconds (default 30).

    Inside a repository only that repository's spend counts. Budgets set in the repository's
    [budgets] are shown, over or within.

    \b
    Example:
      costattr comment --pr 412 --dry-run        # see the Markdown
      GITHUB_TOKEN=... costattr comment --pr 412 --repo acme/app
    """
    from costattr.github import NoPullRequest, resolve_pr_number

    env = os.environ
    try:
        number = resolve_pr_number(pr_number, env)
    except NoPullRequest:
        raise  # which PR is the user's to say: exit 1, whatever --strict
    except CostattrError as e:
        _failed(str(e), strict, env)
        if strict:
            raise
        return
    try:
        message = run(pr_number=number, repo=repo, dry_run=dry_run, ledger=ledger, env=env, cwd=Path.cwd())
    except CostattrError as e:
        _failed(str(e), strict, env)
        if strict:
            raise
        return
    except Exception as e:  # noqa: BLE001 - a bug here must not fail someone's build either
        if strict:
            raise
        from costattr.logs import log_exception

        where = log_exception("costattr comment")
        _failed(f"unexpected error: {e!r} (a bug; {where.note})", strict, env)
        return
    if message:
        click.echo(message)


def run(
    *, pr_number: int | None, repo: str | None, dry_run: bool, ledger: str | None, env: Mapping[str, str], cwd: Path
) -> str | None:
    """Do the work; returns the line to print (None when the Markdown itself was printed)."""
    from costattr import github as gh
    from costattr.config import load_config
    from costattr.ledger import open_configured
    from costattr.ledger.view import visible
    from costattr.output import note
    from costattr.pr_comment import (
        RepoScope,
        budget_status,
        price_table_dates,
        render_comment,
        select_pr_spend,
        unattributed_spend,
    )
    from costattr.report.budget import budget_lookup

    number = gh.resolve_pr_number(pr_number, env)
    found = gh.resolve_token(env)
    if found is None and not dry_run:
        raise gh.GitHubError(
            "no GitHub token: set GITHUB_TOKEN (or GH_TOKEN)",
            hint="in Actions add `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` to the step; "
            "`--dry-run` prints the comment without one",
        )
    deadline = gh.resolve_deadline(env) if found is not None else gh.DEFAULT_DEADLINE_S
    workdir, here = _where(cwd)
    cfg = load_config(workdir)

    client: gh.GitHubClient | None = None
    info: gh.PullRequestInfo | None = None
    try:
        if found is not None:
            token, token_var = found
            full_name = gh.resolve_repo(repo, env, cwd)
            slug: str | None = full_name
            client = gh.GitHubClient(token, gh.resolve_api_url(env), token_var=token_var, deadline_s=deadline,
                                     login=gh.resolve_login(env))
            info = client.pull_request(full_name, number)
            scope = PrScope(number, info.head_ref, info.base_ref, info.commit_shas, info.repos)
        else:
            slug = _slug_or_none(repo, env, cwd)

        if dry_run:
            # A preview may fall back to this machine's ledger when the shared one cannot be read
            # (said on stderr). A post never does: CI's local ledger is empty, and a comment
            # rewritten from it would say "no spend" over the true figures.
            from costattr.commands.report import read_ledger

            _source, read = read_ledger(cfg, workdir, ledger, strict=False)
        else:
            read = open_configured(cfg, workdir, ledger).read()
        if read.set_aside.count:
            note(f"costattr: {read.set_aside.summary()}")
        repos = scope.repos if found is not None else ((slug,) if slug else ())
        in_scope = RepoScope(here, repos)
        records, left_out = in_scope.select(read.records.values())
        if here is not None and left_out:
            note(f"costattr: counting only the spend of {in_scope.describe()}; {left_out:,} "
                 f"{'record' if left_out == 1 else 'records'} of other repositories in the ledger left out")
        if found is None:
            scope, head_from = _offline_scope(number, slug, env, cwd, records)
            note(
                f"costattr: no GitHub token, so PR #{number} is not read from GitHub: selecting spend "
                f"linked to #{number}" + (f" or made on branch {scope.head_branch} ({head_from})"
                                          if scope.head_branch else "")
                + " (set GITHUB_TOKEN to include the PR's commits)"
            )
        spends = visible(records)
        selected = select_pr_spend(spends, number, scope.head_branch, scope.commit_shas, base_branch=scope.base_branch)
        body = render_comment(
            selected,
            pr_number=number,
            head_branch=scope.head_branch,
            price_table_date=price_table_dates(selected),
            issue_url=lambda key: cfg.issue_url(key, slug),
            unattributed=unattributed_spend(spends, selected),
            budgets=budget_status(selected, spends, budget_lookup(cfg.budgets), head_branch=scope.head_branch,
                                  base_branch=scope.base_branch),
        )
        if dry_run:
            click.echo(body, nl=False)
            return None
        assert client is not None and info is not None
        # No spend and no comment yet: say nothing on the PR (a $0 comment on every PR written
        # without an assistant is noise), but an existing comment is kept up to date.
        result = client.upsert_comment(info, body, create=bool(selected))
    finally:
        if client is not None:
            client.close()
    if result.action == "skipped":
        return f"costattr: no AI-assistant spend found for PR #{number}; no comment posted"
    if result.action == "unchanged":
        return f"costattr: the cost comment on PR #{number} is already up to date: {result.url}"
    return f"costattr: {result.action} the cost comment on PR #{number}: {result.url}"


def _where(cwd: Path) -> tuple[Path | None, str | None]:
    """The work tree we are in and its repository id (`GitContext.repo_id`); (None, None) outside
    one: CI may run it without a checkout (memory-API ledger), and then defaults apply."""
    from costattr import gitctx
    from costattr.errors import NotAGitRepo

    try:
        git = gitctx.discover(cwd)
    except NotAGitRepo:
        return None, None
    return git.workdir, git.repo_id


def _slug_or_none(repo: str | None, env: Mapping[str, str], cwd: Path) -> str | None:
    from costattr import github as gh

    try:
        return gh.resolve_repo(repo, env, cwd)
    except CostattrError:
        return None


def _offline_scope(number: int, slug: str | None, env: Mapping[str, str], cwd: Path,
                   records: Iterable[AnyRecord]) -> tuple[PrScope, str]:
    """Without a token (dry run): the PR number, plus the head branch and where it came from:
    Actions' GITHUB_HEAD_REF, else the branch the ledger links to the PR, else the branch checked
    out here. The PR's commit list needs the API. `records` are already in the repository scope.

    The link comes before the checkout: after `upload --pr 7` on one branch and a commit on
    another, the checked-out branch is not #7's, and taking it would add that branch's spend to
    #7 (issue 12, "PR links drift")."""
    from costattr import gitctx
    from costattr.pr_comment import linked_branches

    repos = (slug,) if slug else ()
    base = env.get("GITHUB_BASE_REF") or None
    head = env.get("GITHUB_HEAD_REF") or None
    if head is not None:
        return PrScope(number, head, base, (), repos), "GITHUB_HEAD_REF"
    linked = linked_branches(records, number)
    if linked:
        # Several linked branches: the links alone select the spend; no one of them is the head.
        only = linked[0] if len(linked) == 1 else None
        return PrScope(number, only, base, (), repos), "linked by `upload --pr`"
    try:
        head = gitctx.discover(cwd).branch
    except CostattrError:
        head = None
    return PrScope(number, head, base, (), repos), "checked out here"


def _failed(message: str, strict: bool, env: Mapping[str, str]) -> None:
    """Say why the comment was not posted, loudly enough to be seen in a CI log."""
    if env.get("GITHUB_ACTIONS") == "true":
        # A workflow command on stdout becomes an annotation on the run's summary page.
        level = "error" if strict else "warning"
        click.echo(f"::{level} title=costattr comment::{_annotation(message)}")
    if not strict:
        click.echo(f"costattr: {message}", err=True)
        click.echo("costattr: the cost comment was not posted; not failing the build (--strict would)", err=True)


def _annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
