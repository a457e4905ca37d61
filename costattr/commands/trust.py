"""`costattr trust`: let a repository's committed config choose the memory API that receives this
user's records and API key (like git's safe.directory). Without it a cloned repository could send
the key to any URL it likes on the first commit."""

from __future__ import annotations

import os
from pathlib import Path

import click

from costattr.errors import ConfigError


def _work_tree(repo: Path | None) -> Path:
    from costattr import gitctx

    return gitctx.discover(repo or Path.cwd()).workdir


def _list() -> None:
    from costattr.config import trust_path, trusted

    entries = trusted()
    if not entries:
        click.echo(f"no repository is trusted to choose a memory API ({trust_path()})")
        click.echo("COSTATTR_API_URL, when set, is your own choice and needs no trust")
        return
    for t in entries:
        click.echo(f"{t.repo}\t{t.url}\tuser {t.user}, file {t.path}, since {t.since}")


def _revoke(workdir: Path) -> None:
    from costattr.config import revoke_trust

    gone = revoke_trust(workdir)
    if not gone:
        click.echo(f"{workdir} was not trusted: nothing to revoke")
    for t in gone:
        click.echo(f"no longer trusted: {t.repo} for {t.url} (user {t.user}); commits there record locally only")


def _trust(workdir: Path) -> None:
    from costattr.config import add_trust, load_config
    from costattr.ledger.memory_api import ENV_URL
    from costattr.ledger.select import backend_name, memory_api_target, shared_settings

    cfg = load_config(workdir)
    if cfg.source is None or not cfg.ledger.api_url:
        raise ConfigError(f"{cfg.source or workdir} chooses no memory API (no `api_url` under [ledger]): "
                          "nothing to trust", hint="COSTATTR_API_URL, when set, needs no trust")
    target = memory_api_target(shared_settings(cfg), env_url=False)
    entry = add_trust(workdir, target.url, target.user, target.path)
    click.echo(f"trusted {entry.repo} for the memory API at {entry.url} (user {entry.user}, file {entry.path})")
    click.echo("commits here now send this machine's records there with your API key; `costattr sync` sends "
               "what was recorded meanwhile (else the next commit that records spend does)")
    if os.environ.get(ENV_URL, "").strip():
        click.echo(f"note: {ENV_URL} is set and wins over the config's URL while it is")
    elif backend_name(cfg.ledger.backend) != "memory-api":
        click.echo('note: the backend here is not memory-api: set backend = "memory-api" under [ledger] '
                   "(or COSTATTR_LEDGER=memory-api) to share")


@click.command("trust")
@click.option("--list", "list_", is_flag=True, help="List the repositories you trust, and for which memory API.")
@click.option("--revoke", is_flag=True, help="Stop trusting this repository (for every URL).")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path),
              help="The work tree (default: the one containing the current directory); with --revoke it "
                   "may be gone already.")
def command(list_: bool, revoke: bool, repo: Path | None) -> None:
    """Trust this repository's config to choose the memory API (`api_url`, `api_user`,
    `api_path` under [ledger]) that receives this machine's records and your API key.

    Until you do, the hook records locally only and says once how to trust; `sync`, `report`
    and `doctor` send nothing there either. The trust is for that URL, user and file: a config
    changed to another one is untrusted again. COSTATTR_API_URL in the environment is your own
    choice and needs no trust. Trust is kept in your own config (trust.toml in COSTATTR_HOME
    when it is set, else in the platform's config directory), never in the repository.

    \b
    Example:
      costattr trust
      costattr trust --list
      costattr trust --revoke
    """
    if list_ and revoke:
        raise click.UsageError("--list and --revoke do not go together")
    if list_:
        _list()
    elif revoke:
        _revoke(repo if repo is not None else _work_tree(None))
    else:
        _trust(_work_tree(repo))
