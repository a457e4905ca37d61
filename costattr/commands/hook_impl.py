"""`costattr hook-impl HOOK [ARGS]`: what the installed git hooks run (hidden, like pre-commit's).

post-commit is `costattr upload --hook`; post-rewrite reads git's `old new` lines from stdin and
writes rewrite records, so the spend recorded on an amended or rebased commit is shown on the
commit that replaced it. Like every hook path it never fails: errors are logged, one line is shown.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("hook-impl", hidden=True)
@click.option("--visible-failure", is_flag=True,
              help="Exit 1 when the spend was not recorded (pre-commit then shows Failed and the reason; "
                   "git ignores a post-commit hook's exit status, so the commit stands either way).")
@click.argument("hook", type=click.Choice(["post-commit", "post-rewrite"]))
@click.argument("args", nargs=-1)
def command(visible_failure: bool, hook: str, args: tuple[str, ...]) -> None:
    """Run the work of git hook HOOK (installed hooks call this)."""
    if hook == "post-commit":
        from costattr.commands.upload import record_for_hook

        if not record_for_hook() and visible_failure:
            raise SystemExit(1)
        return
    try:
        moved = post_rewrite(sys.stdin.read())
    except Exception as e:  # noqa: BLE001 - a hook never fails an amend or a rebase
        from costattr.errors import CostattrError
        from costattr.logs import log_exception

        where = log_exception("post-rewrite (hook)")
        reason = e.message if isinstance(e, CostattrError) else f"{type(e).__name__}: {e}"
        click.echo(f"costattr: rewritten commits not followed ({' '.join(reason.split())}); {where.note}",
                   err=True)
        return
    if moved:
        click.echo(f"costattr: the recorded spend of {moved} rewritten commit{'s' if moved != 1 else ''} "
                   "follows it to the new commit", err=True)


def post_rewrite(stdin: str) -> int:
    """Write rewrite records for git's `old new [extra]` lines; returns how many commits had spend."""
    import pygit2

    from costattr import gitctx, issue_keys
    from costattr.config import load_config
    from costattr.ledger.records import now_iso
    from costattr.record import local_store, rewrite_records, text

    pairs = [(w[0], w[1]) for w in (line.split() for line in stdin.splitlines()) if len(w) >= 2]
    if not pairs:
        return 0
    git = gitctx.discover(Path.cwd())
    cfg = load_config(git.workdir)
    repo = pygit2.Repository(str(git.git_dir))

    def message_of(sha: str) -> str | None:
        try:
            commit = repo[sha].peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return text(commit.raw_message.decode(commit.message_encoding or "utf-8", "replace"))

    def find_issues(branch: str | None, message: str | None) -> tuple[str | None, tuple[str, ...]]:
        refs = issue_keys.extract(branch, message, cfg.issues)
        return refs.primary, refs.related

    store = local_store(cfg, git.workdir)
    with store.write() as tx:
        records = rewrite_records(tx, git.repo_id, pairs, text(git.branch), message_of, find_issues, now_iso())
        tx.insert(records)
    return len({(r.old, r.new) for r in records})
