"""The hook contract: real repositories, the real installed hook fired by real `git commit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers_claude import append_claude, claude_line

from costattr.cli import cli
from costattr.testing.gitrepo import commit, git, make_repo

# claude-sonnet-4-5 list prices per million: input 3, output 15, 5m cache write 3.75, cache read 0.30
SONNET = {"in": Decimal(3), "out": Decimal(15), "cw": Decimal("3.75"), "cr": Decimal("0.30")}


def line_cost(inp: int = 10, out: int = 100, cw: int = 1000, cr: int = 5000) -> Decimal:
    return (inp * SONNET["in"] + out * SONNET["out"] + cw * SONNET["cw"] + cr * SONNET["cr"]) / 1_000_000


def run(*args: str, cwd: Path) -> dict | str:
    """Run the CLI as a user would, in `cwd`; JSON output is parsed."""
    proc = subprocess.run([sys.executable, "-m", "costattr", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if "json" in args else proc.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "app")
    commit(path, "initial", {"README.md": "app\n"})
    return path


def plant_sessions(env_dirs: dict[str, Path], repo: Path) -> None:
    """Sessions on four branches; release-1.2 is a version, not an issue."""
    projects = env_dirs["claude"] / "projects"
    cwd = str(repo)
    append_claude(projects, "sess-login", [
        claude_line("sess-login", cwd, "feature/PROJ-7-login", "2026-11-20T10:00:00.000Z"),
        claude_line("sess-login", cwd, "feature/PROJ-7-login", "2026-11-20T10:02:00.000Z", out=300),
    ])
    append_claude(projects, "sess-cache", [
        claude_line("sess-cache", cwd, "alice/eng-42-cache", "2026-11-20T11:00:00.000Z"),
        claude_line("sess-cache", cwd, "main", "2026-11-20T11:30:00.000Z"),
        claude_line("sess-cache", cwd, "release-1.2", "2026-11-20T11:40:00.000Z"),
    ])
    # A session in another repository must not be attributed here.
    append_claude(projects, "sess-other", [
        claude_line("sess-other", str(repo.parent / "app2"), "feature/PROJ-7-login", "2026-11-20T12:00:00.000Z"),
    ])


def test_installed_hook_attributes_spend_to_issues(env_dirs: dict[str, Path], repo: Path) -> None:
    plant_sessions(env_dirs, repo)
    out = run("install", cwd=repo)
    assert "installed" in out
    git(repo, "checkout", "-q", "-b", "feature/PROJ-7-login")
    commit(repo, "Add login form", {"login.py": "x = 1\n"})  # fires the real hook

    report = run("report", "--by", "issue", "--format", "json", cwd=repo)
    rows = {r["key"]: r for r in report["rows"]}
    assert set(rows) == {"PROJ-7", "ENG-42"}
    assert Decimal(str(rows["PROJ-7"]["cost_usd"])) == line_cost() + line_cost(out=300)
    assert Decimal(str(rows["ENG-42"]["cost_usd"])) == line_cost()
    assert len(rows["PROJ-7"]["commits"]) == 1 and rows["ENG-42"]["commits"] == []
    assert Decimal(str(report["unattributed"]["cost_usd"])) == 2 * line_cost()  # main + release-1.2
    total = Decimal(str(report["totals"]["cost_usd"]))
    assert total == sum(Decimal(str(r["cost_usd"])) for r in report["rows"]) + Decimal(
        str(report["unattributed"]["cost_usd"]))
    assert total == 4 * line_cost() + line_cost(out=300)  # sess-other ran in another repository

    # amend + another upload: nothing doubles, and the spend follows the commit to its new SHA
    git(repo, "commit", "-q", "--amend", "-m", "Add login form (PROJ-7)")
    amended = git(repo, "rev-parse", "HEAD")
    run("upload", cwd=repo)
    again = run("report", "--by", "issue", "--format", "json", cwd=repo)
    assert again["totals"]["cost_usd"] == report["totals"]["cost_usd"]
    assert [(r["key"], r["cost_usd"]) for r in again["rows"]] == [(r["key"], r["cost_usd"]) for r in report["rows"]]
    assert {r["key"]: r["commits"] for r in again["rows"]}["PROJ-7"] == [amended]


def test_events_close_into_the_commit_on_their_own_branch(env_dirs: dict[str, Path], repo: Path) -> None:
    projects = env_dirs["claude"] / "projects"
    git(repo, "checkout", "-q", "-b", "alice/eng-42-cache")
    append_claude(projects, "s", [claude_line("s", str(repo), "alice/eng-42-cache", "2026-11-20T09:00:00.000Z")])
    first = commit(repo, "cache: first")
    run("upload", cwd=repo)
    append_claude(projects, "s", [claude_line("s", str(repo), "alice/eng-42-cache", "2026-11-20T09:30:00.000Z")])
    second = commit(repo, "cache: second")
    run("upload", cwd=repo)
    by_commit = run("report", "--by", "commit", "--format", "json", cwd=repo)
    costs = {r["key"]: Decimal(str(r["cost_usd"])) for r in by_commit["rows"]}
    assert costs == {first: line_cost(), second: line_cost()}


def test_linked_worktree_and_detached_head(env_dirs: dict[str, Path], repo: Path, tmp_path: Path) -> None:
    projects = env_dirs["claude"] / "projects"
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "PROJ-9-worktree", str(wt))
    append_claude(projects, "w", [claude_line("w", str(wt / "src"), "PROJ-9-worktree", "2026-11-20T09:00:00.000Z")])
    sha = commit(wt, "in the worktree")
    run("upload", cwd=wt)
    # detached HEAD: Claude records gitBranch "HEAD"; the spend goes to the commit, with no branch
    git(repo, "checkout", "-q", "--detach")
    append_claude(projects, "d", [claude_line("d", str(repo), "HEAD", "2026-11-20T10:00:00.000Z")])
    detached_sha = commit(repo, "detached work")
    run("upload", cwd=repo)
    issues = run("report", "--by", "issue", "--format", "json", cwd=repo)
    assert [r["key"] for r in issues["rows"]] == ["PROJ-9"]
    assert issues["rows"][0]["commits"] == [sha]
    commits = run("report", "--by", "commit", "--format", "json", cwd=repo)
    assert {r["key"] for r in commits["rows"]} == {sha, detached_sha}


def test_hook_never_fails_a_commit(env_dirs: dict[str, Path], repo: Path) -> None:
    run("install", cwd=repo)
    ledger = env_dirs["costattr_home"] / "ledger.sqlite"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text("{ this is not a database")
    append_claude(env_dirs["claude"] / "projects", "s", [claude_line("s", str(repo), "main", "2026-11-20T09:00:00Z")])
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "still commits"], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "corrupt" in proc.stderr or "moved" in proc.stderr
    kept = list(ledger.parent.glob("ledger.sqlite.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{ this is not a database"
    assert git(repo, "log", "-1", "--format=%s") == "still commits"


def test_upload_outside_a_repository_explains(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["upload"], catch_exceptions=False, env={"PWD": str(tmp_path)})
    os.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "costattr", "upload"], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1
    assert "git" in proc.stderr.lower()
    assert result is not None


def test_pr_and_base(env_dirs: dict[str, Path], repo: Path) -> None:
    projects = env_dirs["claude"] / "projects"
    git(repo, "checkout", "-q", "-b", "feature/PROJ-3-pay")
    append_claude(projects, "s", [claude_line("s", str(repo), "feature/PROJ-3-pay", "2026-11-20T09:00:00.000Z")])
    base = run("base", cwd=repo).strip()
    assert Decimal(base) == line_cost().quantize(Decimal("0.0001"))
    append_claude(projects, "s", [claude_line("s", str(repo), "feature/PROJ-3-pay", "2026-11-20T09:10:00.000Z")])
    commit(repo, "pay")
    out = run("upload", "--pr", "142", "--base", str(line_cost()), cwd=repo)
    assert out.strip() == (f"costattr: {line_cost():.4f} (83.2%) on PROJ-3; {line_cost():.4f} unattributed; "
                           "linked PR #142")
    report = run("report", "--by", "pr", "--format", "json", cwd=repo)
    assert [r["key"] for r in report["rows"]] == ["#142"]
    assert Decimal(str(report["rows"][0]["cost_usd"])) == line_cost()  # the part after the base
    assert Decimal(str(report["unattributed"]["cost_usd"])) == line_cost()  # kept, not dropped
