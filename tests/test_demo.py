"""`costattr demo`: the README's first command. It must work on a machine with nothing set up,
show costs per issue and the PR comment, and leave nothing behind outside its temp directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costattr import demo
from costattr.pr_comment import MARKER

COST = r"~?\$\d+\.\d{2,4}"


def run_demo_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "costattr", "demo", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture
def hostile_env(env_dirs: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    """A user's environment the demo must not be steered by: a shared ledger and a GitHub token
    that would reach the network, and a global git config whose hooksPath would make
    `costattr install` refuse. TMPDIR is ours, to see what the demo leaves there."""
    gitconfig = tmp_path / "user-gitconfig"
    gitconfig.write_text("[core]\n\thooksPath = /nonexistent/hooks\n[init]\n\tdefaultBranch = trunk\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return {
        **os.environ,
        "TMPDIR": str(tmpdir),
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "COSTATTR_LEDGER": "memory-api",
        "COSTATTR_API_URL": "http://127.0.0.1:9",
        "COSTATTR_API_USER": "alice",
        "COSTATTR_API_KEY": "sk-test-SECRET-012345678",
        "GITHUB_TOKEN": "ghp_notARealToken000000000000000000000000",
        "GITHUB_REPOSITORY": "someone/else",
    }


def untouched(env_dirs: dict[str, Path]) -> None:
    """The user's own state and transcript homes were not created, and their home stayed empty."""
    for name in ("costattr_home", "claude", "codex"):
        assert not env_dirs[name].exists(), f"the demo wrote to the user's {name}: {env_dirs[name]}"
    assert list(env_dirs["home"].iterdir()) == []


def test_demo_shows_cost_per_issue_and_the_pr_comment(env_dirs: dict[str, Path], hostile_env: dict[str, str]) -> None:
    started = time.monotonic()
    proc = run_demo_cli(env=hostile_env)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    for key in demo.ISSUE_KEYS:
        assert re.search(rf"^{re.escape(key)}\s+{COST}", out, re.MULTILINE), f"no cost for {key}:\n{out}"
    assert re.search(rf"^Total\s+{COST}", out, re.MULTILINE)
    assert len(re.findall(r"hook: \d+\.\d{4} \(\d+\.\d%\)", out)) == 4  # every commit fired the hook
    # The PR comment preview: offline (the token was ignored), for PR #7 on the Jira branch.
    assert MARKER in out and f"PR #{demo.PR_NUMBER} · {demo.JIRA_BRANCH}" in out
    assert "SHOP-101" in out.split(MARKER, 1)[1]
    assert "ghp_" not in out + proc.stderr and "SECRET" not in out + proc.stderr
    untouched(env_dirs)
    assert list(Path(hostile_env["TMPDIR"]).iterdir()) == []  # its temp dir is gone too
    assert took < 120, f"the demo took {took:.1f} s"  # a few seconds normally; generous for loaded CI


def test_demo_keep_says_where_and_leaves_it(env_dirs: dict[str, Path], hostile_env: dict[str, str]) -> None:
    proc = run_demo_cli("--keep", env=hostile_env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    found = re.search(r"^Kept the demo in (.+)\. To look around:$", proc.stdout, re.MULTILINE)
    assert found, proc.stdout
    root = Path(found[1])
    assert root.parent == Path(hostile_env["TMPDIR"])
    dirs = demo.DemoDirs(root)
    assert (dirs.repo / ".git" / "hooks" / "post-commit").is_file()
    assert (dirs.repo / ".git" / "hooks" / "post-rewrite").is_file()
    exported = subprocess.run([sys.executable, "-m", "costattr", "export"], cwd=dirs.repo, capture_output=True,
                              text=True, check=True, env={**os.environ, "COSTATTR_HOME": str(dirs.state)})
    ledger = json.loads(exported.stdout)
    assert len(ledger["data"]) == 4  # three Claude Code sessions (one backfilled) and a Codex one
    assert {e["tool"] for e in ledger["data"].values()} == {"claude", "codex"}
    assert any(demo.PR_NUMBER in e["prs"] for e in ledger["data"].values())
    assert f"export COSTATTR_HOME={dirs.state}" in proc.stdout
    untouched(env_dirs)


def test_demo_env_points_everything_inside(tmp_path: Path) -> None:
    dirs = demo.DemoDirs(tmp_path)
    user = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "HOME": "/home/real", "COSTATTR_HOME": "/real/state",
            "COSTATTR_API_KEY": "sk-secret", "CLAUDE_CONFIG_DIR": "/real/claude", "CODEX_HOME": "/real/codex",
            "GIT_DIR": "/real/repo/.git", "GITHUB_TOKEN": "ghp_x", "GH_TOKEN": "gh", "XDG_CONFIG_HOME": "/real/cfg"}
    env = demo.demo_env(dirs, user)
    assert env["PATH"] == "/usr/bin" and env["LANG"] == "C.UTF-8"  # what git and Python need stays
    for gone in ("COSTATTR_API_KEY", "GIT_DIR", "GITHUB_TOKEN", "GH_TOKEN"):
        assert gone not in env
    inside = ("HOME", "COSTATTR_HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "GIT_CONFIG_GLOBAL", "XDG_CONFIG_HOME")
    for name in inside:
        assert Path(env[name]).is_relative_to(tmp_path), name
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"


def test_a_hook_that_records_nothing_fails_the_demo_with_its_output(tmp_path: Path) -> None:
    dirs = demo.DemoDirs(tmp_path)
    demo.prepare(dirs)
    run = demo.Runner(dirs, demo.demo_env(dirs))
    run.git("init", "-q")
    with pytest.raises(demo.DemoError, match="recorded nothing"):
        run.commit("no hook installed", {"a.txt": "a\n"})
