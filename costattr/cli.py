"""The command line: a thin edge. Each subcommand lives in costattr/commands/<name>.py and is
imported only when it runs, so `costattr --help` and the hook start fast."""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from typing import Any

import click

from costattr import __version__
from costattr.errors import EXIT_BUG, EXIT_ERROR, CostattrError
from costattr.secrets import env_secrets, redact

# name -> (module under costattr.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sessions": ("sessions", "Sessions and their exact cost, straight from the transcripts."),
    "upload": ("upload", "Record the spend behind this commit in the ledger (the hook's work)."),
    "base": ("base", "Print the running total to pass later as `upload --base`."),
    "backfill": ("backfill", "Attribute the spend already in the transcripts to past commits and issues."),
    "report": ("report", "Roll the ledger up by issue, PR, branch, session, model, day, ..."),
    "comment": ("comment", "Post or update the sticky cost comment on a GitHub pull request."),
    "install": ("install", "Install the post-commit hook in this repository."),
    "init": ("init", "Write a commented .costattr.toml for this repository."),
    "export": ("export", "Write the ledger out (CloudClawer's agent-costs file, or records as JSON Lines)."),
    "sync": ("sync", "Send the shared ledger what it lacks; exchange git notes with origin."),
    "pricing": ("pricing", "Show the price table, or update it from a LiteLLM price file."),
    "doctor": ("doctor", "Where costattr looks, what it finds, and what is misconfigured."),
    "trust": ("trust", "Let this repository's config choose the memory API your records and key go to."),
    "demo": ("demo", "Run the whole flow on throw-away demo data and print the issue report."),
}
# What installed hooks and the background publisher run; not in --help.
HIDDEN: dict[str, str] = {"hook-impl": "hook_impl", "publish-background": "publish_background"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = COMMANDS[cmd_name][0] if cmd_name in COMMANDS else HIDDEN.get(cmd_name)
        if name is None:
            return None
        module = importlib.import_module(f"costattr.commands.{name}")
        return module.command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing every command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="costattr")
@click.option("-v", "--verbose", is_flag=True, help="Say where and why lines were skipped; show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """costattr: what each issue and pull request cost in AI-assistant spend.

    \b
    Example:
      costattr demo                      # see it work on built-in data
      costattr install                   # record spend on every commit
      costattr report --by issue
    """
    ctx.obj = {"verbose": verbose}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI, mapping the one expected error type to exit 1 and anything else to exit 3."""
    from costattr.hookfast import run_from_main

    if run_from_main(sys.argv[1:] if argv is None else argv):
        return 0
    try:
        # standalone_mode=False makes click *return* a command's `ctx.exit(N)` code instead of
        # exiting with it: it must become the process's exit code (doctor's 1 "so CI can run it").
        code = cli.main(args=argv, prog_name="costattr", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except CostattrError as e:
        click.echo(f"costattr: {redact(str(e), *env_secrets())}", err=True)  # a message may quote a URL
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        fixable = environment_fault(e)
        if fixable is None:
            return _bug(argv)
        click.echo(f"costattr: {fixable}", err=True)
        return EXIT_ERROR
    except Exception:
        return _bug(argv)
    return code if isinstance(code, int) else 0


def environment_fault(e: OSError) -> str | None:
    """A file-system fault the user can fix (read-only or full disk, permissions), said with the
    fix; None for anything else (a bug)."""
    if e.errno not in _FIXABLE_ERRNOS:
        return None
    from costattr import paths

    where = e.filename or "a file"
    home = str(paths.costattr_home())
    under_home = isinstance(where, str) and (where == home or where.startswith(home.rstrip("/") + "/"))
    fix = (f"costattr keeps its state in {home}: make it writable, or point COSTATTR_HOME at a writable "
           "directory (COSTATTR_HOME=$HOME/.costattr costattr ...)") if under_home else \
        "check the path's permissions and free space"
    return f"cannot write {where}: {e.strerror or e}\n  hint: {fix}"


_FIXABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def _bug(argv: list[str] | None) -> int:
    from costattr.logs import log_exception

    where = log_exception("unexpected error")
    click.echo(f"costattr: unexpected error: {redact(repr(sys.exc_info()[1]), *env_secrets())}", err=True)
    if os.environ.get("COSTATTR_DEBUG") or "-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv):
        traceback.print_exc()
    # A log that could not be written says so rather than pointing at a file without the traceback.
    trail = f"the traceback is in {where}" if where.error is None else f"{where.note}; run again with -v to see it"
    click.echo(f"  this is a bug; {trail}", err=True)
    return EXIT_BUG


def verbose(ctx: click.Context | Any) -> bool:
    root = ctx.find_root() if isinstance(ctx, click.Context) else None
    return bool(root and root.obj and root.obj.get("verbose"))
