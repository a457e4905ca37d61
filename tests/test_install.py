"""Hook installation, three ways, all calling `costattr upload --hook`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_claude import append_claude, claude_line

from costattr.commands.install import render_hook
from costattr.testing.gitrepo import commit, git, make_repo

ROOT = Path(__file__).resolve().parent.parent


def costattr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "costattr", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "app")
    commit(path, "initial", {"README.md": "app\n"})
    return path


def ledger(env_dirs: dict[str, Path]) -> dict:
    return json.loads((env_dirs["costattr_home"] / "ledger.json").read_text())["data"]


def test_shipped_script_matches_what_install_writes() -> None:
    assert (ROOT / "hooks" / "post-commit").read_text() == render_hook(None)
    assert os.access(ROOT / "hooks" / "post-commit", os.X_OK)


def test_install_keeps_a_foreign_hook_and_uninstall_restores_it(env_dirs: dict[str, Path], repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\necho foreign-hook-ran > \"$(git rev-parse --git-dir)/foreign.txt\"\n")
    hook.chmod(0o755)
    out = costattr("install", cwd=repo)
    assert out.returncode == 0 and "kept" in out.stdout
    append_claude(env_dirs["claude"] / "projects", "s", [claude_line("s", str(repo), "main", "2026-11-20T09:00:00Z")])
    commit(repo, "second")
    assert (repo / ".git" / "foreign.txt").exists()  # the previous hook still ran
    assert "s" in ledger(env_dirs)  # and so did ours
    assert costattr("install", cwd=repo).returncode == 0  # reinstalling is harmless
    assert costattr("install", "--uninstall", cwd=repo).returncode == 0
    assert "foreign-hook-ran" in hook.read_text()


def test_refuses_core_hooks_path_with_the_line_to_add(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", ".husky")
    out = costattr("install", cwd=repo)
    assert out.returncode == 1
    assert ".husky/post-commit" in out.stderr and "costattr upload --hook" in out.stderr


def test_worktrees_share_the_hook(env_dirs: dict[str, Path], repo: Path, tmp_path: Path) -> None:
    assert costattr("install", cwd=repo).returncode == 0
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "ENG-5-fix", str(wt))
    append_claude(env_dirs["claude"] / "projects", "w", [claude_line("w", str(wt), "ENG-5-fix", "2026-11-20T09:00:00Z")])
    sha = commit(wt, "fix in worktree")
    entry = ledger(env_dirs)["w"]
    assert entry["segments"][0]["commit"] == sha and entry["segments"][0]["issue"] == "ENG-5"


def test_rebase_and_cherry_pick_replay_the_hook_without_double_counting(env_dirs: dict[str, Path], repo: Path) -> None:
    assert costattr("install", cwd=repo).returncode == 0
    git(repo, "checkout", "-q", "-b", "PROJ-1-x")
    append_claude(env_dirs["claude"] / "projects", "s", [claude_line("s", str(repo), "PROJ-1-x", "2026-11-20T09:00:00Z")])
    commit(repo, "one", {"one.txt": "1\n"})
    commit(repo, "two", {"two.txt": "2\n"})
    before = ledger(env_dirs)["s"]["cost_usd"]
    git(repo, "checkout", "-q", "main")
    commit(repo, "on main", {"main.txt": "m\n"})
    git(repo, "checkout", "-q", "PROJ-1-x")
    git(repo, "rebase", "-q", "main")  # replays two commits: the hook fires twice more
    git(repo, "checkout", "-q", "main")
    git(repo, "cherry-pick", "PROJ-1-x")
    assert ledger(env_dirs)["s"]["cost_usd"] == before


@pytest.mark.skipif(shutil.which("pre-commit") is None and not (Path(sys.executable).parent / "pre-commit").exists(),
                    reason="pre-commit is a test dependency (pip install -e '.[test]')")
def test_pre_commit_consumer_repo(env_dirs: dict[str, Path], repo: Path, tmp_path: Path) -> None:
    """A consumer repo lists `costattr-upload`; real pre-commit installs this checkout and runs it."""
    hook_repo = tmp_path / "costattr-src"
    shutil.copytree(ROOT, hook_repo, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "build", "benchmarks", "tests"))
    make_repo(hook_repo)
    git(hook_repo, "add", "-A")
    git(hook_repo, "commit", "-q", "-m", "costattr")
    rev = git(hook_repo, "rev-parse", "HEAD")
    manifest = yaml.safe_load((hook_repo / ".pre-commit-hooks.yaml").read_text())
    assert manifest[0]["id"] == "costattr-upload" and manifest[0]["stages"] == ["post-commit"]
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hook_repo}\n  rev: {rev}\n  hooks:\n  - id: costattr-upload\n")
    pre_commit = [sys.executable, "-m", "pre_commit"]
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    subprocess.run([*pre_commit, "install", "--hook-type", "post-commit"], cwd=repo, env=env, check=True,
                   capture_output=True)
    git(repo, "add", ".pre-commit-config.yaml")
    git(repo, "commit", "-q", "-m", "use costattr")
    git(repo, "checkout", "-q", "-b", "feature/PROJ-7-login")
    append_claude(env_dirs["claude"] / "projects", "s", [
        claude_line("s", str(repo), "feature/PROJ-7-login", "2026-11-20T09:00:00Z")])
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "login"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    entry = ledger(env_dirs)["s"]
    assert entry["segments"][0]["issue"] == "PROJ-7"
    assert entry["segments"][0]["commit"] == git(repo, "rev-parse", "HEAD")
