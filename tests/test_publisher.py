"""A commit never waits on the network: the hook records locally and hands the shared backend's
records to the background publisher (costattr/ledger/publisher.py), one at a time per
COSTATTR_HOME, under one overall deadline per run. Real `git commit`s with the installed hook,
against the real HTTP server of tests/fake_memory_api.py misbehaving in every way it can.

Waiting for the publisher is deterministic: the hook takes the publisher's lock before it starts
it and the publisher holds it until it is done, so `wait_for_publisher` (waiting on that lock)
returns exactly when the run is over, and `publisher_running()` right after a commit says
whether the commit returned before the server answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_memory_api import API_KEY, FakeMemoryApi
from helpers_claude import append_claude, claude_line

from costattr import hookfast
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.publish import waiting
from costattr.ledger.publisher import last_status
from costattr.ledger.store import LocalStore
from costattr.testing.gitrepo import commit, make_repo

PATIENT = "60"  # an api_timeout no test waits for: a run that ends did so because of the server


class Shared:
    """A repository with the hook installed whose records go to `api`, and its Claude session."""

    def __init__(self, repo: Path, projects: Path, api: FakeMemoryApi) -> None:
        self.repo, self.projects, self.api = repo, projects, api
        self.minute = 0

    def work(self) -> None:
        """One more response in this repository's session (new spend for the next commit)."""
        self.minute += 1
        ts = f"2026-11-20T09:{self.minute:02d}:00.000Z"
        append_claude(self.projects, "s1", [claude_line("s1", str(self.repo), "main", ts)])

    def commit(self, message: str = "change") -> tuple[str, float]:
        """A real `git commit` (the hook fires): its output and how long it took."""
        t0 = time.monotonic()
        proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=self.repo,
                              capture_output=True, text=True, check=True, timeout=120)
        return proc.stdout + proc.stderr, time.monotonic() - t0

    def remote(self) -> MemoryApiLedger:
        return MemoryApiLedger(self.api.url, self.api.user, API_KEY, timeout=10)

    def local(self) -> set[str]:
        with LocalStore() as store:
            return set(store.read().records)

    def held(self) -> set[str]:
        return {r["id"] for r in self.api.records()}

    def waiting(self) -> int:
        with LocalStore() as store:
            return waiting(store, self.remote(), None)


@pytest.fixture
def shared(tmp_path: Path, env_dirs: dict[str, Path], memory_api: FakeMemoryApi,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Shared]:
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", memory_api.url)
    monkeypatch.setenv("COSTATTR_API_USER", memory_api.user)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
    memory_api.drip = 1.5
    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(repo, "initial")
    subprocess.run([sys.executable, "-m", "costattr", "install"], cwd=repo, check=True, capture_output=True)
    world = Shared(repo, env_dirs["claude"] / "projects", memory_api)
    yield world
    memory_api.stop()  # ends any answer still hanging or dripping, so no publisher outlives the test
    assert hookfast.wait_for_publisher(60)


def test_the_hook_hands_off_and_the_background_publisher_delivers(shared: Shared) -> None:
    shared.work()
    out, _ = shared.commit()
    assert "memory API" not in out  # nothing about the network: the hook did not use it
    assert hookfast.wait_for_publisher(30)
    assert shared.held() == shared.local() != set()
    status = last_status()
    assert status is not None and status.state == "done" and status.ok and status.sent == len(shared.local())
    assert not hookfast.is_waiting(shared.repo)  # nothing left: the next fast-path commit starts nothing

    fd = hookfast.try_lock()  # as if a publisher were running
    assert fd is not None
    try:
        shared.work()
        shared.commit()  # finds the lock taken: starts nothing
        by_hand = subprocess.run([sys.executable, "-m", "costattr", hookfast.PUBLISH_COMMAND], cwd=shared.repo,
                                 capture_output=True, text=True, timeout=60)
        assert by_hand.returncode == 0 and not by_hand.stdout + by_hand.stderr  # nor does one started by hand
        assert shared.api.count("PUT") == 1 and hookfast.is_waiting(shared.repo)
    finally:
        os.close(fd)
    out, _ = shared.commit("nothing new")  # the fast path starts the publisher for what waits
    assert out.strip() == hookfast.NOTHING_NEW
    assert hookfast.wait_for_publisher(30)
    assert shared.held() == shared.local() and shared.waiting() == 0


def test_a_commit_returns_while_the_server_still_withholds_its_answer(shared: Shared,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit is over while the publisher it started still waits on the server: the commit
    never waited for the network, whatever the server does. (The previous release's hook made
    the requests itself: a header drip held `git commit` for 63 s.)"""
    monkeypatch.setenv("COSTATTR_API_TIMEOUT", PATIENT)
    for mode in ("hang", "header-drip", "body-drip", "slow"):
        shared.api.mode, shared.api.delay = mode, 120.0
        shared.work()
        out, _ = shared.commit(mode)
        assert hookfast.publisher_running(), mode  # the commit returned before the server said anything
        assert "spend not recorded" not in out and " on main" in out, (mode, out)  # recorded, as always
        shared.api.stop()  # the server goes away mid-answer: the publisher fails, the records wait
        assert hookfast.wait_for_publisher(30), mode
        status = last_status()
        assert status is not None and status.ok is False and status.waiting == len(shared.local()) > 0, mode
        assert hookfast.is_waiting(shared.repo) and shared.api.count("PUT") == 0, mode
        shared.api.start()


def test_records_waiting_never_make_a_commit_retry_in_the_foreground(shared: Shared,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """While records wait, a commit with nothing new takes the fast path and leaves the retry
    to a background publisher (the previous release retried in every hook: 2.3-2.9 s per commit,
    kept on by a single `publish-waiting` file, which is replaced here)."""
    legacy = Path(os.environ["COSTATTR_HOME"]) / hookfast.WAITING_NAME
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_text("")
    shared.api.stop()  # unreachable: the publisher fails at once
    shared.work()
    shared.commit()
    assert hookfast.wait_for_publisher(30)
    assert shared.waiting() == len(shared.local()) > 0 and hookfast.is_waiting(shared.repo) and legacy.is_dir()
    shared.work()
    out, _ = shared.commit()  # the next full hook says how the last background try went, in one line
    assert "last background try: memory API unreachable (" in out and "trying again in the background" in out
    assert len([line for line in out.splitlines() if "memory API" in line]) == 1 and API_KEY not in out
    assert hookfast.wait_for_publisher(30)

    shared.api.start()
    monkeypatch.setenv("COSTATTR_API_TIMEOUT", PATIENT)
    shared.api.mode = "hang"
    out, _ = shared.commit("nothing new")
    assert out.strip() == hookfast.NOTHING_NEW  # the fast path answered
    assert hookfast.publisher_running()  # and the retry runs in the background, unwaited
    shared.api.stop()
    assert hookfast.wait_for_publisher(30)

    shared.api.start()
    shared.api.mode = "ok"
    out, _ = shared.commit("nothing new, server back")
    assert out.strip() == hookfast.NOTHING_NEW
    assert hookfast.wait_for_publisher(30)
    assert shared.held() == shared.local() and shared.waiting() == 0
    assert not hookfast.is_waiting(shared.repo)


def test_one_publisher_at_a_time_and_it_takes_what_a_hook_added_meanwhile(shared: Shared,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A second commit while the first publisher is mid-PUT starts no second publisher; the
    running one finds its records and sends them too."""
    monkeypatch.setenv("COSTATTR_API_TIMEOUT", PATIENT)
    seconds: list[str] = []

    def commit_during_the_put(server: FakeMemoryApi) -> None:
        if not seconds:  # the first PUT only: the publisher is inside its run, holding the lock
            shared.work()
            seconds.append(shared.commit("meanwhile")[0])

    shared.api.before_put = commit_during_the_put
    shared.work()
    shared.commit("first")
    assert hookfast.wait_for_publisher(60)
    assert seconds and "memory API" not in seconds[0]
    assert shared.held() == shared.local() and shared.waiting() == 0
    log = (Path(os.environ["COSTATTR_HOME"]) / "costattr.log").read_text()
    assert log.count("background publisher: ") == 1  # one run sent both commits' records
    assert shared.api.count("PUT") == 2


def test_the_run_has_one_deadline_that_a_header_drip_cannot_extend(shared: Shared,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A header dripping faster than any per-read timeout restarts it with every byte; the run
    still ends at its deadline (1 s here; the previous release's hook took 63 s)."""
    monkeypatch.setenv("COSTATTR_API_TIMEOUT", "1")
    shared.api.mode, shared.api.drip = "header-drip", 0.3
    shared.work()
    shared.commit()
    assert hookfast.wait_for_publisher(20)  # a drip that outlived the deadline would keep the lock
    status = last_status()
    assert status is not None and status.ok is False and "no answer within 1 s" in status.message
    assert status.finished_at is not None and status.finished_at - status.started_at < 10


def test_upload_by_hand_publishes_in_the_foreground_within_the_deadline(shared: Shared,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    shared.work()
    proc = subprocess.run([sys.executable, "-m", "costattr", "upload"], cwd=shared.repo, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "memory API: published" in proc.stderr, proc.stderr
    assert not hookfast.publisher_running() and shared.held() == shared.local()

    monkeypatch.setenv("COSTATTR_API_TIMEOUT", "1")
    shared.api.mode, shared.api.drip = "header-drip", 0.3
    shared.work()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "costattr", "upload"], cwd=shared.repo, capture_output=True,
                          text=True, timeout=60)
    assert time.monotonic() - t0 < 15  # the deadline (1 s) plus start-up, where the drip alone lasts hours
    assert proc.returncode == 0 and "no answer within 1 s" in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------------------------
# Lock waits: a peer holding a lock costs the hook a second or two, never 10-15 s


_HOLD = ("import sqlite3, sys, time\n"
         "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "conn.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         "time.sleep(600)\n")


def _hold_write_lock(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _hook(repo: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "costattr", "upload", "--hook"], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    return proc, time.monotonic() - t0


@pytest.fixture
def local_repo(tmp_path: Path, env_dirs: dict[str, Path]) -> Shared:
    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(repo, "initial")
    world = Shared(repo, env_dirs["claude"] / "projects", FakeMemoryApi())
    world.work()
    proc, _ = _hook(repo)  # creates the ledger and the scan cache
    assert proc.returncode == 0, proc.stderr
    return world


def test_a_peer_holding_a_lock_costs_the_hook_a_second_or_two(local_repo: Shared) -> None:
    home = Path(os.environ["COSTATTR_HOME"])
    # The ledger: the hook gives up, records nothing this time, says so in one line.
    before = local_repo.local()
    local_repo.work()
    holder = _hold_write_lock(home / "ledger.sqlite")
    try:
        proc, took = _hook(local_repo.repo)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0
    assert took < 8  # the previous release waited 10 s for the lock, then gave up
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "busy" in lines[0] and "recorded by the next hook" in lines[0], proc.stderr
    assert local_repo.local() == before
    # The scan cache, an optimisation: the hook waits briefly, then records without it (and what
    # the last hook left is recorded now: nothing was lost).
    holder = _hold_write_lock(home / "cache" / "scan.sqlite")
    try:
        proc, took = _hook(local_repo.repo)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert took < 8  # the previous release waited 15 s
    assert len(local_repo.local()) > len(before)


def test_a_symlink_planted_as_the_publisher_lock_is_never_followed(shared: Shared, tmp_path: Path) -> None:
    target = tmp_path / "somebody-elses-file"
    target.write_text("precious\n")
    home = Path(os.environ["COSTATTR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / hookfast.LOCK_NAME).symlink_to(target)
    shared.work()
    out, _ = shared.commit()
    assert "spend not recorded" not in out and shared.local()  # the commit and its spend are unaffected
    assert target.read_text() == "precious\n"
    log = (home / "costattr.log").read_text()
    assert "background publisher not started: " in log and hookfast.is_waiting(shared.repo)
