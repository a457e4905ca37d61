"""`costattr init`: write a commented .costattr.toml for this repository, then offer the hook.

tomli-w writes data but not comments, so the file is assembled table by table: comment lines
explaining a table, then tomli-w's rendering of that table's data. The result must load back
through load_config (tested), so what init writes is always a valid configuration.
"""

from __future__ import annotations

import importlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import click
import tomli_w

from costattr import gitctx, issue_keys
from costattr.config import CONFIG_FILE, LEDGER_ENV, PYPROJECT, LedgerBackend, load_config
from costattr.errors import CostattrError
from costattr.fsutil import atomic_write_bytes
from costattr.gitctx import GitContext
from costattr.secrets import strip_userinfo

INSTALL_MODULE = "costattr.commands.install"
_PLAIN_KEY = re.compile(r"^[A-Z][A-Z0-9]+-[0-9]+$")


@dataclass(frozen=True)
class Detected:
    """What init could tell about the repository without asking."""

    trackers: dict[str, str] = field(default_factory=dict)  # e.g. {"github": "https://github.com"}
    project_keys: tuple[str, ...] = ()  # Jira/Linear projects seen in local branch names
    linear_style: bool = False  # keys seen in Linear's lowercase `user/eng-1-title` shape
    backend: str = "json"
    ledger_extra: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# detection (pure apart from listing branches)


def forge_tracker(host: str | None, slug: str | None) -> dict[str, str]:
    """The issue tracker the origin's forge provides: GitHub, GitLab or Azure Boards."""
    if not host:
        return {}
    if "github" in host or host.startswith("ghe."):  # GitHub Enterprise Server is often ghe.<company>
        # A dotless host is an ~/.ssh/config alias (github-work): the forge is github.com itself.
        return {"github": f"https://{host}" if "." in host else "https://github.com"}
    if "gitlab" in host:
        return {"gitlab": f"https://{host}" if "." in host else "https://gitlab.com"}
    if host in ("dev.azure.com", "visualstudio.com") or host.endswith(".visualstudio.com"):
        parts = (slug or "").split("/")
        if len(parts) >= 2:
            return {"azure": f"https://dev.azure.com/{parts[0]}/{parts[1]}"}
    return {}


def guess_projects(branches: Iterable[str]) -> tuple[tuple[str, ...], bool]:
    """Project keys seen in branch names, most used first; and whether they were lowercase (Linear)."""
    counts: Counter[str] = Counter()
    lowercase = 0
    for b in branches:
        for key in issue_keys.branch_keys(b):
            if not _PLAIN_KEY.match(key):
                continue  # #123 / AB#1 belong to the forge, not to a project
            project = key.split("-", 1)[0]
            counts[project] += 1
            if f"{project}-" not in b:  # found only case-insensitively
                lowercase += 1
    ordered = tuple(p for p, _ in sorted(counts.items(), key=lambda pc: (-pc[1], pc[0])))
    return ordered, lowercase > 0 and lowercase * 2 >= sum(counts.values())


def ledger_choice(env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The backend already chosen through the environment (else json), with its non-secret settings."""
    backend = env.get(LEDGER_ENV, "").strip()
    if backend not in get_args(LedgerBackend):
        return "json", {}
    extra: dict[str, str] = {}
    if backend == "memory-api":
        for env_name, key in (("COSTATTR_API_URL", "api_url"), ("COSTATTR_API_USER", "api_user")):
            value = env.get(env_name, "").strip()
            if value:
                extra[key] = strip_userinfo(value)  # never a password in a committed file
    return backend, extra


def local_branches(ctx: GitContext) -> list[str]:
    try:
        out = gitctx.git(["for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/"], ctx.workdir)
    except CostattrError:
        out = ""  # a guess is optional: init still writes a file
    names = [line for line in out.splitlines() if line]
    if ctx.branch and ctx.branch not in names:
        names.append(ctx.branch)  # an unborn branch has no ref yet
    return names


def detect(ctx: GitContext) -> Detected:
    projects, linear = guess_projects(local_branches(ctx))
    backend, extra = ledger_choice(os.environ)
    return Detected(
        trackers=forge_tracker(ctx.forge_host, ctx.repo_slug),
        project_keys=projects,
        linear_style=linear,
        backend=backend,
        ledger_extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# rendering


def _table(name: str, data: dict[str, Any]) -> str:
    return tomli_w.dumps(_nest(name, data))


def _nest(dotted: str, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = data
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _comment(lines: Iterable[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def render(d: Detected) -> str:
    """The whole commented file. Pure, so tests can check it round-trips through load_config."""
    parts = [
        _comment([
            "costattr: what each issue and pull request cost in AI-assistant spend.",
            "Commit this file: teammates and CI then attribute spend the same way.",
            "Never put secrets here: the memory API key comes from COSTATTR_API_KEY or the OS keyring.",
        ]),
        _issues_section(d),
        _trackers_section(d),
        _ledger_section(d),
        _pricing_section(),
        _budgets_section(),
        _hook_section(),
    ]
    return "\n".join(parts)


def _issues_section(d: Detected) -> str:
    seen = ", ".join(d.project_keys) if d.project_keys else "none"
    return _comment([
        "[issues] How issue keys are read from branch names and commit messages:",
        "Jira/Linear PROJ-123, GitHub/GitLab #123 / 123-title / issue-123, Azure AB#123.",
        "project_keys: only these Jira/Linear projects count (empty = any key that looks right).",
        f"  Guessed from this repository's local branch names (found: {seen}).",
        "extra_patterns: regular expressions; group 1 (or the whole match) is an issue key.",
        "ignore_branches: glob patterns of branches that name no issue, e.g. \"release/*\".",
    ]) + _table("issues", {
        "project_keys": list(d.project_keys),
        "extra_patterns": [],
        "ignore_branches": [],
    })


def _trackers_section(d: Detected) -> str:
    examples = {
        "jira": "https://YOUR-SITE.atlassian.net",
        "linear": "https://linear.app/YOUR-WORKSPACE",
        "github": "https://github.com",
        "gitlab": "https://gitlab.com",
        "azure": "https://dev.azure.com/ORG/PROJECT",
    }
    # Jira vs Linear cannot be told from a key: list first the one the branch style points to.
    order = ["linear", "jira"] if d.linear_style else ["jira", "linear"]
    order += ["github", "gitlab", "azure"]
    commented = [f'{k} = "{examples[k]}"' for k in order if k not in d.trackers]
    found = ", ".join(d.trackers) if d.trackers else "none (no known forge in origin's URL)"
    return _comment([
        "[trackers] Base URLs, used to link issue keys in reports and PR comments.",
        f"Detected from the origin remote: {found}.",
    ]) + _table("trackers", dict(d.trackers)) + _comment(commented)


def _ledger_section(d: Detected) -> str:
    return _comment([
        "[ledger] Where spend is recorded.",
        "backend: \"json\" (this machine's ledger under COSTATTR_HOME, or at `path`),",
        "  \"memory-api\" (a shared server: set api_url and api_user; the key comes from",
        "  COSTATTR_API_KEY), or \"git-notes\" (travels with the repository in notes_ref).",
        "  The COSTATTR_LEDGER environment variable overrides it.",
    ]) + _table("ledger", {"backend": d.backend, **d.ledger_extra}) + _comment(
        [line for line in (
            'path = "~/costattr/ledger.sqlite"',
            None if "api_url" in d.ledger_extra else 'api_url = "https://memory.example.com"',
            None if "api_user" in d.ledger_extra else 'api_user = "you"',
            'api_path = "agent-costs"',
            'notes_ref = "refs/notes/costattr"',
        ) if line]
    )


def _pricing_section() -> str:
    return _comment([
        "[pricing] mode: \"auto\" (the tool's own recorded cost when there is one, else tokens x price),",
        "\"calculate\" (always tokens x price) or \"display\" (only recorded costs).",
        "discount: a negotiated discount off list prices, 0 to 1 (0.1 = 10% off).",
    ]) + _table("pricing", {"mode": "auto", "discount": 0})


def _budgets_section() -> str:
    return (
        _comment([
            "[budgets] Spending limits in USD, for reports and PR comments to compare against.",
            "day / week / month: limits for all spend in this repository.",
        ])
        + _table("budgets", {})
        + _comment(["day = 20", "week = 100", "month = 400"])
        + "\n"
        + _comment(["Per issue key (as reported: PROJ-123, #42, AB#7)."])
        + _table("budgets.issue", {})
        + _comment(['"PROJ-123" = 50'])
        + "\n"
        + _comment(["Per branch name."])
        + _table("budgets.branch", {})
        + _comment(['"feature/big-refactor" = 200'])
    )


def _hook_section() -> str:
    return _comment([
        "[hook] The post-commit hook. quiet = true stops it printing its one-line summary.",
    ]) + _table("hook", {"quiet": False})


# ---------------------------------------------------------------------------------------------
# the command


def _offer_install(ctx: GitContext, yes: bool) -> None:
    try:
        module = importlib.import_module(INSTALL_MODULE)
    except ModuleNotFoundError as e:
        if e.name != INSTALL_MODULE:
            raise  # a real import bug inside the installer must not hide as "not available"
        module = None
    install_hook = getattr(module, "install_hook", None) if module is not None else None
    if install_hook is None:
        click.echo("The hook installer is not available in this version; add the hook later: `costattr install`.")
        return
    if not yes:
        try:
            if not click.confirm("Install the post-commit hook now?", default=True):
                click.echo("Skipped; run `costattr install` when you want spend recorded on every commit.")
                return
        except click.exceptions.Abort:  # no terminal to answer on: the config is written, stop here
            click.echo("\nSkipped the hook; run `costattr install` to add it.")
            return
    # force=False: init's --force is about the config file; replacing a hook is `costattr install --force`.
    try:
        message = install_hook(ctx, False)
    except CostattrError as e:
        # The config is written and valid; say so, so the user does not rerun init for the hook.
        raise CostattrError(f"{CONFIG_FILE} was written, but the hook was not installed: {e.message}", e.hint) from e
    if message:
        click.echo(message)


def _pyproject_note(ctx: GitContext) -> str | None:
    pyproject = ctx.workdir / PYPROJECT
    try:
        if pyproject.is_file() and "[tool.costattr" in pyproject.read_text(encoding="utf-8", errors="replace"):
            return f"note: {CONFIG_FILE} takes precedence over [tool.costattr] in {PYPROJECT}, which is now ignored"
    except OSError:
        pass
    return None


@click.command("init")
@click.option("-y", "--yes", is_flag=True, help="Install the hook without asking.")
@click.option("--force", is_flag=True, help=f"Overwrite an existing {CONFIG_FILE}.")
@click.option("--no-install", is_flag=True, help="Only write the configuration; do not offer the hook.")
def command(yes: bool, force: bool, no_install: bool) -> None:
    """Write a commented .costattr.toml for this repository, then offer to install the hook.

    The tracker is detected from the origin remote (GitHub, GitLab, Azure) and Jira/Linear project
    keys are guessed from local branch names; edit the file to taste and commit it.

    \b
    Example:
      costattr init
      costattr init --yes            # and install the post-commit hook
      costattr init --force --no-install
    """
    ctx = gitctx.discover()
    target = ctx.workdir / CONFIG_FILE
    if target.exists() and not force:
        raise CostattrError(
            f"{target} already exists",
            hint="edit it, or run `costattr init --force` to replace it with a fresh commented one",
        )
    detected = detect(ctx)
    atomic_write_bytes(target, render(detected).encode("utf-8"))
    load_config(ctx.workdir)  # what we wrote must load; a failure here is a bug worth surfacing
    tracker = ", ".join(detected.trackers) or "none detected"
    keys = ", ".join(detected.project_keys) or "none found"
    click.echo(f"Wrote {target} (tracker: {tracker}; project keys: {keys}).")
    note = _pyproject_note(ctx)
    if note:
        click.echo(note)
    if not no_install:
        _offer_install(ctx, yes)
