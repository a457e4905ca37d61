"""`costattr report` and `costattr export` over ledgers built by the real recording path: real git
repositories, real transcript lines, real `git commit` firing the installed post-commit hook (and
`costattr upload --pr N` where a user links a PR).

Golden files (tests/golden/report_*) pin the table, markdown, csv and tree output. Everything in
them is deterministic: transcript timestamps are fixed, commits carry fixed author and committer
dates (so their SHAs are the same on every run), and the price table's date is masked.
Regenerate them after an intended change with:

    UPDATE_GOLDEN=1 python -m pytest tests/test_report.py -q
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import spend, store_with
from click.testing import CliRunner, Result
from helpers_claude import append_claude, claude_line

from costattr.cli import cli
from costattr.ledger.records import BEFORE_BASE, AnyRecord, from_json
from costattr.ledger.store import STORE_NAME, LocalStore
from costattr.models import money
from costattr.report.rollup import GROUPINGS
from costattr.testing.gitrepo import clean_env, commit, git, make_repo
from costattr.testing.transcripts import CodexRolloutWriter

GOLDEN = Path(__file__).parent / "golden"
WIDTH = 80

# claude-sonnet-4-5 list prices per million tokens: input 3, output 15, 5m cache write 3.75, cache read 0.30
SONNET = "claude-sonnet-4-5-20250929"


def line_cost(inp: int = 10, out: int = 100, cw: int = 1000, cr: int = 5000) -> Decimal:
    return (inp * Decimal(3) + out * Decimal(15) + cw * Decimal("3.75") + cr * Decimal("0.30")) / 1_000_000


# ------------------------------------------------------------------------------------------------
# running the CLI


def upload(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`costattr upload ARGS` as a user runs it (`--pr N`): a separate process in the work tree."""
    proc = subprocess.run([sys.executable, "-m", "costattr", "upload", *args], cwd=cwd, capture_output=True,
                          text=True, check=False, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc


def install(repo: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "costattr", "install"], cwd=repo, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and "installed" in proc.stdout, proc.stderr


def hooked_commit(repo: Path, message: str, files: Mapping[str, str] | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """A real `git commit`, which fires the installed post-commit hook: (the new SHA, what the hook said)."""
    for rel, content in (files or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(content, encoding="utf-8")
    git(repo, "add", "-A", env=env)
    proc = subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", message],
                          capture_output=True, text=True, check=False, env=clean_env(env))
    assert proc.returncode == 0, proc.stderr
    # The hook never fails a commit, so a hook that broke would only say so here.
    assert "spend not recorded" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return git(repo, "rev-parse", "HEAD"), proc.stderr


ReportFn = Callable[..., Result]


@pytest.fixture
def cli_in(monkeypatch: pytest.MonkeyPatch) -> ReportFn:
    """`costattr ARGS` in-process (fast), run in `cwd` so the repository's config applies."""

    def run(cwd: Path, *args: str, env: dict[str, str | None] | None = None, ok: bool = True) -> Result:
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


@pytest.fixture
def report(cli_in: ReportFn) -> ReportFn:
    """`costattr report ARGS` in `cwd`, over the whole ledger (the golden world spans two
    repositories; `report` alone covers the one it runs in: see test_report_defaults_to_this_repository)."""
    def run(cwd: Path, *args: str, **kwargs: Any) -> Result:
        scope = () if "--repo" in args or "--this-repo" in args else ("--all-repos",)
        return cli_in(cwd, "report", *(a for a in args if a != "--this-repo"), *scope, **kwargs)

    return run


def report_json(report: ReportFn, cwd: Path, *args: str) -> dict[str, Any]:
    return json.loads(report(cwd, *args, "--format", "json").stdout)  # type: ignore[no-any-return]


def dec(value: float) -> Decimal:
    """A JSON money figure back into the exact Decimal it was written from."""
    return money(value)


def row_map(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in doc["rows"]}


def assert_adds_up(doc: dict[str, Any]) -> None:
    """Rows plus unattributed are the totals: cost exactly (Decimal), every token count too."""
    rows, un, tot = doc["rows"], doc["unattributed"], doc["totals"]
    assert sum((dec(r["cost_usd"]) for r in rows), Decimal(0)) + dec(un["cost_usd"]) == dec(tot["cost_usd"])
    for kind in ("input", "output", "cache_write", "cache_read"):
        assert sum(r["tokens"][kind] for r in rows) + un["tokens"][kind] == tot["tokens"][kind], kind


# ------------------------------------------------------------------------------------------------
# golden files


_PRICE_DATE = re.compile(r"as of \d{4}-\d{2}-\d{2}")


def normalise(text: str) -> str:
    # The price table's date moves with every `pricing update`; the figures are what is pinned.
    return _PRICE_DATE.sub("as of <PRICE-DATE>", text)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    text = normalise(text)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        return
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 python -m pytest tests/test_report.py"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates it):\n{text}"


def assert_fits(text: str, width: int = WIDTH) -> None:
    from rich.cells import cell_len

    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, f"lines wider than {width}: {too_wide}"


# ------------------------------------------------------------------------------------------------
# transcripts the fixtures write

LONG_BRANCH = "feature/PROJ-9-a-really-long-branch-name-for-the-width-test"
HAIKU = "claude-haiku-4-5-20251001"
UNKNOWN_MODEL = "mystery-model-1"
CODEX_SESSION = "019a7e2c-5b1d-7c40-9e8f-c0dec0dec0de"
_GIT_ENV_TO_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                    "GIT_PREFIX", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_NAMESPACE")
_SECRETS_TO_DROP = ("GITHUB_TOKEN", "GH_TOKEN", "COSTATTR_API_KEY", "COSTATTR_API_URL", "COSTATTR_API_USER",
                    "COSTATTR_LEDGER", "GITHUB_REPOSITORY", "GITHUB_EVENT_PATH", "GITHUB_API_URL")
FIXED_DATE = "2026-11-24T12:00:00+00:00"  # every commit's author and committer date: stable SHAs


def legacy_line(session: str, cwd: str, branch: str, ts: str, cost_usd: float, *, n: int) -> str:
    """An old Claude Code line (before 1.0.9) with the cost it recorded itself: authoritative spend."""
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": session,
        "version": "1.0.8", "gitBranch": branch, "type": "assistant", "uuid": f"legacy-{n}", "timestamp": ts,
        "requestId": f"req_legacy_{n:04d}", "costUSD": cost_usd,
        "message": {"id": f"msg_legacy_{n:04d}", "type": "message", "role": "assistant", "model": SONNET,
                    "content": [{"type": "text", "text": "ok"}],
                    "usage": {"input_tokens": 20, "output_tokens": 400, "cache_creation_input_tokens": 2000,
                              "cache_read_input_tokens": 8000}},
    }) + "\n"


BUDGETS_TOML = """\
[budgets]
day = 0.03

[budgets.issue]
"PROJ-7" = 0.02

[budgets.branch]
main = 1
"""


@dataclass(frozen=True)
class World:
    """The golden ledger and the two repositories it was recorded in."""

    app: Path
    api: Path
    ledger: Path
    shas: dict[str, str]


def _isolate(mp: pytest.MonkeyPatch, base: Path) -> dict[str, Path]:
    """conftest's isolation, for a module-scoped fixture (which cannot use the function-scoped one)."""
    home = base / "home"
    home.mkdir()
    dirs = {"costattr_home": base / "costattr-home", "claude": base / "claude", "codex": base / "codex"}
    for var in _GIT_ENV_TO_DROP + _SECRETS_TO_DROP:
        mp.delenv(var, raising=False)
    gitconfig = base / "gitconfig"
    gitconfig.write_text("[init]\n\tdefaultBranch = main\n[user]\n\tname = Test Dev\n\temail = dev@example.com\n")
    for var, value in {
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"), "COSTATTR_HOME": str(dirs["costattr_home"]),
        "CLAUDE_CONFIG_DIR": str(dirs["claude"]), "CODEX_HOME": str(dirs["codex"]),
        "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Test Dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE, "NO_COLOR": "1", "COLUMNS": str(WIDTH),
    }.items():
        mp.setenv(var, value)
    return dirs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Seven sessions over two repositories, two assistants and four days, recorded commit by commit
    by the installed hook.

    acme/app: PROJ-7 (two commits, PR 142, one line at 23:30Z for the time-zone edge), ENG-42 (an
    open branch: no commit yet), PROJ-9 on a branch name too long for 80 columns with an unknown
    model, main (no issue: unattributed by issue), #123 (a cost the tool recorded itself), ENG-50
    (Codex, PR 150). acme/api: PROJ-7 again, from another repository.
    """
    base = tmp_path_factory.mktemp("golden-world")
    with pytest.MonkeyPatch.context() as mp:
        dirs = _isolate(mp, base)
        projects = dirs["claude"] / "projects"
        app = make_repo(base / "app", origin="git@github.com:acme/app.git")
        (app / ".costattr.toml").write_text(BUDGETS_TOML)
        install(app)
        hooked_commit(app, "initial", {"README.md": "app\n"})
        a = str(app)
        shas: dict[str, str] = {}

        git(app, "checkout", "-q", "-b", "feature/PROJ-7-login")
        append_claude(projects, "s-login", [
            claude_line("s-login", a, "feature/PROJ-7-login", "2026-11-20T09:00:00.000Z"),
            claude_line("s-login", a, "feature/PROJ-7-login", "2026-11-20T09:20:00.000Z", out=300),
        ])
        shas["login"], said = hooked_commit(app, "Add login form", {"login.py": "form = 1\n"})
        assert f"costattr: {line_cost() + line_cost(out=300):.4f}" in said and "on PROJ-7" in said
        upload(app, "--pr", "142")

        append_claude(projects, "s-login", [
            claude_line("s-login", a, "feature/PROJ-7-login", "2026-11-20T23:30:00.000Z"),
        ])
        append_claude(projects, "s-cache", [
            claude_line("s-cache", a, "alice/eng-42-cache", "2026-11-21T08:00:00.000Z", cr=20000),
        ])
        shas["validate"], said = hooked_commit(app, "Validate login input (refs ENG-42)", {"login.py": "form = 2\n"})
        assert "left open on alice/eng-42-cache" in said  # ENG-42's branch has no commit yet

        git(app, "checkout", "-q", "main")
        git(app, "checkout", "-q", "-b", LONG_BRANCH)
        append_claude(projects, "s-long", [
            claude_line("s-long", a, LONG_BRANCH, "2026-11-21T10:00:00.000Z", out=2000),
            claude_line("s-long", a, LONG_BRANCH, "2026-11-21T10:30:00.000Z", model=UNKNOWN_MODEL),
        ])
        shas["long"], _ = hooked_commit(app, "Long work", {"long.py": "x = 1\n"})

        git(app, "checkout", "-q", "main")
        append_claude(projects, "s-main", [
            claude_line("s-main", a, "main", "2026-11-22T10:00:00.000Z", model=HAIKU, out=1000),
        ])
        shas["deps"], _ = hooked_commit(app, "chore: bump deps", {"deps.txt": "1\n"})

        git(app, "checkout", "-q", "-b", "123-crash-on-start")
        append_claude(projects, "s-legacy", [
            legacy_line("s-legacy", a, "123-crash-on-start", "2026-11-22T12:00:00.000Z", 0.5, n=1),
        ])
        shas["crash"], _ = hooked_commit(app, "Fix crash on start", {"main.py": "ok = True\n"})

        git(app, "checkout", "-q", "main")
        git(app, "checkout", "-q", "-b", "ENG-50-refactor")
        codex = CodexRolloutWriter(dirs["codex"], CODEX_SESSION, a, "ENG-50-refactor",
                                   start=datetime(2026, 11, 23, 9, 0, tzinfo=UTC), seed=7)
        codex.turn()
        codex.token_count()
        codex.tool_call()
        codex.token_count(input=20000, cached=15000, output=500, reasoning=200)
        codex.close()
        shas["refactor"], _ = hooked_commit(app, "Refactor the session store", {"store.py": "s = 1\n"})
        # `--pr` links the sessions with spend on the checked-out branch only: the Codex session.
        upload(app, "--pr", "150")

        api = make_repo(base / "api", origin="git@github.com:acme/api.git")
        install(api)
        hooked_commit(api, "initial", {"README.md": "api\n"})
        git(api, "checkout", "-q", "-b", "PROJ-7-api")
        append_claude(projects, "s-api", [claude_line("s-api", str(api), "PROJ-7-api", "2026-11-23T15:00:00.000Z")])
        shas["api"], said = hooked_commit(api, "Login endpoint", {"api.py": "login = 1\n"})
        assert f"costattr: {line_cost():.4f} (83.2%) on PROJ-7" in said

        ledger = dirs["costattr_home"] / STORE_NAME
        assert ledger.is_file()
    # the environment is restored here: tests see only their own (conftest's isolation)
    return World(app=app, api=api, ledger=ledger, shas=shas)


def copy_store(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite ledger (its WAL included), through SQLite's own backup."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@pytest.fixture
def golden(world: World, env_dirs: dict[str, Path]) -> World:
    """This test's own copy of the golden ledger, where `costattr report` reads it."""
    copy_store(world.ledger, env_dirs["costattr_home"] / STORE_NAME)
    return world


def store_records(env_dirs: dict[str, Path]) -> dict[str, AnyRecord]:
    with LocalStore(env_dirs["costattr_home"] / STORE_NAME) as store:
        read = store.read()
    assert read.set_aside.count == 0, read.set_aside.summary()
    return read.records


# ------------------------------------------------------------------------------------------------
# the golden ledger itself is what the test means it to be


def test_commits_are_reproducible(golden: World) -> None:
    """The goldens name commits: fixed dates make their SHAs the same on every run and machine."""
    assert golden.shas["login"] == git(golden.app, "rev-parse", "feature/PROJ-7-login~1")
    assert len(set(golden.shas.values())) == len(golden.shas)


EXPECTED_KEYS: dict[str, set[str]] = {
    "issue": {"PROJ-7", "ENG-42", "PROJ-9", "#123", "ENG-50"},
    "pr": {"#142", "#150"},
    "branch": {"feature/PROJ-7-login", "alice/eng-42-cache", LONG_BRANCH, "main", "123-crash-on-start",
               "ENG-50-refactor", "PROJ-7-api"},
    "session": {"s-login", "s-cache", "s-long", "s-main", "s-legacy", CODEX_SESSION, "s-api"},
    "model": {SONNET, UNKNOWN_MODEL, HAIKU, "gpt-5.1-codex"},
    "day": {"2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"},
    "week": {"2026-11-16 (W47)", "2026-11-23 (W48)"},
    "month": {"2026-11"},
    "author": {"Test Dev"},
    "repo": {"acme/app", "acme/api"},
    "tool": {"claude", "codex"},
}


@pytest.mark.parametrize("by", GROUPINGS)
def test_each_grouping_has_its_keys_and_adds_up(by: str, golden: World, report: ReportFn) -> None:
    doc = report_json(report, golden.app, "--by", by, "--tz", "UTC")
    assert doc["by"] == by
    expected = {
        **EXPECTED_KEYS,
        "commit": {sha for name, sha in golden.shas.items()},
        "host": {socket.gethostname()},
    }[by]
    assert {r["key"] for r in doc["rows"]} == expected
    assert_adds_up(doc)
    # Days, weeks and months in time order; the rest costliest first.
    if by in ("day", "week", "month"):
        keys = [r["key"] for r in doc["rows"]]
        assert keys == sorted(keys)
    else:
        costs = [dec(r["cost_usd"]) for r in doc["rows"]]
        assert costs == sorted(costs, reverse=True)


def test_totals_do_not_depend_on_the_grouping(golden: World, report: ReportFn) -> None:
    totals = {by: report_json(report, golden.app, "--by", by)["totals"] for by in GROUPINGS}
    first = totals["issue"]
    for by, tot in totals.items():
        assert dec(tot["cost_usd"]) == dec(first["cost_usd"]), by
        assert tot["tokens"] == first["tokens"], by
        assert tot["requests"] == first["requests"] == 11, by
        assert tot["sessions"] == 7, by


def test_unattributed_is_what_has_no_key(golden: World, report: ReportFn) -> None:
    by_issue = report_json(report, golden.app, "--by", "issue")
    # main has no issue key: its spend (the haiku request) stays visible, not dropped
    assert by_issue["unattributed"]["requests"] == 1 and by_issue["unattributed"]["sessions"] == 1
    by_commit = report_json(report, golden.app, "--by", "commit")
    # ENG-42's branch has no commit yet: its spend waits in an open record
    assert by_commit["unattributed"]["requests"] == 1
    assert by_commit["unattributed"]["tokens"]["cache_read"] == 20000
    by_pr = report_json(report, golden.app, "--by", "pr")
    assert {r["key"]: r["requests"] for r in by_pr["rows"]} == {"#142": 3, "#150": 2}
    for doc in (report_json(report, golden.app, "--by", by) for by in ("session", "repo", "tool", "day")):
        assert doc["unattributed"]["cost_usd"] == 0 and doc["unattributed"]["requests"] == 0


# ------------------------------------------------------------------------------------------------
# the JSON contract (the hook issue's `--by issue --format json`)


def test_by_issue_json_contract(golden: World, report: ReportFn) -> None:
    doc = report_json(report, golden.app, "--by", "issue", "--tz", "UTC")
    assert set(doc) >= {"by", "rows", "totals", "unattributed"}
    assert doc["by"] == "issue"
    for row in doc["rows"]:
        assert {"key", "cost_usd", "tokens", "cache_pct", "sessions", "commits", "prs", "first_ts", "last_ts",
                "duration_s"} <= set(row)
        assert isinstance(row["key"], str) and isinstance(row["cost_usd"], float)
        assert {"input", "output", "cache_write", "cache_read"} <= set(row["tokens"])
        assert all(isinstance(v, int) for v in row["tokens"].values())
        assert isinstance(row["sessions"], int) and isinstance(row["cache_pct"], float)
        assert isinstance(row["commits"], list) and all(re.fullmatch(r"[0-9a-f]{40}", c) for c in row["commits"])
        assert isinstance(row["prs"], list) and all(isinstance(p, int) for p in row["prs"])
    assert {"cost_usd", "tokens"} <= set(doc["unattributed"])
    assert {"cost_usd", "tokens", "sessions"} <= set(doc["totals"])

    rows = row_map(doc)
    proj7 = rows["PROJ-7"]
    # three s-login lines in acme/app (one with 300 output tokens) and one s-api line in acme/api
    assert dec(proj7["cost_usd"]) == 3 * line_cost() + line_cost(out=300)
    assert proj7["sessions"] == 2
    assert proj7["commits"] == [golden.shas["login"], golden.shas["validate"], golden.shas["api"]]
    assert proj7["prs"] == [142]
    assert proj7["tokens"] == {"input": 40, "output": 600, "cache_write": 4000, "cache_read": 20000,
                               "cache_write_5m": 4000, "cache_write_1h": 0, "reasoning": 0}
    assert proj7["cache_pct"] == 83.2
    assert proj7["first_ts"] == "2026-11-20T09:00:00.000Z" and proj7["last_ts"] == "2026-11-23T15:00:00.000Z"
    assert proj7["related"] == ["ENG-42"]  # named in a commit message: listed, never summed twice
    assert proj7["estimated"] is True and proj7["over_budget"] is True and proj7["budget_usd"] == 0.02

    assert rows["ENG-42"]["commits"] == [] and dec(rows["ENG-42"]["cost_usd"]) == line_cost(cr=20000)
    assert rows["PROJ-9"]["unpriced_requests"] == 1  # the unknown model: reported, never a silent $0
    assert "unpriced_requests" not in rows["PROJ-7"]
    assert doc["totals"]["unpriced_requests"] == 1
    assert dec(rows["#123"]["cost_usd"]) == Decimal("0.5") and rows["#123"]["estimated"] is False
    assert rows["ENG-50"]["prs"] == [150]
    assert_adds_up(doc)


def test_by_session_rows_are_keyed_by_session_id(golden: World, report: ReportFn) -> None:
    doc = report_json(report, golden.app, "--by", "session")
    rows = row_map(doc)
    assert rows["s-login"]["sessions"] == 1 and len(rows["s-login"]["commits"]) == 2
    assert dec(rows["s-login"]["cost_usd"]) == 2 * line_cost() + line_cost(out=300)
    assert rows["s-login"]["duration_s"] == 14 * 3600 + 30 * 60  # 09:00 -> 23:30


# ------------------------------------------------------------------------------------------------
# formats: golden files


@pytest.mark.parametrize(("name", "args"), [
    ("report_issue_table.txt", ["--by", "issue", "--tz", "UTC"]),
    ("report_branch_table.txt", ["--by", "branch", "--tz", "UTC"]),
    ("report_commit_table.txt", ["--by", "commit", "--tz", "UTC"]),
    ("report_model_table.txt", ["--by", "model", "--tz", "UTC"]),
    ("report_day_berlin_table.txt", ["--by", "day", "--tz", "Europe/Berlin"]),
    ("report_issue_top2_table.txt", ["--by", "issue", "--top", "2", "--tz", "UTC"]),
    ("report_issue_tree.txt", ["--by", "issue", "--tree", "--tz", "UTC"]),
    ("report_day_tree.txt", ["--by", "day", "--tree", "--tz", "UTC"]),
    ("report_issue.md", ["--by", "issue", "--format", "markdown", "--tz", "UTC"]),
    ("report_pr.md", ["--by", "pr", "--format", "markdown", "--tz", "UTC"]),
    ("report_issue.csv", ["--by", "issue", "--format", "csv"]),
    ("report_branch.csv", ["--by", "branch", "--format", "csv"]),
])
def test_golden(name: str, args: list[str], golden: World, report: ReportFn) -> None:
    out = report(golden.app, *args).stdout
    if name.endswith(".txt"):  # terminal output; markdown and csv are for pasting, not for a terminal
        assert_fits(out)
    assert_golden(name, out)


@pytest.mark.parametrize(("name", "args"), [
    ("report_issue_table_160.txt", ["--by", "issue", "--tz", "UTC"]),
    ("report_branch_table_160.txt", ["--by", "branch", "--tz", "UTC"]),
    ("report_commit_table_160.txt", ["--by", "commit", "--tz", "UTC"]),
    ("report_session_table_160.txt", ["--by", "session", "--tz", "UTC"]),
    ("report_issue_tree_160.txt", ["--by", "issue", "--tree", "--tz", "UTC"]),
])
def test_golden_at_160_columns(name: str, args: list[str], golden: World, report: ReportFn) -> None:
    """A wide terminal gives its room to the names: whole SHAs, branch names, session ids."""
    out = report(golden.app, *args, env={"COLUMNS": "160"}).stdout
    assert_fits(out, 160)
    assert_golden(name, out)
    if "commit" in name:
        assert all(sha in out for sha in golden.shas.values())  # no 24-character prefix and an ellipsis


@pytest.mark.parametrize("by", GROUPINGS)
def test_table_fits_80_columns_and_keeps_every_figure(by: str, golden: World, report: ReportFn) -> None:
    out = report(golden.app, "--by", by).stdout
    assert_fits(out)
    header = out.splitlines()[0]
    # every column heading whole: rich never had to squeeze the figures to make room for a key
    assert header.split()[1:] == ["Cost", "Tokens", "Cache", "Sess", "Cmts", "Last", "Span"]
    total = next(line for line in out.splitlines() if line.startswith("Total"))
    assert "…" not in total


def test_table_marks_estimates_unpriced_and_over_budget(golden: World, report: ReportFn) -> None:
    out = report(golden.app, "--by", "issue", "--tz", "UTC").stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "~$0.03!" in lines["PROJ-7"]  # estimated ($0.0301), over its $0.02 budget
    assert " $0.50 " in lines["#123"] and "~" not in lines["#123"]  # recorded by the tool itself
    assert "+?" in lines["PROJ-9"]  # a request of an unknown model is not priced
    assert lines["(unattributed)"].split()[1].startswith("~$")
    caption = " ".join(out.split())  # the footnotes wrap at the table's width
    assert "! over budget" in caption and "+? 1 request of unknown models is not priced" in caption


def test_csv_is_one_row_per_key_plus_unattributed_and_total(golden: World, report: ReportFn) -> None:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(report(golden.app, "--by", "issue", "--format", "csv").stdout)))
    keys = [r["key"] for r in rows]
    assert keys[-2:] == ["(unattributed)", "(total)"]
    assert set(keys[:-2]) == EXPECTED_KEYS["issue"]
    total = sum((Decimal(r["cost_usd"]) for r in rows[:-1]), Decimal(0))
    assert total == Decimal(rows[-1]["cost_usd"])
    by_key = {r["key"]: r for r in rows}
    assert by_key["PROJ-7"]["over_budget"] == "True" and by_key["PROJ-7"]["budget_usd"] == "0.02"
    assert by_key["ENG-42"]["over_budget"] == ""  # no budget: nothing to be over
    assert by_key["PROJ-9"]["unpriced_requests"] == "1"


def test_markdown_is_inert_for_a_tracker(golden: World, report: ReportFn) -> None:
    out = report(golden.app, "--by", "issue", "--format", "markdown").stdout
    lines = out.splitlines()
    assert lines[0].startswith("| Issue | Cost |") and set(lines[1]) <= set("|-:")
    # A file: no zero-width space in `#123` (only the PR comment, which GitHub renders, needs one).
    assert any(line.startswith("| #123 |") for line in lines) and "\u200b" not in out
    assert any(line.startswith("| PROJ-7 | ~$0.03! |") for line in lines)
    assert any(line.startswith("| **Total** |") for line in lines)
    assert all(line.count("|") == 9 for line in lines[:-2])  # every row has every column


def test_tree_shares_of_the_parent(golden: World, report: ReportFn) -> None:
    out = report(golden.app, "--by", "issue", "--tree", "--tz", "UTC").stdout
    assert_fits(out)
    lines = out.splitlines()
    top = [line for line in lines if re.match(r"^\s*\S+\s+[\d.]+%  [^ │├└]", line) and "total" not in line]
    shares = [float(re.search(r"([\d.]+)%", line).group(1)) for line in top]  # type: ignore[union-attr]
    assert abs(sum(shares) - 100) < 0.5
    assert lines[-1].strip().endswith("100.0%  total")
    proj7 = lines.index(next(line for line in lines if line.endswith("  PROJ-7")))
    assert "session s-login" in lines[proj7 + 1]  # the costlier session first
    assert "session s-api" in out


def test_tree_says_what_each_record_is(env_dirs: dict[str, Path], tmp_path: Path, report: ReportFn) -> None:
    """A record with no commit is shown by its state; spend set aside by `--base` says so."""
    store_with([
        spend("s-base", state="unattributed", branch=None, note=BEFORE_BASE),
        spend("s-base", state="open", branch="feature/ABC-2-y", issue="ABC-2"),
        spend("s-base", commit="c0ffee" * 6 + "c0ff", branch="feature/ABC-2-y", issue="ABC-2", message="Pay"),
    ]).close()
    out = report(tmp_path, "--by", "session", "--tree").stdout
    assert "unattributed (no branch) (before --base)" in out
    assert "open feature/ABC-2-y" in out and "c0ffeec feature/ABC-2-y: Pay" in out


# ------------------------------------------------------------------------------------------------
# filters


def test_filters(golden: World, report: ReportFn) -> None:
    everything = report_json(report, golden.app, "--by", "issue")

    by_issue = report_json(report, golden.app, "--by", "branch", "--issue", "proj-7")  # case-insensitive
    assert set(row_map(by_issue)) == {"feature/PROJ-7-login", "PROJ-7-api"}
    assert dec(by_issue["totals"]["cost_usd"]) == dec(row_map(everything)["PROJ-7"]["cost_usd"])

    # a related key filters too: the commit that named ENG-42 in its message, and ENG-42's own branch
    related = report_json(report, golden.app, "--by", "commit", "--issue", "ENG-42")
    assert set(row_map(related)) == {golden.shas["validate"]} and related["unattributed"]["requests"] == 1

    by_branch = report_json(report, golden.app, "--by", "issue", "--branch", "feature/PROJ-7-login")
    assert set(row_map(by_branch)) == {"PROJ-7"}
    assert row_map(by_branch)["PROJ-7"]["commits"] == [golden.shas["login"], golden.shas["validate"]]

    by_repo = report_json(report, golden.app, "--by", "issue", "--repo", "acme/api")
    assert set(row_map(by_repo)) == {"PROJ-7"} and dec(by_repo["totals"]["cost_usd"]) == line_cost()

    by_pr = report_json(report, golden.app, "--by", "issue", "--pr", "150")
    assert set(row_map(by_pr)) == {"ENG-50"}

    nothing = report_json(report, golden.app, "--by", "issue", "--branch", "no-such-branch")
    assert nothing["rows"] == [] and nothing["totals"]["cost_usd"] == 0
    for doc in (by_issue, related, by_branch, by_repo, by_pr, nothing):
        assert_adds_up(doc)


def test_report_defaults_to_this_repository(golden: World, report: ReportFn) -> None:
    everywhere = report_json(report, golden.app, "--by", "repo")
    assert set(row_map(everywhere)) == {"acme/app", "acme/api"}
    here = report_json(report, golden.app, "--by", "repo", "--this-repo")
    assert set(row_map(here)) == {"acme/app"}
    by_path = report_json(report, golden.app, "--by", "repo", "--repo", str(golden.api))
    assert set(row_map(by_path)) == {"acme/api"}
    assert dec(by_path["totals"]["cost_usd"]) == dec(row_map(everywhere)["acme/api"]["cost_usd"])
    none = report(golden.app, "--by", "issue", "--issue", "NOPE-1", "--this-repo")
    assert "no spend matched --issue NOPE-1, this repository (acme/app)" in none.stderr


def test_since_until_are_inclusive_days(golden: World, report: ReportFn) -> None:
    one_day = report_json(report, golden.app, "--by", "day", "--since", "2026-11-21", "--until", "2026-11-21",
                          "--tz", "UTC")
    assert set(row_map(one_day)) == {"2026-11-21"}
    assert one_day["totals"]["requests"] == 3  # s-cache, s-long twice
    span = report_json(report, golden.app, "--by", "day", "--since", "2026-11-22", "--tz", "UTC")
    assert set(row_map(span)) == {"2026-11-22", "2026-11-23"}
    upto = report_json(report, golden.app, "--by", "day", "--until", "20261120", "--tz", "UTC")
    assert set(row_map(upto)) == {"2026-11-20"}


def test_top_folds_the_rest_and_still_adds_up(golden: World, report: ReportFn) -> None:
    full = report_json(report, golden.app, "--by", "branch")
    doc = report_json(report, golden.app, "--by", "branch", "--top", "2")
    assert [r["key"] for r in doc["rows"][:2]] == [r["key"] for r in full["rows"][:2]]
    assert doc["rows"][2]["key"] == f"({len(full['rows']) - 2} more)"
    assert len(doc["rows"]) == 3
    assert dec(doc["rows"][2]["cost_usd"]) == sum((dec(r["cost_usd"]) for r in full["rows"][2:]), Decimal(0))
    one = report_json(report, golden.app, "--by", "issue", "--top", "1")
    assert one["rows"][1]["key"] == "(4 more)" and one["rows"][1]["unpriced_requests"] == 1  # PROJ-9's
    assert_adds_up(one)
    assert {k: v for k, v in doc["totals"].items() if k != "rows"} == {
        k: v for k, v in full["totals"].items() if k != "rows"}
    assert_adds_up(doc)


def test_pr_link_stays_on_its_branch(env_dirs: dict[str, Path], tmp_path: Path, report: ReportFn) -> None:
    """`--pr N` links the checked-out branch's spend, now and later; a commit elsewhere never moves it."""
    repo = make_repo(tmp_path / "prs")
    install(repo)
    hooked_commit(repo, "initial")
    git(repo, "checkout", "-q", "-b", "PROJ-2-other")
    projects = env_dirs["claude"] / "projects"
    append_claude(projects, "s-other", [claude_line("s-other", str(repo), "PROJ-2-other", "2026-11-20T09:00:00.000Z")])
    git(repo, "checkout", "-q", "-b", "PROJ-3-pr")
    append_claude(projects, "s-pr", [claude_line("s-pr", str(repo), "PROJ-3-pr", "2026-11-20T10:00:00.000Z")])
    hooked_commit(repo, "the PR's work")
    assert "linked PR #7" in upload(repo, "--pr", "7").stdout

    def pr7() -> tuple[Decimal, int, Decimal]:
        doc = report_json(report, repo, "--by", "pr")
        assert_adds_up(doc)
        row = row_map(doc)["#7"]
        return dec(row["cost_usd"]), row["sessions"], dec(doc["unattributed"]["cost_usd"])

    assert pr7() == (line_cost(), 1, line_cost())  # s-other ran on PROJ-2-other: not PR 7's spend
    git(repo, "checkout", "-q", "PROJ-2-other")
    hooked_commit(repo, "the other branch's work")  # closes s-other's open record on its own branch
    assert pr7() == (line_cost(), 1, line_cost())
    git(repo, "checkout", "-q", "PROJ-3-pr")
    append_claude(projects, "s-late", [claude_line("s-late", str(repo), "PROJ-3-pr", "2026-11-20T11:00:00.000Z")])
    hooked_commit(repo, "more PR work")  # a session that spends on the PR's branch later joins the PR
    assert pr7() == (2 * line_cost(), 2, line_cost())


# ------------------------------------------------------------------------------------------------
# time zones (own ledger: two sessions just before midnight UTC)


@pytest.fixture
def late_night(env_dirs: dict[str, Path], tmp_path: Path) -> Path:
    """One request at 2026-11-20T23:30Z (Saturday 00:30 in Berlin) and one at 2026-11-30T23:30Z
    (1 December in Berlin), both on PROJ-1's branch."""
    repo = make_repo(tmp_path / "tz")
    commit(repo, "initial")
    git(repo, "checkout", "-q", "-b", "PROJ-1-clock")
    projects = env_dirs["claude"] / "projects"
    append_claude(projects, "s-nov20", [claude_line("s-nov20", str(repo), "PROJ-1-clock", "2026-11-20T23:30:00.000Z")])
    append_claude(projects, "s-nov30", [claude_line("s-nov30", str(repo), "PROJ-1-clock", "2026-11-30T23:30:00.000Z",
                                                    out=200)])
    install(repo)
    hooked_commit(repo, "clock")
    return repo


def _sessions_by_key(doc: dict[str, Any]) -> dict[str, int]:
    return {r["key"]: r["sessions"] for r in doc["rows"]}


def test_days_are_cut_in_the_users_time_zone(late_night: Path, report: ReportFn) -> None:
    def keys(by: str, tz: str) -> set[str]:
        return set(row_map(report_json(report, late_night, "--by", by, "--tz", tz)))

    assert keys("day", "UTC") == {"2026-11-20", "2026-11-30"}
    assert keys("day", "Europe/Berlin") == {"2026-11-21", "2026-12-01"}
    assert keys("month", "UTC") == {"2026-11"}
    assert keys("month", "Europe/Berlin") == {"2026-11", "2026-12"}
    assert keys("week", "UTC") == {"2026-11-16 (W47)", "2026-11-30 (W49)"}
    assert keys("week", "Europe/Berlin") == {"2026-11-16 (W47)", "2026-11-30 (W49)"}
    assert keys("day", "America/Los_Angeles") == {"2026-11-20", "2026-11-30"}
    # the table's "Last" column is the same day as the grouping
    table = report(late_night, "--by", "issue", "--tz", "Europe/Berlin").stdout
    assert "2026-12-01" in table and "2026-11-30" not in table


def test_since_until_in_the_users_time_zone(late_night: Path, report: ReportFn) -> None:
    def sessions(*args: str) -> set[str]:
        return set(row_map(report_json(report, late_night, "--by", "session", *args)))

    assert sessions("--since", "2026-11-21", "--until", "2026-11-21", "--tz", "Europe/Berlin") == {"s-nov20"}
    assert sessions("--since", "2026-11-21", "--until", "2026-11-21", "--tz", "UTC") == set()
    assert sessions("--until", "2026-11-20", "--tz", "UTC") == {"s-nov20"}  # the last day is included
    assert sessions("--until", "2026-11-20", "--tz", "Europe/Berlin") == set()
    assert sessions("--since", "2026-11-30", "--tz", "UTC") == {"s-nov30"}  # the first day is included
    assert sessions("--since", "2026-12-01", "--tz", "Europe/Berlin") == {"s-nov30"}
    assert sessions("--since", "2026-11-20", "--until", "2026-11-30", "--tz", "UTC") == {"s-nov20", "s-nov30"}


# One session, one commit, requests on both sides of midnight in UTC, Los Angeles (08:00Z),
# Kolkata (18:30Z) and Kathmandu (18:15Z); each with its own output count, so each has its own cost.
AROUND_MIDNIGHTS = [("2026-11-20T07:50:00.000Z", 100), ("2026-11-20T08:10:00.000Z", 200),
                    ("2026-11-20T18:10:00.000Z", 700), ("2026-11-20T18:20:00.000Z", 300),
                    ("2026-11-20T18:40:00.000Z", 400), ("2026-11-20T23:50:00.000Z", 500),
                    ("2026-11-21T00:10:00.000Z", 600)]


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Asia/Kathmandu"])
def test_a_session_across_midnight_splits_by_day(zone: str, env_dirs: dict[str, Path], tmp_path: Path,
                                                report: ReportFn) -> None:
    from zoneinfo import ZoneInfo

    repo = make_repo(tmp_path / "midnight")
    install(repo)
    git(repo, "checkout", "-q", "-b", "PROJ-1-clock")
    append_claude(env_dirs["claude"] / "projects", "s-night", [
        claude_line("s-night", str(repo), "PROJ-1-clock", ts, out=out) for ts, out in AROUND_MIDNIGHTS])
    hooked_commit(repo, "night work")
    truth: dict[str, Decimal] = {}
    for ts, out in AROUND_MIDNIGHTS:
        day = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(ZoneInfo(zone)).date().isoformat()
        truth[day] = truth.get(day, Decimal(0)) + line_cost(out=out)
    assert len(truth) == 2  # the premise: this session crosses midnight in this zone
    days = report_json(report, repo, "--by", "day", "--tz", zone)
    assert {k: dec(r["cost_usd"]) for k, r in row_map(days).items()} == truth
    assert_adds_up(days)
    for day, cost in truth.items():  # --since/--until take the same parts as the day rows
        one = report_json(report, repo, "--by", "issue", "--since", day, "--until", day, "--tz", zone)
        assert {k: dec(r["cost_usd"]) for k, r in row_map(one).items()} == {"PROJ-1": cost}


def test_default_time_zone_is_local(late_night: Path) -> None:
    def days(tz_env: str) -> set[str]:
        proc = subprocess.run([sys.executable, "-m", "costattr", "report", "--by", "day", "--format", "json"],
                              cwd=late_night, capture_output=True, text=True, check=True,
                              env={**os.environ, "TZ": tz_env})
        return {r["key"] for r in json.loads(proc.stdout)["rows"]}

    assert days("Europe/Berlin") == {"2026-11-21", "2026-12-01"}
    assert days("UTC") == {"2026-11-20", "2026-11-30"}


def test_unknown_time_zone_is_a_usage_error(late_night: Path, report: ReportFn) -> None:
    result = report(late_night, "--by", "day", "--tz", "Mars/Olympus", ok=False)
    assert result.exit_code == 2 and "unknown time zone" in result.output


# ------------------------------------------------------------------------------------------------
# budgets


def test_upload_warns_once_when_a_commit_pushes_an_issue_over_budget(
    env_dirs: dict[str, Path], tmp_path: Path, report: ReportFn
) -> None:
    repo = make_repo(tmp_path / "budget")
    (repo / ".costattr.toml").write_text('[budgets.issue]\n"proj-5" = 0.01\n')  # keys match case-insensitively
    install(repo)
    hooked_commit(repo, "initial", {"README.md": "x\n"})
    git(repo, "checkout", "-q", "-b", "feature/PROJ-5-pay")
    projects = env_dirs["claude"] / "projects"

    def step(ts: str) -> str:
        append_claude(projects, "s-pay", [claude_line("s-pay", str(repo), "feature/PROJ-5-pay", ts)])
        _sha, said = hooked_commit(repo, f"pay at {ts}")
        assert f"costattr: {line_cost():.4f} (83.2%) on PROJ-5" in said
        return said

    assert "budget" not in step("2026-11-20T09:00:00.000Z")  # $0.0068 of $0.01
    crossed = step("2026-11-20T10:00:00.000Z")  # $0.0136: over
    warnings = [line for line in crossed.splitlines() if "budget" in line]
    assert warnings == ["costattr: budget: issue PROJ-5 is now $0.0136, over its $0.0100 budget"]
    assert "budget" not in step("2026-11-20T11:00:00.000Z")  # still over: said once, not on every commit
    assert "budget" not in upload(repo).stderr  # the hook re-run on the same commit says nothing either
    amended = subprocess.run(["git", "-C", str(repo), "commit", "-q", "--amend", "--allow-empty", "-m", "pay, amended"],
                             capture_output=True, text=True, check=True, env=clean_env())
    assert "budget" not in amended.stderr  # nor does an amend, which only moves the spend to the new SHA

    doc = report_json(report, repo, "--by", "issue")
    row = row_map(doc)["PROJ-5"]
    assert row["over_budget"] is True and row["budget_usd"] == 0.01
    assert "PROJ-5" in next(line for line in report(repo, "--by", "issue").stdout.splitlines()
                            if "~$0.02!" in line)
    assert "| PROJ-5 | ~$0.02! |" in report(repo, "--by", "issue", "--format", "markdown").stdout
    assert ",0.01,True\n" in report(repo, "--by", "issue", "--format", "csv").stdout
    assert "~$0.02! 100.0%  PROJ-5" in report(repo, "--by", "issue", "--tree").stdout
    # other groupings carry no issue budget
    assert "over_budget" not in report_json(report, repo, "--by", "session")["rows"][0]


def test_budget_crossed_by_open_spend_is_not_said_again_when_it_closes(
    env_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """Spend on PROJ-5's branch recorded by a commit on main (open) already crossed the budget; the
    commit on PROJ-5's branch that closes it adds only its own new request."""
    repo = make_repo(tmp_path / "budget-open")
    (repo / ".costattr.toml").write_text('[budgets.issue]\n"PROJ-5" = 0.01\n[budgets.branch]\n"feature/PROJ-5-pay" = 0.01\n')
    install(repo)
    hooked_commit(repo, "initial", {"README.md": "x\n"})
    git(repo, "branch", "feature/PROJ-5-pay")
    projects = env_dirs["claude"] / "projects"
    append_claude(projects, "s-pay", [
        claude_line("s-pay", str(repo), "feature/PROJ-5-pay", "2026-11-20T09:00:00.000Z"),
        claude_line("s-pay", str(repo), "feature/PROJ-5-pay", "2026-11-20T09:10:00.000Z"),
    ])
    _sha, said = hooked_commit(repo, "hotfix on main")  # the branch's spend waits in an open record
    assert f"{2 * line_cost():.4f} left open on feature/PROJ-5-pay" in said
    assert [line for line in said.splitlines() if "budget" in line] == [
        "costattr: budget: issue PROJ-5 is now $0.0136, over its $0.0100 budget",
        "costattr: budget: branch feature/PROJ-5-pay is now $0.0136, over its $0.0100 budget",
    ]
    git(repo, "checkout", "-q", "feature/PROJ-5-pay")
    append_claude(projects, "s-pay", [claude_line("s-pay", str(repo), "feature/PROJ-5-pay", "2026-11-20T10:00:00.000Z")])
    _sha, said = hooked_commit(repo, "pay")
    assert f"costattr: {3 * line_cost():.4f} (83.2%) on PROJ-5" in said  # the open record closed into it
    assert "budget" not in said  # over since the hotfix: said then, once


def test_budget_counts_spend_an_amend_moved_onto_the_issue(env_dirs: dict[str, Path], tmp_path: Path,
                                                           report: ReportFn) -> None:
    repo = make_repo(tmp_path / "budget-amend")
    (repo / ".costattr.toml").write_text('[budgets.issue]\n"PROJ-5" = 0.02\n')
    install(repo)
    hooked_commit(repo, "initial", {"README.md": "x\n"})
    git(repo, "checkout", "-q", "-b", "feature/pay")  # no issue key in the branch name
    projects = env_dirs["claude"] / "projects"
    append_claude(projects, "s-pay", [
        claude_line("s-pay", str(repo), "feature/pay", "2026-11-20T09:00:00.000Z"),
        claude_line("s-pay", str(repo), "feature/pay", "2026-11-20T09:10:00.000Z"),
    ])
    hooked_commit(repo, "work")
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--amend", "--allow-empty", "-m", "PROJ-5: work"],
                   capture_output=True, text=True, check=True, env=clean_env())
    assert dec(row_map(report_json(report, repo, "--by", "issue"))["PROJ-5"]["cost_usd"]) == 2 * line_cost()
    append_claude(projects, "s-pay", [claude_line("s-pay", str(repo), "feature/pay", "2026-11-20T10:00:00.000Z")])
    _sha, said = hooked_commit(repo, "PROJ-5: more")
    # the amended commit's $0.0136 (filed under no issue, moved by the rewrite) counts
    assert [line for line in said.splitlines() if "budget" in line] == [
        "costattr: budget: issue PROJ-5 is now $0.0203, over its $0.0200 budget"]


def test_branch_and_period_budgets_flag_rows(golden: World, report: ReportFn) -> None:
    branches = row_map(report_json(report, golden.app, "--by", "branch"))
    assert branches["main"]["budget_usd"] == 1 and branches["main"]["over_budget"] is False
    assert "budget_usd" not in branches["feature/PROJ-7-login"]
    days = row_map(report_json(report, golden.app, "--by", "day", "--tz", "UTC"))
    assert all(r["budget_usd"] == 0.03 for r in days.values())
    over = {k for k, r in days.items() if r["over_budget"]}
    assert over == {k for k, r in days.items() if dec(r["cost_usd"]) > Decimal("0.03")}
    assert over == {"2026-11-21", "2026-11-22"}  # PROJ-9's long work, the $0.50 crash fix
    weeks = row_map(report_json(report, golden.app, "--by", "week", "--tz", "UTC"))
    assert all("budget_usd" not in r for r in weeks.values())  # no weekly budget configured
    # no [budgets] outside the repository: nothing is flagged
    outside = report_json(report, golden.app.parent, "--by", "issue")
    assert all("over_budget" not in r for r in outside["rows"])


# ------------------------------------------------------------------------------------------------
# several machines


def test_by_host_merges_what_several_machines_recorded(
    env_dirs: dict[str, Path], tmp_path: Path, report: ReportFn
) -> None:
    repo = make_repo(tmp_path / "shared")
    install(repo)
    commit(repo, "initial")
    git(repo, "checkout", "-q", "-b", "PROJ-11-sync")
    machines = {"laptop": ("s-laptop", 100), "ci-runner-7": ("s-ci", 700)}
    recorded: list[list[AnyRecord]] = []
    for host, (session, out) in machines.items():
        # each machine: its own transcripts and its own costattr state, which its hook writes
        claude, home = tmp_path / f"{host}-claude", tmp_path / f"{host}-home"
        append_claude(claude / "projects", session, [
            claude_line(session, str(repo), "PROJ-11-sync", "2026-11-20T09:00:00.000Z", out=out)])
        hooked_commit(repo, f"work on {host}", env={"CLAUDE_CONFIG_DIR": str(claude), "COSTATTR_HOME": str(home)})
        with LocalStore(home / STORE_NAME) as machine_store:
            records = list(machine_store.read().records.values())
        assert [r.session_id for r in records] == [session]
        # a test cannot change the host name the hook records, so each copy is labelled here
        # (the host is not part of a record's id: the labelled copy is the same record)
        recorded.append([dataclasses.replace(r, host=host) for r in records])
    # this test's ledger, as a shared ledger would hold both machines' records
    store_with([*recorded[0], *recorded[1]]).close()
    store_with(recorded[0]).close()  # the same records delivered twice are one record each
    assert sorted(store_records(env_dirs)) == sorted(r.id for machine in recorded for r in machine)

    doc = report_json(report, repo, "--by", "host")
    rows = row_map(doc)
    assert set(rows) == {"laptop", "ci-runner-7"}
    assert dec(rows["laptop"]["cost_usd"]) == line_cost(out=100)
    assert dec(rows["ci-runner-7"]["cost_usd"]) == line_cost(out=700)
    assert rows["laptop"]["sessions"] == rows["ci-runner-7"]["sessions"] == 1
    assert_adds_up(doc)
    issue = row_map(report_json(report, repo, "--by", "issue"))
    assert set(issue) == {"PROJ-11"} and issue["PROJ-11"]["sessions"] == 2
    assert len(issue["PROJ-11"]["commits"]) == 2


# ------------------------------------------------------------------------------------------------
# empty ledger, colour


def test_empty_ledger_says_so_and_how_to_start(env_dirs: dict[str, Path], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "fresh")
    proc = subprocess.run([sys.executable, "-m", "costattr", "report", "--by", "issue"], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout == ""  # data only on stdout: nothing to show
    assert "empty" in proc.stderr and "costattr install" in proc.stderr
    as_json = subprocess.run([sys.executable, "-m", "costattr", "report", "--format", "json"], cwd=tmp_path,
                             capture_output=True, text=True, check=True)
    doc = json.loads(as_json.stdout)  # scripts still get a document, and reports work outside a repository
    assert doc["rows"] == [] and doc["totals"]["cost_usd"] == 0 and doc["unattributed"]["cost_usd"] == 0


_SGR_COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7]|38;)[0-9;]*m")


def test_no_color_is_honoured(golden: World, report: ReportFn) -> None:
    terminal = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": str(WIDTH)}
    coloured = report(golden.app, "--by", "issue", env={**terminal, "NO_COLOR": None}).stdout
    assert _SGR_COLOUR.search(coloured)  # PROJ-7 is over budget: red on a colour terminal
    plain = report(golden.app, "--by", "issue", env={**terminal, "NO_COLOR": "1"}).stdout
    assert not _SGR_COLOUR.search(plain)
    assert "~$0.03!" in plain  # the flag itself does not depend on colour
    piped = report(golden.app, "--by", "issue", env={"NO_COLOR": None}).stdout  # not a terminal: no escapes
    assert "\x1b[" not in piped


# ------------------------------------------------------------------------------------------------
# a record that fails validation is set aside alone


def _insert_raw(ledger: Path, doc: bytes, rid: str, session: str) -> None:
    """A row written behind costattr's back (a hand edit, a damaged copy), straight into SQLite."""
    with sqlite3.connect(ledger) as conn:
        conn.execute("INSERT INTO records (id, kind, state, repo, session_id, branch, commit_sha, issue, doc)"
                     " VALUES (?, 'spend', 'closed', 'acme/app', ?, 'feature/PROJ-7-login', ?, 'PROJ-7', ?)",
                     (rid, session, "ab" * 20, doc))
    conn.close()


def test_a_record_that_fails_validation_is_set_aside_alone(
    golden: World, env_dirs: dict[str, Path], report: ReportFn, cli_in: ReportFn
) -> None:
    before = report_json(report, golden.app, "--by", "issue", "--tz", "UTC")
    ledger = env_dirs["costattr_home"] / STORE_NAME
    # A PROJ-7 record, valid but for one wrong-typed field (a request count as text): had it been
    # read, PROJ-7 would cost $5 more.
    bad = spend("s-hand-edited", issue="PROJ-7", branch="feature/PROJ-7-login", commit="ab" * 20).to_json()
    bad["parts"][0][2] = "3"
    bad["parts"][0][10] = "5"
    _insert_raw(ledger, orjson.dumps(bad), bad["id"], "s-hand-edited")

    result = report(golden.app, "--by", "issue", "--tz", "UTC", "--format", "json")
    assert json.loads(result.stdout) == before  # the rest, exactly as it was
    said = [line for line in result.stderr.splitlines() if "set aside" in line]
    assert said == [f"costattr: 1 record set aside as invalid: requests is not a whole number (1) (in {ledger}); "
                    "the rest is reported"]
    table = report(golden.app, "--by", "issue", "--tz", "UTC")
    assert "1 record set aside" in table.stderr and "~$0.03!" in table.stdout
    assert ledger.is_file() and not list(ledger.parent.glob(f"{STORE_NAME}.corrupt-*"))  # never moved aside

    # export leaves it out, and says so; the hook keeps recording next to it
    exported = cli_in(golden.app, "export", "--format", "jsonl")
    assert "1 record set aside" in exported.stderr and "the rest is exported" in exported.stderr
    assert bad["id"] not in exported.stdout
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT count(*) FROM records WHERE id = ?", (bad["id"],)).fetchone() == (1,)
    conn.close()


def test_a_ledger_of_bad_records_only_is_not_called_empty(env_dirs: dict[str, Path], tmp_path: Path,
                                                         report: ReportFn) -> None:
    ledger = env_dirs["costattr_home"] / STORE_NAME
    store_with([]).close()  # a store with its tables, as the first hook leaves it
    _insert_raw(ledger, b'{"v": 2, "kind": "spend", "id": "not-an-id"}', "x" * 24, "s-bad")
    result = report(tmp_path, "--by", "issue")
    assert result.stdout == ""
    assert "1 record set aside as invalid" in result.stderr and "holds no spend to report" in result.stderr
    assert "empty" not in result.stderr  # there is something: it failed validation


# ------------------------------------------------------------------------------------------------
# costattr export

ENTRY_FIELDS = {"session_id", "cost_usd", "cache_pct", "cost_str", "branch", "commit", "prs", "updated_at"}


def test_export_cloudclawer_is_one_entry_per_session_computed_from_its_records(
    golden: World, env_dirs: dict[str, Path], report: ReportFn, cli_in: ReportFn
) -> None:
    doc = json.loads(cli_in(golden.app, "export").stdout)
    assert doc["path"] == "agent-costs" and doc["schema_version"] == 2
    assert set(doc["data"]) == EXPECTED_KEYS["session"]
    by_session = row_map(report_json(report, golden.app, "--by", "session"))
    held = store_records(env_dirs)
    carried: dict[str, AnyRecord] = {}
    for sid, entry in doc["data"].items():
        assert set(entry) >= ENTRY_FIELDS | {"schema_version", "records"}, sid
        assert entry["session_id"] == sid and entry["schema_version"] == 2
        # CloudClawer's figures are the report's, session by session
        assert dec(entry["cost_usd"]) == dec(by_session[sid]["cost_usd"]), sid
        assert entry["cache_pct"] == by_session[sid]["cache_pct"], sid
        assert entry["cost_str"] == f"{dec(entry['cost_usd']):.4f} ({entry['cache_pct']:.1f}%)", sid
        assert isinstance(entry["updated_at"], float) and entry["updated_at"] > 0, sid
        for raw in entry["records"]:
            rec = from_json(raw)  # every record rides along whole and valid
            assert rec.session_id == sid and rec.id not in carried
            carried[rec.id] = rec
    assert carried == held  # nothing left out, nothing made up

    data = doc["data"]
    assert (data["s-login"]["branch"], data["s-login"]["commit"], data["s-login"]["prs"]) == (
        "feature/PROJ-7-login", golden.shas["validate"], [142])  # its latest commit
    assert (data["s-cache"]["branch"], data["s-cache"]["commit"], data["s-cache"]["prs"]) == (
        "alice/eng-42-cache", None, [])  # open: no commit yet
    assert data[CODEX_SESSION]["prs"] == [150] and data[CODEX_SESSION]["commit"] == golden.shas["refactor"]
    assert data["s-api"]["repo"] == "acme/api" and data["s-api"]["issues"] == ["PROJ-7"]
    assert data["s-legacy"]["cost_usd"] == 0.5 and data["s-legacy"]["cost_source"] == "authoritative"
    assert data["s-long"]["unpriced_requests"] == 1


def test_export_jsonl_is_every_record_once_in_a_stable_order(
    golden: World, env_dirs: dict[str, Path], cli_in: ReportFn
) -> None:
    out = cli_in(golden.app, "export", "--format", "jsonl").stdout
    lines = out.splitlines()
    records = [from_json(json.loads(line)) for line in lines]
    assert {r.id: r for r in records} == store_records(env_dirs) and len(records) == len(set(lines))
    assert [(r.session_id, r.kind, r.id) for r in records] == sorted((r.session_id, r.kind, r.id) for r in records)
    assert {r.kind for r in records} == {"spend", "link"}
    assert all(line == orjson.dumps(json.loads(line), option=orjson.OPT_SORT_KEYS).decode() for line in lines)
    assert cli_in(golden.app, "export", "--format", "jsonl").stdout == out  # the same ledger, the same bytes


@pytest.mark.parametrize("fmt", ["cloudclawer", "jsonl"])
def test_export_to_a_file(fmt: str, golden: World, env_dirs: dict[str, Path], cli_in: ReportFn,
                          tmp_path: Path) -> None:
    target = tmp_path / "out" / f"agent-costs.{fmt}"
    target.parent.mkdir()
    result = cli_in(golden.app, "export", "--format", fmt, "-o", str(target))
    assert result.stdout == ""  # the data went to the file
    assert f"wrote {len(store_records(env_dirs))} records to {target}" in result.stderr
    assert target.read_text(encoding="utf-8") == cli_in(golden.app, "export", "--format", fmt).stdout
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left behind
