"""`costattr install`: the post-commit and post-rewrite hooks, written to the common git dir so
every work tree of the repository shares them. A hook that was already there is kept and still runs.

post-commit records each commit's spend; post-rewrite tells the ledger which commit an amend or a
rebase turned each commit into, so the spend follows the commit (the post-commit hook also reads
an amend from the reflog, for setups that only run post-commit).
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from importlib.resources import files
from pathlib import Path

import click

from costattr.errors import CostattrError
from costattr.gitctx import GitContext, config_value

MARKER = "costattr-hook v1"
HOOK_NAME = "post-commit"
REWRITE_HOOK = "post-rewrite"
HOOKS: dict[str, tuple[str, str, str]] = {
    # hook: (what it does, costattr's arguments, how its stdin reaches costattr)
    HOOK_NAME: ("Records the AI-assistant spend behind each commit: `costattr upload --hook`.",
                "upload --hook", "feed() { :; }"),
    REWRITE_HOOK: ("Moves recorded spend to the commits an amend or rebase made (git gives old and new ids on stdin).",
                   'hook-impl post-rewrite "$@"', 'INPUT=$(cat)\nfeed() { printf \'%s\\n\' "$INPUT"; }'),
}


def render_hook(python: str | None, hook: str = HOOK_NAME) -> str:
    """The hook script; `python=None` gives the PATH-only script shipped in hooks/."""
    purpose, args, feed = HOOKS[hook]
    template = files("costattr").joinpath("resources/hook.tmpl").read_text(encoding="utf-8")
    return (template.replace("@INSTALL_PYTHON@", shlex.quote(python) if python else "''")
            .replace("@HOOK@", hook).replace("@PURPOSE@", purpose).replace("@ARGS@", args).replace("@FEED@", feed))


def hooks_dir(ctx: GitContext) -> Path:
    """The hooks directory git will use, refusing core.hooksPath (husky, lefthook own it)."""
    # Asked of git itself: pygit2 reads a different global config than git does under GIT_CONFIG_GLOBAL.
    configured = config_value("core.hooksPath", ctx.workdir) or ""
    if configured:
        raise CostattrError(
            f"core.hooksPath is set to {configured!r}: another tool (husky, lefthook, ...) manages git hooks here",
            hint=f"add this line to {configured.rstrip('/')}/{HOOK_NAME} (husky) or a post-commit job (lefthook): "
            "costattr upload --hook || true",
        )
    return ctx.common_dir / "hooks"


def install_hook(ctx: GitContext, force: bool = False) -> str:
    """Install the hooks; returns one line saying what was done."""
    directory = hooks_dir(ctx)
    targets = [(directory / hook, hook) for hook in HOOKS]
    if not force:
        # Every hook is checked before any is written: a refusal never leaves post-commit
        # installed without its post-rewrite.
        for target, hook in targets:
            _refuse_if_taken(target, hook)
    return "; ".join(_install_one(target, hook) for target, hook in targets)


def _refuse_if_taken(target: Path, hook: str) -> None:
    legacy = target.with_name(hook + ".legacy")
    if target.exists() and not is_ours(target) and legacy.exists():
        raise CostattrError(
            f"{target} is not costattr's and {legacy.name} already exists",
            hint="move one of them away, or rerun with --force to replace the current hook",
        )


def _install_one(target: Path, hook: str) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    legacy = target.with_name(hook + ".legacy")
    if target.exists() and not is_ours(target):
        os.replace(target, legacy)  # kept, and run by our hook before costattr (--force: replacing the kept one)
    target.write_text(render_hook(sys.executable, hook), encoding="utf-8")
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    kept = f" (the existing hook is kept as {legacy.name} and still runs)" if legacy.exists() else ""
    return f"installed {target}{kept}"


def uninstall_hook(ctx: GitContext) -> str:
    return "; ".join(_uninstall_one(hooks_dir(ctx) / hook, hook) for hook in HOOKS)


def _uninstall_one(target: Path, hook: str) -> str:
    if not target.exists() or not is_ours(target):
        return f"no costattr hook at {target}"
    target.unlink()
    legacy = target.with_name(hook + ".legacy")
    if legacy.exists():
        os.replace(legacy, target)
        return f"removed costattr's hook; restored the previous {target}"
    return f"removed {target}"


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


@click.command("install")
@click.option("--force", is_flag=True, help="Replace a previously kept hook.")
@click.option("--uninstall", is_flag=True, help="Remove costattr's hook (restores the one it kept).")
@click.option("--notes-refspec/--no-notes-refspec", default=None,
              help="Also make `git fetch` bring the costattr notes (git-notes ledger).")
@click.option("--yes", is_flag=True, help="Answer yes to questions (for scripts).")
def command(force: bool, uninstall: bool, notes_refspec: bool | None, yes: bool) -> None:
    """Install the post-commit hook that records spend on every commit (and the post-rewrite
    hook that keeps it on the right commit through amend and rebase).

    \b
    Example:
      costattr install
      costattr install --uninstall
    Using pre-commit instead? Add the `costattr-upload` hook and run
    `pre-commit install --hook-type post-commit`.
    """
    from costattr import gitctx

    ctx = gitctx.discover(Path.cwd())
    if uninstall:
        click.echo(uninstall_hook(ctx))
        return
    click.echo(install_hook(ctx, force=force))
    _maybe_notes_refspec(ctx, notes_refspec, yes)


def _maybe_notes_refspec(ctx: GitContext, wanted: bool | None, yes: bool) -> None:
    from costattr.config import load_config
    from costattr.ledger.select import backend_name

    if backend_name(load_config(ctx.workdir).ledger.backend) != "git-notes" and not wanted:
        return
    if wanted is None:
        wanted = yes or (sys.stdin.isatty() and click.confirm(
            "Make `git fetch` also fetch costattr's notes from origin?", default=True))
    if wanted:
        from costattr.ledger.git_notes import add_fetch_refspec

        click.echo(add_fetch_refspec(ctx.workdir))
