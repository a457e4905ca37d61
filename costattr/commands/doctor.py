"""`costattr doctor`: where costattr looks, what it finds, and what is misconfigured, with the fix.

Each check is a small function returning a Section of Findings; the command prints them (text or
JSON) and exits 1 when any finding is a failure, so CI can run it too. Doctor changes nothing
it inspects (only the scan's own parse cache is refreshed): the local ledger is opened read-only
(the store itself would convert a 0.1 file and move a damaged one aside), the memory API is read
once with a short deadline, and a key is shown as `set (N chars)`, none of its characters.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from costattr import __version__
from costattr.commands.install import HOOK_NAME, REWRITE_HOOK, is_ours
from costattr.config import Config
from costattr.errors import CostattrError
from costattr.gitctx import GitContext
from costattr.models import UsageEvent
from costattr.secrets import describe_secret

if TYPE_CHECKING:
    from costattr.ledger.base import Ledger

Status = Literal["ok", "info", "warn", "fail"]

REACH_TIMEOUT_S = 2.0  # a whole memory-API read, retries included: doctor must answer quickly
PRICE_TABLE_STALE_DAYS = 90
_MARKS: dict[Status, tuple[str, str | None]] = {
    "ok": ("ok  ", "green"), "info": ("info", None), "warn": ("warn", "yellow"), "fail": ("FAIL", "red"),
}


@dataclass
class Finding:
    status: Status
    text: str
    fix: str | None = None
    details: list[str] = field(default_factory=list)


@dataclass
class Section:
    title: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: Status, text: str, fix: str | None = None, details: Iterable[str] = ()) -> None:
        self.findings.append(Finding(status, text, fix, list(details)))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _count(sections: Iterable[Section], status: Status) -> int:
    return sum(f.status == status for s in sections for f in s.findings)


# ---------------------------------------------------------------------------------------------
# Configuration


def check_config(git: GitContext | None) -> tuple[Config, Section]:
    """The repository's config (defaults when it cannot be loaded: later checks still run)."""
    from costattr.config import CONFIG_FILE, load_config

    section = Section("Configuration")
    workdir = git.workdir if git else None
    try:
        cfg = load_config(workdir)
    except CostattrError as e:
        section.add("fail", e.message, e.hint)
        return Config(), section
    if cfg.source is not None:
        section.add("ok", f"read {cfg.source}")
    elif workdir is not None:
        section.add("info", f"no {CONFIG_FILE} here: defaults apply", "`costattr init` writes a commented one")
    else:
        section.add("info", "not in a git repository: defaults apply")
    return cfg, section


# ---------------------------------------------------------------------------------------------
# Transcripts


SKIPPED_SHOWN = 3  # unreadable lines listed without -v


def check_transcripts(git: GitContext | None, cfg: Config, verbose: bool = False) -> Section:
    from costattr.output import progress_bar
    from costattr.pipeline import priced_scan
    from costattr.scan import ScanCache

    section = Section("Transcripts")
    # doctor changes nothing: an existing parse cache speeds it up, a missing one is not created.
    with progress_bar("scanning transcripts") as bar:
        result, _table = priced_scan(mode=cfg.pricing.mode, discount=cfg.pricing.discount, progress=bar,
                                     use_cache=ScanCache().path.exists())
    for tool, roots in result.looked_in.items():
        _tool_finding(section, tool, roots, [f.size for f in result.files if f.tool == tool],
                      [ev for ev in result.events if ev.tool == tool])
    _unpriced_finding(section, result.events)
    if result.stats.skipped_lines:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(result.stats.skipped_reasons.items(), key=lambda kv: -kv[1]))
        where = result.stats.skipped_where
        shown = where if verbose else where[:SKIPPED_SHOWN]
        more = result.stats.skipped_lines - len(shown)
        details = shown + ([f"+{more} more (`costattr -v doctor` lists {'them' if verbose else 'up to 200'})"]
                           if more > 0 else [])
        section.add("info", f"{_plural(result.stats.skipped_lines, 'unreadable line')} skipped ({reasons})",
                    details=details)
    if git is not None:
        _work_tree_finding(section, git, result.events)
    return section


_ENV_FOR_TOOL = {"claude": "CLAUDE_CONFIG_DIR", "codex": "CODEX_HOME"}


def _tool_finding(section: Section, tool: str, roots: list[Path], sizes: list[int], events: list[UsageEvent]) -> None:
    where = [f"{root}{'' if root.is_dir() else ' (missing)'}" for root in roots]
    if not sizes:
        env = _ENV_FOR_TOOL.get(tool)
        fix = f"set {env} if {tool} keeps its transcripts elsewhere" if env else None
        section.add("warn", f"{tool}: no transcripts found", fix, [f"looked in {w}" for w in where])
        return
    sessions = {ev.session_id for ev in events}
    days = sorted(ev.ts[:10] for ev in events)
    span = f", {days[0]} to {days[-1]}" if days else ""
    text = f"{tool}: {_plural(len(sizes), 'file')} ({_size(sum(sizes))}), {_plural(len(sessions), 'session')}{span}"
    section.add("ok", text, details=[f"looked in {w}" for w in where])


def _unpriced_finding(section: Section, events: list[UsageEvent]) -> None:
    unpriced = Counter(ev.model or "(no model recorded)" for ev in events if ev.cost is None)
    if unpriced:
        names = ", ".join(f"{m} ({n})" for m, n in unpriced.most_common(5))
        section.add("warn", f"{_plural(sum(unpriced.values()), 'request')} of models with no known price: {names}",
                    "`costattr pricing update` fetches newer prices; until then they are reported as unpriced")


def _work_tree_finding(section: Section, git: GitContext, events: list[UsageEvent]) -> None:
    from costattr.record import work_tree_filter

    here = work_tree_filter(git)
    sessions = {ev.session_id for ev in events if here(ev.cwd)}
    if sessions:
        section.add("ok", f"{_plural(len(sessions), 'session')} ran in this work tree ({git.workdir})")
    else:
        section.add("info", f"no session ran in this work tree ({git.workdir}) yet",
                    "start Claude Code or Codex inside it; the hook attributes their spend on each commit")


# ---------------------------------------------------------------------------------------------
# Ledger


def check_ledger(git: GitContext | None, cfg: Config) -> Section:
    from costattr.ledger.select import ENV_BACKEND, backend_name

    section = Section("Ledger")
    try:
        name = backend_name(cfg.ledger.backend)
    except CostattrError as e:
        section.add("fail", e.message, e.hint)
        return section
    chosen = ("COSTATTR_LEDGER" if os.environ.get(ENV_BACKEND, "").strip()
              else str(cfg.source) if cfg.source and "backend" in cfg.ledger.model_fields_set else "the default")
    section.add("info", f"backend: {name} (from {chosen})")
    store = _local_ledger(section, git, cfg)
    shared = None
    if name == "memory-api":
        shared = _memory_api(section, git, cfg)
    elif name == "git-notes":
        shared = _git_notes(section, git, cfg)
    else:
        _unused_api_key(section)
    if store is not None:
        try:
            _waiting(section, store, shared, git.repo_id if git else None)
        except sqlite3.DatabaseError as e:  # damage deeper in the file than the records read
            section.add("fail", f"local ledger {store.path} is damaged: {e}", _DAMAGED_FIX)
        finally:
            store.close()
    return section


_DAMAGED_FIX = ("the next commit (or `costattr upload`) moves it aside, byte for byte, and records this machine's "
                "spend into a fresh ledger")


def _local_ledger(section: Section, git: GitContext | None, cfg: Config) -> Any:
    """This machine's own ledger, which the hook always writes, whatever backend is shared.

    Opened read-only: a normal open converts a 0.1 ledger.json, creates tables in an empty file
    and moves a damaged file aside, and doctor only looks."""
    from costattr.ledger.migrate import MIGRATED_SUFFIX
    from costattr.ledger.store import LocalStore
    from costattr.record import local_store

    path = local_store(cfg, git.workdir if git else None).path
    legacy = path.with_suffix(".json")
    if legacy.is_file():
        section.add("info", f"a costattr 0.1 ledger waits at {legacy}",
                    f"the next commit (or `costattr upload`) converts it; it is kept as {legacy.name}{MIGRATED_SUFFIX}")
    if not path.is_file() or path.stat().st_size == 0:
        section.add("info", f"local ledger: none yet at {path}",
                    "it is created by the first commit after `costattr install` (or try `costattr demo`)")
        return None
    store = LocalStore(path, read_only=True)
    try:
        read = store.read()
    except CostattrError as e:  # a newer schema: refused, left untouched
        store.close()
        section.add("fail", e.message, e.hint)
        return None
    except sqlite3.DatabaseError as e:
        store.close()
        section.add("fail", f"local ledger {path} is damaged: {e}", _DAMAGED_FIX)
        return None
    sessions = len({r.session_id for r in read.records.values()})
    section.add("ok", f"local ledger: {_plural(len(read.records), 'record')} of {_plural(sessions, 'session')} "
                      f"in {path}")
    if read.set_aside.count:
        section.add("warn", f"local ledger: {read.set_aside.summary()}",
                    "they are left out of every figure; the rest of the ledger is in use",
                    details=read.set_aside.examples[:3])
    return store


def _api_settings(cfg: Config) -> dict[str, Any]:
    # shared_settings carries where the settings came from: the trust check needs it.
    from costattr.ledger.select import shared_settings

    settings = shared_settings(cfg)
    settings.setdefault("api_timeout", REACH_TIMEOUT_S)
    return settings


def _memory_api(section: Section, git: GitContext | None, cfg: Config) -> Ledger | None:
    from costattr.ledger.memory_api import ENV_KEY, RemoteAuthError
    from costattr.ledger.select import UntrustedBackend, open_backend

    key = os.environ.get(ENV_KEY, "").strip()
    if key:
        section.add("info", f"{ENV_KEY}: {describe_secret(key)}")
    try:
        ledger = open_backend("memory-api", git.workdir if git else None, _api_settings(cfg))
    except UntrustedBackend as e:  # not a fault: the user has not decided yet (nothing was sent)
        section.add("warn", e.message, e.hint)
        return None
    except CostattrError as e:
        section.add("fail", e.message, e.hint)
        return None
    _reach(section, ledger.describe(), ledger.read,
           lambda e: e.hint if isinstance(e, RemoteAuthError) else
           "check COSTATTR_API_URL and the network; meanwhile records wait in the local ledger and "
           "`costattr sync` sends them")
    return ledger


def _reach(section: Section, where: str, read: Callable[[], Any],
           fix_for: Callable[[CostattrError], str | None]) -> None:
    started = time.monotonic()
    try:
        found = read()
    except CostattrError as e:
        section.add("fail", f"unreachable: {e.message}", fix_for(e) or e.hint)
        return
    took = time.monotonic() - started
    section.add("ok", f"reachable: {_plural(len(found.records), 'record')} at {where} ({took:.2f} s)")
    if found.set_aside.count:
        section.add("warn", f"{where}: {found.set_aside.summary()}", "they are left out of every figure")


def _git_notes(section: Section, git: GitContext | None, cfg: Config) -> Ledger | None:
    from costattr.ledger.select import open_backend

    if git is None:
        section.add("fail", "the git-notes ledger lives in a repository, and this is not one",
                    "run costattr inside the repository's work tree")
        return None
    try:
        ledger = open_backend("git-notes", git.workdir, _api_settings(cfg))
    except CostattrError as e:
        section.add("fail", e.message, e.hint)
        return None
    _reach(section, ledger.describe(), ledger.read, lambda e: e.hint)
    if not any(cfg.ledger.notes_ref in spec for spec in _all_config_values("remote.origin.fetch", git.workdir)):
        section.add("warn", "`git fetch` does not bring costattr's notes from origin",
                    "`costattr install --notes-refspec` adds the refspec; `costattr sync` fetches, merges and pushes")
    return ledger


def _all_config_values(key: str, cwd: Path) -> list[str]:
    from costattr.gitctx import git as run_git

    try:
        return run_git(["config", "--get-all", key], cwd, timeout=10).splitlines()
    except CostattrError:
        return []


def _unused_api_key(section: Section) -> None:
    from costattr.ledger.memory_api import ENV_KEY

    key = os.environ.get(ENV_KEY, "").strip()
    if key:
        section.add("info", f"{ENV_KEY} is {describe_secret(key)} but the backend is json, so it is not used",
                    "export COSTATTR_LEDGER=memory-api (with COSTATTR_API_URL and COSTATTR_API_USER) to share")


def _waiting(section: Section, store: Any, shared: Ledger | None, repo: str | None) -> None:
    """Records the shared backend has not received, and records waiting for a backend no longer
    configured (an old URL, a backend switched away from)."""
    from costattr.ledger.publish import target_id, waiting

    current = None
    if shared is not None:
        # Counted from the mark, not from the targets table: a backend that was down since the
        # first commit has never received anything, so it has no row there yet.
        current = target_id(shared)
        n = waiting(store, shared, repo)
        if n:
            section.add("warn", f"{_plural(n, 'record')} waiting for {shared.label} ({shared.describe()})",
                        "`costattr sync` sends them once it answers")
    for target, label, n in store.targets():
        if target != current and n:
            name = target.rsplit("-", 1)[0]
            section.add("warn", f"{_plural(n, 'record')} waiting for {label} (not the backend configured here)",
                        f"`costattr sync --ledger {name}` sends them once it is configured again; "
                        f"`costattr sync --forget-target {target}` drops them (an old URL: the spend "
                        "stays in this machine's ledger)")


# ---------------------------------------------------------------------------------------------
# Hook


def check_hook(git: GitContext | None) -> Section:
    from costattr.gitctx import config_value

    section = Section("Hook")
    if git is None:
        section.add("info", "not in a git repository", "run `costattr doctor` inside a repository to check its hook")
        return section
    hooks_path = config_value("core.hooksPath", git.workdir)
    if hooks_path:
        _managed_hooks(section, git, hooks_path)
        return section
    hook = git.common_dir / "hooks" / HOOK_NAME
    if not hook.exists():
        section.add("warn", f"no {HOOK_NAME} hook in this repository: commits record nothing",
                    "`costattr install` (or the pre-commit hook `costattr-upload`, see the README)")
        return section
    _existing_hook(section, git, hook)
    if is_ours(hook):
        _rewrite_hook(section, hook.with_name(REWRITE_HOOK))
    return section


def _rewrite_hook(section: Section, hook: Path) -> None:
    """costattr 0.1 installed post-commit alone: without post-rewrite a rebase's spend stays
    shown on the commits it replaced (an amend is still read from the reflog)."""
    if hook.exists() and is_ours(hook) and os.access(hook, os.X_OK):
        return
    what = "is not costattr's" if hook.exists() and not is_ours(hook) else (
        "is not executable" if hook.exists() else "is missing")
    section.add("warn", f"the {REWRITE_HOOK} hook {what}: after a rebase, reports show spend on the old commits",
                f"`costattr install` again (it keeps an existing {REWRITE_HOOK} hook and runs it first)")


def _existing_hook(section: Section, git: GitContext, hook: Path) -> None:
    text = hook.read_text(encoding="utf-8", errors="replace")
    if not os.access(hook, os.X_OK):
        section.add("fail", f"{hook} is not executable: git skips it", f"chmod +x {hook}")
        return
    if is_ours(hook):
        _our_hook(section, hook, text)
    elif "pre-commit" in text and _mentions_costattr(git.workdir / ".pre-commit-config.yaml"):
        section.add("ok", f"pre-commit runs costattr-upload from {hook}")
    else:
        section.add("warn", f"{hook} exists but does not run costattr",
                    "`costattr install` keeps it (as post-commit.legacy) and runs it before costattr")
    legacy = hook.with_name(HOOK_NAME + ".legacy")
    if legacy.exists():
        section.add("info", f"the previous hook is kept as {legacy} and runs first")


def _our_hook(section: Section, hook: Path, text: str) -> None:
    python = next((line.split("=", 1)[1].strip("'\" ") for line in text.splitlines()
                   if line.startswith("INSTALL_PYTHON=")), "")
    if python and os.access(python, os.X_OK):
        section.add("ok", f"installed: {hook} (runs {python} -m costattr)")
    elif shutil.which("costattr"):
        section.add("ok", f"installed: {hook} (runs costattr from PATH)")
    else:
        section.add("fail", f"installed, but the Python it records ({python or 'none'}) is gone and costattr "
                            "is not on PATH: commits record nothing", "`costattr install` again from your environment")


def _managed_hooks(section: Section, git: GitContext, hooks_path: str) -> None:
    """husky, lefthook and friends own core.hooksPath: costattr must be one line of their hook."""
    hook = (git.workdir / hooks_path / HOOK_NAME) if not os.path.isabs(hooks_path) else Path(hooks_path) / HOOK_NAME
    candidates = [hook, *(git.workdir / name for name in ("lefthook.yml", ".lefthook.yml", "lefthook.yaml"))]
    if any(_mentions_costattr(p) for p in candidates):
        section.add("ok", f"core.hooksPath is {hooks_path!r}, and its {HOOK_NAME} hook runs costattr")
        return
    section.add("warn", f"core.hooksPath is {hooks_path!r} (husky, lefthook, ...) and no {HOOK_NAME} hook there "
                        "runs costattr", f"add `costattr upload --hook || true` to {hook} "
                        "(see examples/husky/post-commit and examples/lefthook.yml)")


def _mentions_costattr(path: Path) -> bool:
    try:
        return "costattr" in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Price table


def check_pricing(today: date | None = None) -> Section:
    from costattr.pricing import load_table, stored_table_path

    section = Section("Price table")
    table = load_table()
    stored = stored_table_path()
    if stored.exists() and table.origin == "embedded":
        section.add("warn", f"{stored} is unreadable or invalid: the embedded table is used instead",
                    f"`costattr pricing update`, or delete {stored}")
    age = _age_days(table.date, today or date.today())
    text = f"dated {table.date} ({table.origin}), {_plural(len(table.models), 'model')}"
    if age is not None and age > PRICE_TABLE_STALE_DAYS:
        section.add("warn", f"{text}: {age} days old", "`costattr pricing update` fetches current prices")
    else:
        section.add("ok", text)
    return section


def _age_days(table_date: str, today: date) -> int | None:
    try:
        return (today - date.fromisoformat(table_date[:10])).days
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# The command


def check_install() -> Section:
    from costattr import logs, paths

    section = Section("costattr")
    section.add("info", f"costattr {__version__} on Python {sys.version.split()[0]} ({sys.executable})")
    section.add("info", f"state (ledger, cache, log): {paths.costattr_home()}")
    log = logs.log_path()
    if log.is_file() and not log.is_symlink():
        # Where the hook writes what it could not print; the path is the useful part, not the text.
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(log.stat().st_mtime))
        section.add("info", f"costattr's log (errors the hook could not show): {log}, last written {last}")
    _state_files(section, paths.costattr_home())
    return section


def _state_files(section: Section, home: Path) -> None:
    """COSTATTR_HOME writable and private, and no symlink where costattr keeps a file: costattr
    never follows one (and leaves it there), so doctor names each, every time."""
    if not home.is_dir():
        return  # the first run creates it, 0700
    if not os.access(home, os.W_OK | os.X_OK):
        section.add("fail", f"{home} is not writable: commits record nothing",
                    "make it writable, or point COSTATTR_HOME at a writable directory")
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        section.add("warn", f"{home} is open to other users (mode {mode:o})",
                    f"chmod 700 {home} (costattr's next run does it)")
    links: list[str] = []
    loose: list[str] = []
    stack = [str(home)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        links.append(entry.path)
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    if stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o077:
                        loose.append(entry.path)
        except OSError as e:
            section.add("warn", f"cannot look inside {e.filename}: {e.strerror or e}")
    for link in sorted(links):
        section.add("warn", f"{link} is a symlink: costattr never follows one for its own files, so it is not used",
                    f"remove {link} (costattr left it as it is)")
    if loose:
        section.add("warn", f"{len(loose)} {'entry' if len(loose) == 1 else 'entries'} in {home} open to other users",
                    "chmod 600 the files and 700 the folders (costattr tightens its own when it next writes them)",
                    details=sorted(loose)[:5])


def run_checks(verbose: bool = False) -> list[Section]:
    from costattr import gitctx

    try:
        git: GitContext | None = gitctx.discover(Path.cwd())
    except CostattrError:
        git = None
    cfg, config = check_config(git)
    return [check_install(), check_transcripts(git, cfg, verbose), check_ledger(git, cfg), check_hook(git),
            check_pricing(), config]


def _print_text(sections: list[Section]) -> None:
    color = False if os.environ.get("NO_COLOR") else None
    for section in sections:
        click.echo(click.style(section.title, bold=True), color=color)
        for f in section.findings:
            mark, fg = _MARKS[f.status]
            click.echo(f"  {click.style(mark, fg=fg) if fg else mark}  {f.text}", color=color)
            for line in f.details:
                click.echo(f"          {line}", color=color)
            if f.fix:
                click.echo(f"          fix: {f.fix}", color=color)
    fails, warns = _count(sections, "fail"), _count(sections, "warn")
    summary = f"{_plural(fails, 'problem')}, {_plural(warns, 'warning')}" if fails or warns else "everything looks fine"
    click.echo(f"\n{summary}", color=color)


@click.command("doctor")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def command(ctx: click.Context, fmt: str) -> None:
    """Check where costattr looks for transcripts and what it finds there (per assistant: files,
    sessions, dates), the ledger backend and whether it answers, this repository's hook, the
    price table and the configuration. Every problem comes with its fix; secrets are masked.

    Exits 1 when something is broken (a FAIL line), so CI can run it.

    \b
    Example:
      costattr doctor
      costattr doctor --format json | jq '.sections[].findings[] | select(.status == "fail")'
    """
    from costattr.cli import verbose

    sections = run_checks(verbose(ctx))
    if fmt == "json":
        from costattr.output import echo_json

        echo_json({"sections": [asdict(s) for s in sections],
                   "problems": _count(sections, "fail")})
    else:
        _print_text(sections)
    if _count(sections, "fail"):
        ctx.exit(1)
