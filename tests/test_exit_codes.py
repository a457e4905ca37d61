"""Exit codes that mean something, for every command (issue 15): 0 success, 1 a problem the user
must fix (doctor FAIL, an unreachable or misconfigured backend, contradicting filters, no
repository where one is needed), 2 a usage error (click's), 3 a bug.

Each row runs the real CLI entry point (`costattr.cli.main`, what `python -m costattr` runs) in
a real repository or outside one. 0.1 exited 0 from `doctor` with FAIL lines: click's
standalone_mode=False returns `ctx.exit(1)`'s code and `main` dropped it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from costattr.cli import COMMANDS, main
from costattr.testing.gitrepo import commit, make_repo


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(path, "initial")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "not-a-repo"
    path.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(path)
    return path


SUCCESS = [
    ["--help"], ["--version"], ["sessions"], ["sessions", "--format", "json"], ["report"],
    ["report", "--format", "json"], ["upload"], ["upload", "--dry-run"], ["base"], ["install"],
    ["install", "--uninstall"], ["init", "--no-install"], ["sync"], ["pricing", "show"], ["doctor"],
    ["export"], ["export", "--format", "jsonl"], ["comment", "--pr", "7", "--dry-run"],
]


@pytest.mark.parametrize("args", SUCCESS, ids=" ".join)
def test_success_is_0(repo: Path, args: list[str]) -> None:
    assert main(args) == 0


@pytest.mark.parametrize("args", [
    ["upload"], ["base"], ["install"], ["init", "--no-install"], ["sync", "--ledger", "git-notes"],
], ids=" ".join)
def test_a_command_that_needs_a_repository_outside_one_is_1(outside: Path, args: list[str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 1
    assert "repository" in capsys.readouterr().err


def test_doctor_with_a_fail_line_is_1(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / ".costattr.toml").write_text("[issues\n")
    assert main(["doctor"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_doctor_with_an_unreachable_memory_api_is_1(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("COSTATTR_API_USER", "dev")
    monkeypatch.setenv("COSTATTR_API_KEY", "k3y")
    assert main(["doctor"]) == 1


@pytest.mark.parametrize("args", [
    ["report", "--since", "2026-11-02", "--until", "2026-11-01"],
    ["report", "--ledger", "memory-api"],  # not configured: no URL, user or key
    ["export", "--ledger", "memory-api"],
    ["comment", "--pr", "7", "--ledger", "memory-api", "--dry-run", "--strict"],
    ["upload", "--session", "no-such-session"],
    ["pricing", "update", "--url", "http://127.0.0.1:9/prices.json"],
], ids=" ".join)
def test_a_problem_the_user_must_fix_is_1(repo: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("costattr: ") and "this is a bug" not in err


def test_a_shared_ledger_that_cannot_be_read_falls_back_unless_strict(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("COSTATTR_API_USER", "dev")
    monkeypatch.setenv("COSTATTR_API_KEY", "k3y")
    assert main(["report"]) == 0
    assert "showing this machine's local ledger instead" in capsys.readouterr().err
    assert main(["report", "--strict"]) == 1


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_option_is_2_for_every_command(repo: Path, command: str) -> None:
    args = [command, "show", "--no-such-option"] if command == "pricing" else [command, "--no-such-option"]
    assert main(args) == 2


@pytest.mark.parametrize("args", [["report", "--by", "colour"], ["report", "--top", "0"], ["upload", "--pr", "0"],
                                  ["report", "--since", "yesterday-ish"], ["nosuchcommand"]], ids=" ".join)
def test_a_bad_value_is_2(repo: Path, args: list[str]) -> None:
    assert main(args) == 2


def test_an_unexpected_exception_is_3_and_says_where_the_traceback_is(repo: Path, tmp_path: Path) -> None:
    # A bug on purpose, as a user would meet one: a sitecustomize that breaks a function costattr
    # calls. Only this exit path is under test.
    from builders import spend, store_with

    store_with([spend("s", repo="acme/app")])
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import costattr.report.rollup as r\n"
        "def broken(*a, **k):\n    raise ZeroDivisionError('planted')\n"
        "r.rollup = broken\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-m", "costattr", "report"], cwd=repo, env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 3
    assert "ZeroDivisionError('planted')" in proc.stderr and "this is a bug; the traceback is in" in proc.stderr


# ---------------------------------------------------------------------------------------------
# A read-only COSTATTR_HOME: a fault of the environment, said with the fix, never "a bug"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be written in, really: a read-only tmpfs when we may mount one
    (root in a container), else a chmod 555 directory (which binds anyone but root)."""
    target = tmp_path / "ro"
    target.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "costattr-ro", str(target)],
        capture_output=True, check=False).returncode == 0
    if not mounted:
        if os.geteuid() == 0:
            pytest.fail("running as root without permission to mount a read-only tmpfs: "
                        "no way to make a directory read-only for this test")
        target.chmod(0o555)
    try:
        probe = target / "probe"
        with pytest.raises(OSError) as caught:
            probe.write_text("x")
        assert caught.value.errno in (errno.EROFS, errno.EACCES)
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=False)
        else:
            target.chmod(0o755)


def test_a_read_only_costattr_home_is_a_fault_with_a_fix(repo: Path, read_only_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COSTATTR_HOME", str(read_only_dir / "state"))
    assert main(["upload"]) == 1
    err = capsys.readouterr().err
    assert "this is a bug" not in err and "COSTATTR_HOME" in err and str(read_only_dir) in err, err
    # Reading needs nothing written: an empty ledger, said as such.
    assert main(["report"]) == 0
    assert "this is a bug" not in capsys.readouterr().err
    # The hook never fails a commit, and its one line says where it could not write.
    assert main(["upload", "--hook"]) == 0
    err = capsys.readouterr().err
    assert "spend not recorded" in err and str(read_only_dir) in err and "this is a bug" not in err
