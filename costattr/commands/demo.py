"""`costattr demo`: the whole flow on built-in data, in a throw-away directory, in a few seconds.

The scenario itself (repository, transcripts, commits) is costattr.demo; this module only owns
the temporary directory and what the user reads.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import click

from costattr import demo

# Branch names are known in advance, so the live commit lines can be aligned before they exist.
_SUBJECT_WIDTH = 36


def _say(text: str = "", *, bold: bool = False) -> None:
    color = False if os.environ.get("NO_COLOR") else None  # None: click decides (a terminal or not)
    click.echo(click.style(text, bold=True) if bold else text, color=color)


class _CommitPrinter:
    """Prints each commit as the hook records it, under a heading per branch."""

    def __init__(self) -> None:
        self.branch: str | None = None

    def __call__(self, record: demo.CommitRecord) -> None:
        if record.branch != self.branch:
            self.branch = record.branch
            _say(f"   {record.branch}  ({record.tool})")
        subject = record.subject
        if len(subject) > _SUBJECT_WIDTH:
            subject = subject[: _SUBJECT_WIDTH - 1] + "…"
        _say(f"     {record.sha[:7]} {subject:<{_SUBJECT_WIDTH}}  hook: {record.hook_summary}")


def _show_backfill(summary: str) -> None:
    for line in summary.rstrip().splitlines():
        _say(f"   {line}".rstrip())
    _say()
    _say("2. The hook (costattr install), then three AI sessions on three issue branches. Each", bold=True)
    _say("   `git commit` fires the hook, which prints the new spend in USD and its cache hit rate:", bold=True)


def _show(result: demo.DemoResult) -> None:
    _say(f"   Pull request #{demo.PR_NUMBER} opened from {demo.JIRA_BRANCH}: "
         f"costattr upload --pr {demo.PR_NUMBER}")
    _say()
    _say("3. What each issue cost: costattr report --by issue", bold=True)
    _say(result.report.rstrip())
    _say("   (unattributed) is spend on main, before the typo branch existed: no issue to charge it to,")
    _say("   so it is shown apart instead of being dropped.")
    _say()
    _say(f"4. The PR bot's comment on #{demo.PR_NUMBER}: costattr comment --pr {demo.PR_NUMBER} --dry-run", bold=True)
    _say(result.comment.rstrip())
    _say()


def _explain_kept(dirs: demo.DemoDirs) -> None:
    q = shlex.quote
    _say(f"Kept the demo in {dirs.root}. To look around:", bold=True)
    _say(f"  cd {q(str(dirs.repo))}")
    _say(f"  export COSTATTR_HOME={q(str(dirs.state))} CLAUDE_CONFIG_DIR={q(str(dirs.claude))} "
         f"CODEX_HOME={q(str(dirs.codex))}")
    _say("  costattr report --by branch --tree")
    _say(f"Remove it with: rm -rf {q(str(dirs.root))}")


@click.command("demo")
@click.option("--keep", is_flag=True,
              help="Keep the temporary directory (repository, transcripts, ledger) and say where.")
def command(keep: bool) -> None:
    """Run the whole flow on built-in data: a throw-away repository, Claude Code and Codex
    sessions on three issue branches, the post-commit hook recording each commit, then the
    issue report and the pull-request comment.

    Everything happens in a temporary directory that is removed afterwards: your transcripts,
    ledger, shared backends and git settings are never read or written.

    \b
    Example:
      costattr demo
      costattr demo --keep      # then explore the repository and ledger it leaves
    """
    root = Path(tempfile.mkdtemp(prefix="costattr-demo-"))
    started = time.monotonic()
    done = False
    try:
        _say("costattr demo: the whole flow on made-up data, in a throw-away directory.", bold=True)
        _say("Your own transcripts, ledger and git settings are not touched.")
        _say()
        _say(f"1. A repository ({demo.REPO_NAME}, origin {demo.ORIGIN_URL}) with two days of history made", bold=True)
        _say(f"   before costattr ({demo.HISTORY_BRANCH}, merged and deleted): costattr backfill", bold=True)
        result = demo.run_demo(root, _CommitPrinter(), on_backfill=_show_backfill)
        _show(result)
        done = True
    finally:
        if keep:
            _explain_kept(demo.DemoDirs(root.resolve()))
        else:
            shutil.rmtree(root, ignore_errors=True)
            if not done:
                click.echo("costattr: the demo's directory was removed; `costattr demo --keep` keeps it "
                           "for a look", err=True)
    _say("Next: in a repository of yours, `costattr doctor` shows which transcripts costattr finds,")
    _say("and `costattr install` starts recording every commit. "
         f"(Demo ran in {time.monotonic() - started:.1f} s.)")
