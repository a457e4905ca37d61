"""Hook installation, three ways, all calling `costattr upload --hook`; `costattr install` also
installs post-rewrite, which moves recorded spend to the commits an amend or a rebase made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from helpers_claude import append_claude, claude_line
from helpers_reliability import read_records

from costattr.commands.install import HOOKS, is_ours, render_hook
from costattr.ledger.view import visible
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


def spend_of(env_dirs: dict[str, Path], session: str) -> list[tuple[str | None, str | None, str | None, int]]:
    """(branch, commit, issue, requests) of each visible record of `session` in the local store,
    commits as reports show them (after rewrites)."""
    return sorted((s.branch, s.commit, s.issue, s.record.requests)
                  for s in visible(read_records(env_dirs["costattr_home"])) if s.session_id == session)


def by_commit(cwd: Path) -> dict[str, Decimal]:
    proc = costattr("report", "--by", "commit", "--format", "json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return {r["key"]: Decimal(str(r["cost_usd"])) for r in json.loads(proc.stdout)["rows"]}


def say(env_dirs: dict[str, Path], session: str, cwd: Path, branch: str, ts: str, out: int = 100) -> None:
    append_claude(env_dirs["claude"] / "projects", session, [claude_line(session, str(cwd), branch, ts, out=out)])


def test_shipped_scripts_match_what_install_writes(repo: Path) -> None:
    shipped = {p.name for p in (ROOT / "hooks").iterdir()}
    assert shipped == set(HOOKS) == {"post-commit", "post-rewrite"}
    for hook in HOOKS:
        assert (ROOT / "hooks" / hook).read_text() == render_hook(None, hook), hook
        assert os.access(ROOT / "hooks" / hook, os.X_OK), hook
    out = costattr("install", cwd=repo)
    assert out.returncode == 0, out.stderr
    for hook in HOOKS:
        installed = repo / ".git" / "hooks" / hook
        # What install writes is the shipped script with this interpreter filled in, and nothing else.
        assert installed.read_text() == render_hook(sys.executable, hook), hook
        assert installed.read_text().replace(f"INSTALL_PYTHON={sys.executable}", "INSTALL_PYTHON=''") == \
            (ROOT / "hooks" / hook).read_text()
        assert os.access(installed, os.X_OK), hook


def test_install_keeps_a_foreign_hook_and_uninstall_restores_it(env_dirs: dict[str, Path], repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\necho foreign-hook-ran > \"$(git rev-parse --git-dir)/foreign.txt\"\n")
    hook.chmod(0o755)
    out = costattr("install", cwd=repo)
    assert out.returncode == 0 and "kept" in out.stdout
    say(env_dirs, "s", repo, "main", "2026-11-20T09:00:00Z")
    sha = commit(repo, "second")
    assert (repo / ".git" / "foreign.txt").exists()  # the previous hook still ran
    assert spend_of(env_dirs, "s") == [("main", sha, None, 1)]  # and so did ours
    assert costattr("install", cwd=repo).returncode == 0  # reinstalling is harmless
    assert "foreign-hook-ran" in hook.with_name("post-commit.legacy").read_text()  # not replaced by ours
    assert costattr("install", "--uninstall", cwd=repo).returncode == 0
    assert "foreign-hook-ran" in hook.read_text()
    assert not (repo / ".git" / "hooks" / "post-rewrite").exists()  # ours, removed; there was none before


def test_a_refusal_installs_neither_hook(repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    for name in ("post-rewrite", "post-rewrite.legacy"):
        (hooks / name).write_text(f"#!/bin/sh\necho {name}\n")
    out = costattr("install", cwd=repo)
    assert out.returncode == 1 and "post-rewrite.legacy already exists" in out.stderr
    assert not (hooks / "post-commit").exists()  # no half-installed pair
    assert (hooks / "post-rewrite").read_text() == "#!/bin/sh\necho post-rewrite\n"
    forced = costattr("install", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert (hooks / "post-rewrite.legacy").read_text() == "#!/bin/sh\necho post-rewrite\n"  # the current one kept
    assert all(is_ours(hooks / hook) for hook in HOOKS)


def test_a_foreign_post_rewrite_hook_still_gets_gits_lines(env_dirs: dict[str, Path], repo: Path) -> None:
    """post-rewrite reads `old new` lines on stdin: the kept hook and costattr both need them."""
    hook = repo / ".git" / "hooks" / "post-rewrite"
    hook.write_text("#!/bin/sh\ncat > \"$(git rev-parse --git-dir)/rewritten.txt\"\n")
    hook.chmod(0o755)
    assert costattr("install", cwd=repo).returncode == 0
    git(repo, "checkout", "-q", "-b", "wip")
    say(env_dirs, "a", repo, "wip", "2026-11-20T09:00:00Z")
    old = commit(repo, "PROJ-1 first try")
    git(repo, "commit", "-q", "--amend", "--allow-empty", "-m", "PROJ-2 the real thing")
    new = git(repo, "rev-parse", "HEAD")
    assert (repo / ".git" / "rewritten.txt").read_text().split() == [old, new]
    assert spend_of(env_dirs, "a") == [("wip", new, "PROJ-2", 1)]


def test_refuses_core_hooks_path_with_the_line_to_add(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", ".husky")
    out = costattr("install", cwd=repo)
    assert out.returncode == 1
    assert ".husky/post-commit" in out.stderr and "costattr upload --hook" in out.stderr


def test_worktrees_share_the_hooks(env_dirs: dict[str, Path], repo: Path, tmp_path: Path) -> None:
    assert costattr("install", cwd=repo).returncode == 0
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "ENG-5-fix", str(wt))
    say(env_dirs, "w", wt, "ENG-5-fix", "2026-11-20T09:00:00Z")
    sha = commit(wt, "fix in worktree")
    assert spend_of(env_dirs, "w") == [("ENG-5-fix", sha, "ENG-5", 1)]
    git(wt, "commit", "-q", "--amend", "--allow-empty", "-m", "fix in worktree, reworded")  # post-rewrite too
    assert spend_of(env_dirs, "w") == [("ENG-5-fix", git(wt, "rev-parse", "HEAD"), "ENG-5", 1)]


def test_rebase_and_cherry_pick_replay_the_hook_without_double_counting(env_dirs: dict[str, Path], repo: Path) -> None:
    assert costattr("install", cwd=repo).returncode == 0
    git(repo, "checkout", "-q", "-b", "PROJ-1-x")
    say(env_dirs, "s", repo, "PROJ-1-x", "2026-11-20T09:00:00Z")
    one = commit(repo, "one", {"one.txt": "1\n"})
    say(env_dirs, "s", repo, "PROJ-1-x", "2026-11-20T09:05:00Z", out=300)
    two = commit(repo, "two", {"two.txt": "2\n"})
    before = by_commit(repo)
    assert set(before) == {one, two}
    total = sum(before.values())
    git(repo, "checkout", "-q", "main")
    commit(repo, "on main", {"main.txt": "m\n"})
    git(repo, "checkout", "-q", "PROJ-1-x")
    git(repo, "rebase", "-q", "main")  # replays two commits: post-commit fires twice more, then post-rewrite
    new_one, new_two = git(repo, "rev-parse", "HEAD~1"), git(repo, "rev-parse", "HEAD")
    after = by_commit(repo)
    # Only the new SHAs, each with the spend of the commit it replaced: nothing doubled, nothing lingering.
    assert after == {new_one: before[one], new_two: before[two]}
    git(repo, "checkout", "-q", "main")
    git(repo, "cherry-pick", "PROJ-1-x")  # a copy on main: post-commit again, nothing new to record
    assert by_commit(repo) == after
    assert sum(by_commit(repo).values()) == total
    assert sum(n for *_where, n in spend_of(env_dirs, "s")) == 2  # every request once


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
    say(env_dirs, "s", repo, "feature/PROJ-7-login", "2026-11-20T09:00:00Z")
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "login"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert spend_of(env_dirs, "s") == [("feature/PROJ-7-login", git(repo, "rev-parse", "HEAD"), "PROJ-7", 1)]


def test_pre_commit_route_as_the_readme_installs_it(env_dirs: dict[str, Path], repo: Path, tmp_path: Path) -> None:
    """The README's `pre-commit install --hook-type post-commit --allow-missing-config` with the
    example config: a branch made before the config was committed commits quietly; the cost line
    shows on every commit; a broken .costattr.toml shows Failed and the reason, and the commit stands."""
    git(repo, "branch", "older-work")  # made before the config exists
    example = (ROOT / "examples" / ".pre-commit-config.yaml").read_text()
    commit(repo, "use pre-commit", {".pre-commit-config.yaml": example})
    bin_dir = str(Path(sys.executable).parent)  # `language: system` runs the costattr on PATH
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    readme = (ROOT / "README.md").read_text()
    assert "pre-commit install --hook-type post-commit --allow-missing-config" in readme
    subprocess.run([sys.executable, "-m", "pre_commit", "install", "--hook-type", "post-commit",
                    "--allow-missing-config"], cwd=repo, env=env, check=True, capture_output=True)

    def commit_now(message: str) -> str:
        proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert git(repo, "log", "-1", "--format=%s") == message  # the commit is made, whatever the hook said
        return proc.stdout + proc.stderr

    git(repo, "checkout", "-q", "older-work")
    out = commit_now("work from before the config")
    assert "No .pre-commit-config.yaml" not in out and "Failed" not in out, out

    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", "feature/PROJ-8-cart")
    say(env_dirs, "s", repo, "feature/PROJ-8-cart", "2026-11-20T09:00:00Z")
    out = commit_now("cart")
    assert "Passed" in out and "costattr: " in out and "on PROJ-8" in out, out  # verbose: the cost line
    assert spend_of(env_dirs, "s") == [("feature/PROJ-8-cart", git(repo, "rev-parse", "HEAD"), "PROJ-8", 1)]

    (repo / ".costattr.toml").write_text("[issues\n")
    say(env_dirs, "s", repo, "feature/PROJ-8-cart", "2026-11-20T09:05:00Z")
    out = commit_now("cart, part two")
    assert "Failed" in out and "spend not recorded" in out and ".costattr.toml" in out, out
    assert len(spend_of(env_dirs, "s")) == 1  # nothing recorded, and nothing lost: the next hook records it
    (repo / ".costattr.toml").unlink()
    out = commit_now("cart, part three")
    assert "Passed" in out, out
    assert sum(n for *_where, n in spend_of(env_dirs, "s")) == 2
