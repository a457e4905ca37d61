"""Safe files (issue 13, item 7): COSTATTR_HOME is 0700 and every file in it 0600 whatever the
umask (the ledger and its -wal/-shm, the scan cache, the log, the hook's state, locks, temp
files); a symlink where costattr keeps a state, lock or log file is never followed and never
deleted, and is reported; when the log cannot be written the hook's one line says where and why
instead of pointing at a log that holds nothing."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_memory_api import API_KEY, FakeMemoryApi

from costattr.cli import main
from costattr.testing.gitrepo import commit, git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter

BRANCH = "feature/APP-3-files"


@pytest.fixture
def repo(tmp_path: Path, env_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_repo(tmp_path / "app").resolve()
    commit(path, "initial")
    git(path, "checkout", "-q", "-b", BRANCH)
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(path), branch=BRANCH, seed=3)
    w.user_prompt()
    w.response(output=500, cache_read=2000)
    w.close()
    commit(path, "files: first")
    monkeypatch.chdir(path)
    monkeypatch.setenv("COSTATTR_NO_FAST_PATH", "1")
    return path


@pytest.fixture
def home(env_dirs: dict[str, Path]) -> Path:
    return env_dirs["costattr_home"]


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: without costattr's own modes every file would be 0666 and every folder 0777."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def hook(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["upload", "--hook"]) == 0
    out = capsys.readouterr()
    return out.out + out.err


def modes(home: Path) -> dict[str, str]:
    """Every entry under `home` (itself included) whose mode lets anyone else in."""
    loose = {}
    for path in [home, *home.rglob("*")]:
        st = path.lstat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            loose[str(path.relative_to(home))] = oct(stat.S_IMODE(st.st_mode))
    return loose


def _wait_publisher(api: FakeMemoryApi, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not api.records() and time.monotonic() < deadline:
        time.sleep(0.05)


def _use(api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `api` the shared backend, configured from the environment (no trust needed)."""
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", api.url)
    monkeypatch.setenv("COSTATTR_API_USER", api.user)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)


def test_every_file_under_costattr_home_is_private_whatever_the_umask(
    repo: Path, home: Path, open_umask: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from costattr.ledger.store import LocalStore

    api = FakeMemoryApi().start()
    try:
        _use(api, monkeypatch)
        hook(capsys)
        _wait_publisher(api)  # its files (status, lock) too
        assert api.records()
        api.stop()  # down: records wait, and the failure is logged
        commit(repo, "files: second")
        hook(capsys)
        main(["sync"])
        main(["doctor"])
        capsys.readouterr()
    finally:
        api.stop()
    store = LocalStore(home / "ledger.sqlite")
    try:
        store.read()  # an open WAL database: its -wal and -shm exist now
        assert modes(home) == {}
        names = {p.name for p in home.rglob("*")}
        assert {"ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "scan.sqlite", "costattr.log",
                "hook-state.json"} <= names, names
    finally:
        store.close()


def test_an_older_home_open_to_others_is_tightened(repo: Path, home: Path, open_umask: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    hook(capsys)  # creates the ledger, the cache, the state
    (home / "costattr.log").write_text("from costattr 0.1\n")
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # what costattr 0.1 left
    assert modes(home)
    main(["doctor"])
    said = capsys.readouterr().out
    assert f"warn  {home} is open to other users (mode 755)" in said and "fix: chmod 700" in said
    assert "entries in " in said and "open to other users" in said
    commit(repo, "files: again")
    out = hook(capsys)
    assert "not recorded" not in out
    from costattr import logs

    logs.log("a line")  # the log is tightened when next written
    assert modes(home) == {}


def _outside(tmp_path: Path, name: str, text: str | None = "do not touch\n") -> Path:
    target = tmp_path / "elsewhere" / name
    target.parent.mkdir(exist_ok=True)
    if text is not None:
        target.write_text(text)
    return target


def test_a_symlinked_log_is_not_followed_and_the_hook_says_why(
    repo: Path, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hook(capsys)
    target = _outside(tmp_path, "victim")
    (home / "costattr.log").unlink(missing_ok=True)
    (home / "costattr.log").symlink_to(target)
    (repo / ".costattr.toml").write_text("[ledger]\nbakend = 'json'\n")  # the hook fails, and logs it
    out = hook(capsys)
    line = [ln for ln in out.splitlines() if "not recorded" in ln]
    assert len(line) == 1, out
    assert f"no details logged: could not write {home / 'costattr.log'} (a symlink, not followed)" in line[0]
    assert "details in" not in out
    assert target.read_text() == "do not touch\n" and (home / "costattr.log").is_symlink()


@pytest.mark.parametrize("blocker", ["directory", "not-a-directory"])
def test_an_unwritable_log_is_named_with_the_reason(
    repo: Path, home: Path, tmp_path: Path, blocker: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Root ignores permissions, so "cannot be written" is made of things no one can write
    through: a folder where the log belongs, a COSTATTR_HOME below a regular file."""
    if blocker == "directory":
        (home / "costattr.log").mkdir(parents=True)
        log, why = home / "costattr.log", "Is a directory"
    else:
        plain = tmp_path / "a-file"
        plain.write_text("")
        monkeypatch.setenv("COSTATTR_HOME", str(plain / "home"))
        log, why = plain / "home" / "costattr.log", "Not a directory"
    (repo / ".costattr.toml").write_text("[ledger]\nbakend = 'json'\n")
    out = hook(capsys)
    assert f"no details logged: could not write {log} ({why})" in out, out


def test_a_symlinked_ledger_is_refused_and_left_alone(repo: Path, home: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    home.mkdir(parents=True)
    target = _outside(tmp_path, "ledger-target", text=None)  # dangling: following it would create it
    (home / "ledger.sqlite").symlink_to(target)
    out = hook(capsys)
    line = [ln for ln in out.splitlines() if "not recorded" in ln]
    assert len(line) == 1 and f"{home / 'ledger.sqlite'} is a symlink" in line[0], out
    assert not target.exists() and (home / "ledger.sqlite").is_symlink()
    assert not (home / "ledger.sqlite-wal").exists()


def test_symlinked_state_cache_and_lock_files_are_never_followed(
    repo: Path, home: Path, tmp_path: Path, env_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from costattr.ledger.store import LocalStore

    (home / "cache").mkdir(parents=True)
    planted = {
        home / "hook-state.json": _outside(tmp_path, "state"),
        home / "cache" / "scan.sqlite": _outside(tmp_path, "cache"),
        home / "publisher.lock": _outside(tmp_path, "lock"),
        home / "notices.json": _outside(tmp_path, "notices"),
    }
    for link, target in planted.items():
        link.symlink_to(target)
    # A memory API the hook hands to the background publisher, whose lock is planted above.
    api = FakeMemoryApi().start()
    try:
        _use(api, monkeypatch)
        started = time.monotonic()
        out = hook(capsys)
        assert time.monotonic() - started < 10, "a symlinked lock must not block the hook"
    finally:
        api.stop()
    assert "not recorded" not in out, out
    with LocalStore(home / "ledger.sqlite") as store:
        assert store.read().records, "the spend is recorded all the same"
    for link, target in planted.items():
        assert link.is_symlink(), f"{link} was removed"
        assert target.read_text() == "do not touch\n", f"{link} was followed"

    main(["doctor"])
    said = capsys.readouterr().out
    for link in planted:
        assert f"{link} is a symlink: costattr never follows one" in said, said


def test_the_lock_helper_refuses_a_symlink(home: Path, tmp_path: Path) -> None:
    from costattr.fsutil import UnsafeFile, lock

    target = _outside(tmp_path, "held")
    link = home / "some.lock"
    home.mkdir(parents=True)
    link.symlink_to(target)
    with pytest.raises(UnsafeFile) as e:
        with lock(link, timeout=0.1):
            pass
    assert isinstance(e.value, OSError) and "is a symlink" in e.value.message
    assert target.read_text() == "do not touch\n" and link.is_symlink()
    with lock(home / "own.lock", timeout=0.1):
        assert stat.S_IMODE((home / "own.lock").stat().st_mode) == 0o600
