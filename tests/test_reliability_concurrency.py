"""Concurrency: many hooks at once, in one repository and in two worktrees of it, converge to the
figures of a single clean upload; the store's lock times out; a lock left by a killed process
never blocks.

All uploads are real `python -m costattr upload --hook` processes: 64 of them, 16 running at any
moment, racing for SQLite's write lock (and, on a new machine, to create the store's tables).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest
from fake_memory_api import FakeMemoryApi
from helpers_reliability import (
    HOOK,
    PY,
    assert_valid_ledger,
    build_world,
    clean_reference,
    diff_figures,
    env_with,
    figures,
    ledger_file,
    leftovers,
    read_records,
    run_cli,
    start_cli,
    total_cost,
    wait_all,
)

from costattr.hookfast import wait_for_publisher
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.store import LocalStore
from costattr.testing.gitrepo import git
from costattr.testing.transcripts import ClaudeSessionWriter

N_CONCURRENT = 16
N_HOOKS = 64


def _concurrent_uploads(cwds: list[Path], total: int = N_HOOKS, at_once: int = N_CONCURRENT
                        ) -> list[tuple[int, str, str]]:
    """`total` hooks spread over `cwds`, `at_once` of them running at every moment."""
    # The scan cache exists already (`costattr sessions` made it): a machine that has used costattr
    # before. Sixteen first runs creating it together is its own test below. The ledger does not
    # exist yet: the first sixteen race to create its tables.
    assert run_cli("sessions", "--format", "json", cwd=cwds[0]).returncode == 0
    # Once a hook has finished, the next ones with nothing new would answer from the fast path:
    # every other hook skips it, so half of them race through the full write transaction.
    full = env_with(COSTATTR_NO_FAST_PATH="1")
    running: list[subprocess.Popen[str]] = []
    results: list[tuple[int, str, str]] = []
    started = 0
    while started < total or running:
        while started < total and len(running) < at_once:
            running.append(start_cli(*HOOK, cwd=cwds[started % len(cwds)], env=full if started % 2 else None))
            started += 1
        finished = [p for p in running if p.poll() is not None]
        results += wait_all(finished)
        running = [p for p in running if p not in finished]
        time.sleep(0.02)
    return results


def _assert_all_recorded(results: list[tuple[int, str, str]]) -> None:
    for rc, _out, err in results:
        assert rc == 0, err
        assert "not recorded" not in err and "busy" not in err, err


def test_64_uploads_16_at_once_in_one_repository(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs)
    reference = clean_reference([world.repo], tmp_path / "ref-home")
    assert reference, "the world has spend to attribute"

    results = _concurrent_uploads([world.repo])
    _assert_all_recorded(results)
    home = env_dirs["costattr_home"]
    assert_valid_ledger(home)
    got = figures(home)
    assert got == reference, diff_figures(got, reference)  # no double count, each request where it belongs
    assert total_cost(got) == total_cost(reference)
    assert leftovers(home) == {"tmp": [], "corrupt": []}


def test_64_uploads_16_at_once_in_two_worktrees(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs, sessions=6)
    reference = clean_reference([world.repo, world.wt], tmp_path / "ref-home")
    # Both work trees' sessions are there, each closed into its own work tree's commit.
    commits = {commit for f in reference.values() for _state, _branch, commit, *_rest in f["spend"] if commit}
    assert commits == {git(world.repo, "rev-parse", "HEAD"), git(world.wt, "rev-parse", "HEAD")}

    results = _concurrent_uploads([world.repo, world.wt])
    _assert_all_recorded(results)
    home = env_dirs["costattr_home"]
    assert_valid_ledger(home)
    got = figures(home)
    assert got == reference, diff_figures(got, reference) + "\n" + "\n".join(r[1] + r[2] for r in results)
    assert leftovers(home) == {"tmp": [], "corrupt": []}


def test_hooks_publishing_at_once_lose_nothing(tmp_path: Path, env_dirs: dict[str, Path],
                                               memory_api: FakeMemoryApi) -> None:
    """16 hooks at once, each handing its records to the background publisher (one runs at a time;
    the others' records are picked up by it or wait): one more hook sends the rest, and the shared
    ledger holds exactly the local records."""
    world = build_world(tmp_path, env_dirs)
    env = env_with(COSTATTR_LEDGER="memory-api", COSTATTR_API_URL=memory_api.url,
                   COSTATTR_API_USER=memory_api.user, COSTATTR_API_KEY=memory_api.key, COSTATTR_NO_FAST_PATH="1")
    memory_api.put_delay = 0.05  # a wider read-modify-write window: conflicts for sure
    assert run_cli("sessions", cwd=world.repo).returncode == 0
    stop = threading.Event()

    def assistant() -> None:  # new spend all along, so many hooks have records of their own to send
        while not stop.is_set():
            world.grow(1)
            time.sleep(0.05)

    t = threading.Thread(target=assistant)
    t.start()
    try:
        results = wait_all([start_cli(*HOOK, cwd=world.work_trees[i % 2], env=env) for i in range(N_CONCURRENT)])
    finally:
        stop.set()
        t.join()
    _assert_all_recorded(results)
    assert wait_for_publisher(60)
    proc = run_cli(*HOOK, cwd=world.repo, env=env)
    assert proc.returncode == 0 and "wait in the local ledger" not in proc.stderr, proc.stderr
    assert wait_for_publisher(60)
    home = env_dirs["costattr_home"]
    held = MemoryApiLedger(memory_api.url, memory_api.user, memory_api.key, timeout=10).read()
    assert held.set_aside.count == 0 and set(held.records) == set(read_records(home))
    with LocalStore(ledger_file(home)) as store:
        assert [n for _target, _label, n in store.targets()] == [0]  # nothing left waiting


def test_concurrent_uploads_while_the_assistant_keeps_writing(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    """Transcripts grow while 64 hooks run, 16 at a time, in two worktrees; one more clean upload
    per work tree then gives exactly what a single clean upload over the final transcripts gives."""
    world = build_world(tmp_path, env_dirs, sessions=4)
    stop = threading.Event()
    written = [0]

    def assistant() -> None:
        while not stop.is_set():
            written[0] += world.grow(1)
            time.sleep(0.01)

    t = threading.Thread(target=assistant)
    t.start()
    try:
        results = _concurrent_uploads([world.repo, world.wt])
    finally:
        stop.set()
        t.join()
    world.close()
    _assert_all_recorded(results)
    assert written[0] > 0
    home = env_dirs["costattr_home"]
    assert_valid_ledger(home)
    for cwd in world.work_trees:
        proc = run_cli(*HOOK, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    reference = clean_reference(list(world.work_trees), tmp_path / "ref-home")
    got = figures(home)
    assert got == reference, diff_figures(got, reference)


def test_a_stale_scan_records_nothing_twice_and_moves_nothing(tmp_path: Path, env_dirs: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Hook A scans, hook B (another work tree) scans later and records more; A, slower, then takes
    the lock. In v1 A replaced B's entry with its older view (a lost closed segment, spend later
    moved to the wrong commit). In v2 the rule is coverage by request keys, checked inside the
    write transaction: what A's stale scan holds, B has covered already, so A adds nothing, and
    B's records (the request on main left open, the worktree's closed into its commit) stay."""
    from costattr import gitctx, record
    from costattr.config import load_config

    world = build_world(tmp_path, env_dirs, sessions=0)
    projects = env_dirs["claude"] / "projects"
    # One session used first in the main work tree (on main, not committed), then in the worktree.
    w = ClaudeSessionWriter(projects, cwd=str(world.repo), branch="main", seed=3)
    w.response(output=100)
    repo_git = gitctx.discover(world.repo)
    stale = record.session_events(repo_git, load_config(world.repo))  # hook A's scan, before the rest
    w.branch, w.cwd = "ENG-42-cache", str(world.wt)
    w.response(output=700)
    w.close()
    wt_git = gitctx.discover(world.wt)
    record.upload(wt_git, load_config(world.wt))  # hook B: closes the worktree spend into its commit
    reference = clean_reference([world.wt, world.repo], tmp_path / "ref-home")

    # A scoped patch: monkeypatch.undo() would also undo the isolation conftest set up.
    with monkeypatch.context() as m:
        m.setattr(record, "session_events", lambda *a, **k: stale)
        record.upload(repo_git, load_config(world.repo))  # hook A, late, with its stale scan
    assert figures(env_dirs["costattr_home"]) == reference

    record.upload(repo_git, load_config(world.repo))  # and the next ordinary hook agrees
    assert figures(env_dirs["costattr_home"]) == reference


# Holds the store's write lock (the real LocalStore, BEGIN IMMEDIATE) with a change not committed.
_HOLD_LOCK = """
import sys, time
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.store import LocalStore
with LocalStore().write() as tx:
    tx.set_meta("half-done", "never committed")
    print("locked", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def _hold_ledger_lock(seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([PY, "-c", _HOLD_LOCK, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def _meta(home: Path, key: str) -> str | None:
    with LocalStore(ledger_file(home)) as store:
        return store.meta(key)


def test_lock_left_by_a_killed_process_does_not_block(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs)
    reference = clean_reference([world.repo], tmp_path / "ref-home")
    home = env_dirs["costattr_home"]
    holder = _hold_ledger_lock(600)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    wal = Path(str(ledger_file(home)) + "-wal")
    assert wal.exists()  # the killed writer's journal is still there, its lock gone with it
    started = time.monotonic()
    proc = run_cli(*HOOK, cwd=world.repo, env=env_with(COSTATTR_LOCK_TIMEOUT="30"))
    assert proc.returncode == 0 and "busy" not in proc.stderr, proc.stderr
    assert time.monotonic() - started < 20  # not waited on: the kernel dropped the dead process's lock
    assert figures(home) == reference
    assert _meta(home, "half-done") is None  # and its change never became visible


def test_garbage_in_sqlites_side_files_does_not_block(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    """v1 had lock files; v2's equivalents are SQLite's -wal and -shm, which a crash leaves behind.
    Garbage in them (no valid WAL header) is discarded by SQLite: nothing blocks, nothing is lost."""
    world = build_world(tmp_path, env_dirs)
    home = env_dirs["costattr_home"]
    assert run_cli(*HOOK, cwd=world.repo).returncode == 0
    for suffix in ("-wal", "-shm"):
        Path(str(ledger_file(home)) + suffix).write_bytes(b"\x00\xffpid=99999 stale\n" * 4000)
    cache = home / "cache" / "scan.sqlite"
    Path(str(cache) + "-shm").write_bytes(b"garbage" * 5000)
    world.grow(3)
    proc = run_cli(*HOOK, cwd=world.repo)  # the first to open the store after the crash
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    # What was committed before is all there, and the new spend was recorded once.
    assert figures(home) == clean_reference([world.repo], tmp_path / "ref-home")
    assert leftovers(home)["corrupt"] == []


def test_a_live_lock_holder_makes_the_hook_time_out_not_hang(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs)
    reference = clean_reference([world.repo], tmp_path / "ref-home")
    home = env_dirs["costattr_home"]
    holder = _hold_ledger_lock(600)
    try:
        env = env_with(COSTATTR_LOCK_TIMEOUT="1")
        started = time.monotonic()
        hook = run_cli(*HOOK, cwd=world.repo, env=env)
        elapsed = time.monotonic() - started
        plain = run_cli("upload", cwd=world.repo, env=env)
        report = run_cli("report", "--format", "json", cwd=world.repo, env=env)  # readers never wait (WAL)
    finally:
        holder.kill()
        holder.wait()
    assert hook.returncode == 0  # never fails a commit
    assert elapsed < 15
    lines = [ln for ln in hook.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "busy" in lines[0] and "not recorded" in lines[0], hook.stderr
    assert plain.returncode == 1 and "busy" in plain.stderr
    assert report.returncode == 0, report.stderr
    assert read_records(home) == {}  # nothing half-written meanwhile
    # The next hook records everything: no request was marked covered.
    proc = run_cli(*HOOK, cwd=world.repo)
    assert proc.returncode == 0, proc.stderr
    assert figures(home) == reference


def test_a_first_run_never_drops_the_cache_another_process_is_creating(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic replay of sixteen first runs racing to create the scan cache: another
    process holds the write lock while it creates the table; the late one has already read
    user_version 0 and waits. When it gets the lock it must see the table, not drop it."""
    import re
    import sqlite3

    from costattr.scan import CACHE_VERSION, ScanCache

    path = tmp_path / "scan.sqlite"
    creator = sqlite3.connect(path, isolation_level=None, timeout=15)
    creator.execute("PRAGMA journal_mode=WAL")
    creator.execute("BEGIN IMMEDIATE")
    seen: dict[str, object] = {}
    waiting = threading.Event()  # the late run has started a statement that needs the write lock
    real_connect = sqlite3.connect

    def traced_connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: waiting.set() if re.match(
            r"\s*(DROP|CREATE|BEGIN|INSERT|DELETE|PRAGMA\s+user_version\s*=)", sql, re.I) else None)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced_connect)

    def late_first_run() -> None:
        cache = ScanCache(path)
        try:
            conn = cache.open()
            assert conn is not None
            seen["rows"] = conn.execute("SELECT count(*) FROM files").fetchone()[0]
            seen["notice"] = cache.notice
        finally:
            cache.close()

    t = threading.Thread(target=late_first_run)
    t.start()
    assert waiting.wait(20)  # it has read user_version 0 and now waits for the write lock
    time.sleep(0.2)
    creator.execute("CREATE TABLE files (path TEXT PRIMARY KEY, tool TEXT, dev INTEGER, ino INTEGER, size INTEGER,"
                    " mtime_ns INTEGER, cwds TEXT, state BLOB)")
    creator.execute("INSERT INTO files VALUES ('/t/a.jsonl', 'claude', 1, 2, 3, 4, '[]', '{}')")
    creator.execute(f"PRAGMA user_version={CACHE_VERSION}")
    creator.execute("COMMIT")
    creator.close()
    t.join(30)
    assert seen.get("notice") is None, seen  # a busy cache is not a corrupt one
    assert seen.get("rows") == 1  # and the other process's work is still there
    assert not list(tmp_path.glob("scan.sqlite.corrupt-*"))


def test_commits_in_two_worktrees_at_once_fire_real_hooks(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    """The installed hook, fired by real `git commit`s racing in both worktrees."""
    world = build_world(tmp_path, env_dirs)
    assert run_cli("install", cwd=world.repo).returncode == 0
    assert run_cli("sessions", cwd=world.repo).returncode == 0  # a machine that has run costattr before
    procs = []
    for i in range(8):
        for cwd in world.work_trees:
            # Empty commits racing in both worktrees, each firing the installed hook.
            procs.append(subprocess.Popen(
                ["git", "-C", str(cwd), "commit", "-q", "--allow-empty", "-m", f"work {i}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with()))
            time.sleep(0.05)  # git takes HEAD.lock: commits in one worktree cannot truly overlap
    results = wait_all(procs)
    home = env_dirs["costattr_home"]
    assert_valid_ledger(home)
    for rc, _out, err in results:
        if rc != 0:  # git itself refused (HEAD.lock held by the sibling commit): not ours to judge
            assert "lock" in err.lower(), err
        else:
            assert "not recorded" not in err, err
    # However the commits interleaved, every session is recorded once and nothing is double counted.
    for cwd in world.work_trees:
        proc = run_cli(*HOOK, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    final = figures(home)
    sessions_json = run_cli("sessions", "--format", "json", cwd=world.repo)
    by_id = {s["session_id"]: s for s in orjson.loads(sessions_json.stdout)["sessions"]}
    assert final and set(final) <= set(by_id)
    real = set(git(world.repo, "log", "--all", "--format=%H").split())
    for sid, f in final.items():
        assert f["requests"] == by_id[sid]["requests"]
        assert f["cost_usd"] == by_id[sid]["cost_usd"]
        assert sum(n for *_where, n, _cost in f["spend"]) == f["requests"]
        # Closed spend sits on commits that exist: each hook closed into its own work tree's HEAD.
        assert {commit for state, _b, commit, *_r in f["spend"] if state == "closed"} <= real
