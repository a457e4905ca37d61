"""Crashes: hooks killed with SIGKILL at random moments, many times in a row, then one clean
upload, give exactly the figures of a single clean upload; and SIGKILL at each precise moment of
a write leaves nothing a later run misreads, loses or double counts.

v1 wrote the ledger as a JSON temp file renamed into place and kept an outbox of copies; v2 writes
one SQLite transaction per hook and publishes what lies past a delivery mark, so the moments that
matter are now: inside the store transaction (at any of its statements: the store is exactly as
before), right after its COMMIT (exactly as after), between the store and the shared backend (the
records wait past the mark), after the backend accepted them but before the mark moved (sent
again, merged by id), and the scan cache and the fast-path state around them.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from fake_memory_api import FakeMemoryApi
from helpers_reliability import (
    HOOK,
    PY,
    assert_store_intact,
    build_world,
    diff_figures,
    env_with,
    figures,
    ledger_file,
    leftovers,
    read_records,
    run_cli,
    start_cli,
    store_dump,
)

from costattr.hookfast import PUBLISH_COMMAND, try_lock, wait_for_publisher
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.publish import waiting
from costattr.ledger.store import LocalStore
from costattr.testing.gitrepo import commit, git

SEED = 20261124
PHASES = 3  # commits; each gets killed hooks, then one clean hook
ROUNDS = 10  # rounds of killed hooks per phase


def _cache_ready(home: Path) -> bool:
    from costattr.scan import CACHE_VERSION

    path = home / "cache" / "scan.sqlite"
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return bool(conn.execute("PRAGMA user_version").fetchone()[0] == CACHE_VERSION)
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def test_hooks_killed_at_random_moments_then_one_clean_upload(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    rng = random.Random(SEED)
    world = build_world(tmp_path, env_dirs, seed=SEED % 1000)
    home = env_dirs["costattr_home"]
    ref_home = tmp_path / "ref-home"
    ref_env = env_with(COSTATTR_HOME=str(ref_home))
    writer = world.writers[0]
    # How long a whole hook takes here (a first one, without a scan cache: the slowest kind):
    # kills are spread over all of it, so they land in the scan, the store transaction, after it.
    started = time.monotonic()
    assert run_cli(*HOOK, cwd=world.repo, env=env_with(COSTATTR_HOME=str(tmp_path / "timing"))).returncode == 0
    whole = time.monotonic() - started
    torn = b""
    delivered = finished = 0
    for phase in range(PHASES):
        if phase == 1:
            commit(world.repo, "login: second cut")
        if phase == 2:
            git(world.repo, "checkout", "-q", "-b", "PROJ-8-remember-me")
            commit(world.repo, "remember me")
            for w in world.writers:
                if w.branch == "feature/PROJ-7-login":
                    w.branch = "PROJ-8-remember-me"
        for _round in range(ROUNDS):
            # Several hooks at once once the cache exists; its creation race has its own test.
            n = rng.choice([1, 2, 3]) if _cache_ready(home) else 1
            started = time.monotonic()
            procs = [start_cli(*HOOK, cwd=world.repo) for _ in range(n)]
            # Most die mid-way (a few at the very end, or after it).
            kill_at = [rng.uniform(0.02, whole * 2) for _ in procs]
            for p, at in sorted(zip(procs, kill_at, strict=True), key=lambda pa: pa[1]):
                time.sleep(max(0.0, started + at - time.monotonic()))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    delivered += 1
                else:
                    finished += 1
            for p in procs:
                p.communicate(timeout=60)
            # After any kill: the ledger is whole or absent, and nothing was judged corrupt.
            assert_store_intact(home)
            assert leftovers(home)["corrupt"] == []
            if rng.random() < 0.85:  # new spend, so the next hooks take the full path (not the fast one)
                world.grow(rng.randint(1, 4))
            if not torn and rng.random() < 0.3:  # the assistant is mid-line: a torn last line
                path = writer.file.path
                size = path.stat().st_size
                writer.response(output=rng.randint(50, 500), blocks=1)
                line = path.read_bytes()[size:]
                with path.open("r+b") as f:
                    f.truncate(size)
                cut = rng.randint(5, len(line) - 2)
                writer.raw(line[:cut])
                torn = line[cut:]
        if torn:  # completed later, as the assistant does: read once, when whole
            writer.raw(torn)
            torn = b""
        proc = run_cli(*HOOK, cwd=world.repo)  # the one clean upload of this commit
        assert proc.returncode == 0 and "not recorded" not in proc.stderr, proc.stderr
        ref = run_cli(*HOOK, cwd=world.repo, env=ref_env)  # a single clean upload, never killed
        assert ref.returncode == 0, ref.stderr
        got, want = figures(home), figures(ref_home)
        assert got == want, f"phase {phase}\n{diff_figures(got, want)}"
    print(f"\nrandom SIGKILLs delivered: {delivered} over {whole:.2f} s hooks, "
          f"hooks that finished before their kill: {finished}")
    assert delivered >= PHASES * ROUNDS // 2  # most hooks really were killed mid-way
    # The store never needs a temp file (SQLite's journal is its own); what a kill leaves of it
    # (-wal, -shm) was recovered by the next process, never moved aside.
    assert not [p for p in leftovers(home)["tmp"] if p.startswith(".ledger")]
    assert leftovers(home)["corrupt"] == []
    world.close()


# ---------------------------------------------------------------------------------------------
# SIGKILL at precise points, by a wrapper that patches costattr and then runs `python -m costattr`

_KILL_AT = r"""
import os, runpy, signal, sqlite3, sys
point, argv = sys.argv[1], sys.argv[2:]
name, _, arg = point.partition(":")

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_replace = os.replace
def replace(src, dst, *a, **k):
    if name == "state-before-rename" and os.path.basename(str(dst)) == "hook-state.json": die()
    real_replace(src, dst, *a, **k)
os.replace = replace

if name == "publish-after-send":  # the backend accepted the records; the mark is not moved yet
    from costattr.ledger.store import LocalStore
    LocalStore.mark_sent = lambda self, *a, **k: die()

class Conn(sqlite3.Connection):
    # Every statement of costattr's SQLite connections passes here: the ledger's (this machine's
    # store) and the scan cache's, told apart by file name.
    kind = ""
    wrote = False  # the current transaction inserted rows
    tx = 0  # write transactions begun on the ledger
    n = 0  # statements since the ledger's first BEGIN IMMEDIATE
    verbs = set()  # their first words

    def _ledger(self, sql):
        s = sql.strip().upper()
        if s.startswith("BEGIN IMMEDIATE"):
            self.tx += 1
            self.wrote = False
        first = self.tx == 1
        if first:
            self.n += 1
            self.verbs.add(s.split()[0])
            if name == "store-at" and self.n == int(arg): die()  # before statement n runs
            if s == "COMMIT" and name == "store-count":
                with open(arg, "w") as f:
                    f.write(" ".join([str(self.n), *sorted(self.verbs)]))
                die()
        if s == "COMMIT" and self.wrote and name == "store-before-commit": die()
        return first, s

    def _after(self, first, s):
        if s.startswith("INSERT OR IGNORE INTO RECORDS"):
            self.wrote = True
            if name == "store-mid-insert": die()  # one record in, the rest and their keys not yet
        if first and s.startswith("BEGIN IMMEDIATE") and name == "store-locked": die()
        if s == "COMMIT" and self.wrote and name == "store-after-commit": die()  # before publishing

    def execute(self, sql, *a):
        if self.kind == "ledger":
            first, s = self._ledger(sql)
            out = super().execute(sql, *a)
            self._after(first, s)
            return out
        if self.kind == "cache" and sql.strip().upper() == "COMMIT" and self.wrote:
            if name == "cache-mid-store":
                super().execute("DELETE FROM files")  # the half-done transaction wrecks the table...
                die()  # ...and dies before COMMIT: the next run must find the old cache intact
            if name == "cache-stored":
                super().execute(sql, *a)
                die()  # the cursors moved, the ledger not written yet
        return super().execute(sql, *a)

    def executemany(self, sql, *a):
        if self.kind == "ledger":
            first, s = self._ledger(sql)
            out = super().executemany(sql, *a)
            self._after(first, s)
            return out
        if self.kind == "cache" and "INSERT" in sql.upper():
            self.wrote = True
        return super().executemany(sql, *a)

real_connect = sqlite3.connect
def connect(database, *a, **k):
    k["factory"] = Conn
    conn = real_connect(database, *a, **k)
    base = os.path.basename(str(database))
    conn.kind = "ledger" if base == "ledger.sqlite" else "cache" if base == "scan.sqlite" else ""
    return conn
sqlite3.connect = connect

sys.argv = ["costattr", *argv]
runpy.run_module("costattr", run_name="__main__")
"""

# Where each point leaves the store: as it was before the hook, or with the hook's work whole.
POINTS = {
    "store-locked": "before",  # the write lock taken, nothing written
    "store-mid-insert": "before",  # some records inserted, their request keys not yet covered
    "store-before-commit": "before",  # everything written, COMMIT not reached
    "store-after-commit": "after",  # committed; the fast-path state not saved
    "cache-mid-store": "before",
    "cache-stored": "before",
    "state-before-rename": "after",
}


def _killed_at(point: str, cwd: Path, env: dict[str, str] | None = None,
               args: tuple[str, ...] = HOOK) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([PY, "-c", _KILL_AT, point, *args], cwd=cwd, env=env or env_with(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, (point, proc.stdout, proc.stderr)  # it really died there
    return proc


def _clean_hook(cwd: Path, env: dict[str, str] | None = None) -> None:
    """A hook that records (and publishes) without a word on stderr but the publishing line."""
    proc = run_cli(*HOOK, cwd=cwd, env=env)
    said = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("costattr: memory API: published")]
    assert proc.returncode == 0 and not said, proc.stderr
    assert wait_for_publisher(60)  # the background publisher the hook started, if any


@pytest.mark.parametrize("point", sorted(POINTS))
def test_sigkill_at_each_step_of_a_write(point: str, tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs)
    home = env_dirs["costattr_home"]
    ref_home = tmp_path / "ref-home"
    ref_env = env_with(COSTATTR_HOME=str(ref_home))
    # A ledger written before; then, twice, new spend and the hook killed at `point`.
    _clean_hook(world.repo)
    _clean_hook(world.repo, ref_env)
    for _ in range(2):
        world.grow(4)
        before = store_dump(home)
        _killed_at(point, world.repo)
        assert_store_intact(home)  # the old store or the new one, never a torn one
        if POINTS[point] == "before":
            assert store_dump(home) == before  # nothing moved: no record, no covered key, no mark
        else:
            _clean_hook(world.repo, ref_env)
            assert figures(home) == figures(ref_home)  # the hook's whole work, nothing less
    # Then one clean hook, through the fast path like a real commit: exactly a single clean upload.
    _clean_hook(world.repo)
    _clean_hook(world.repo, ref_env)
    assert figures(home) == figures(ref_home)
    assert leftovers(home)["corrupt"] == []


def test_sigkill_before_every_statement_of_the_store_transaction(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    """The hook's transaction, killed before each one of its statements in turn (BEGIN, reads of
    covered keys and open records, inserts, key coverage, marking absorbed open records, COMMIT):
    every time, the store is exactly what it was; the next hook records it all once."""
    world = build_world(tmp_path, env_dirs)
    home = env_dirs["costattr_home"]
    ref_env = env_with(COSTATTR_HOME=str(tmp_path / "ref-home"))
    _clean_hook(world.repo)
    _clean_hook(world.repo, ref_env)  # the reference lives the same history, never killed
    world.grow(6)
    # A commit on main, whose spend was left open: the hook closes it, absorbing the open records
    # in the same transaction.
    git(world.repo, "checkout", "-q", "main")
    commit(world.repo, "main: release")
    before = store_dump(home)
    count = tmp_path / "statements"
    _killed_at(f"store-count:{count}", world.repo)  # counts them, dies just before COMMIT
    assert store_dump(home) == before
    counted, *verbs = count.read_text().split()
    total = int(counted)
    print(f"\nthe hook's transaction: {total} statements ({', '.join(verbs)}), killed before each")
    # Absorbed open records are changed in place (UPDATE) or dropped (DELETE): either is covered.
    assert {"BEGIN", "SELECT", "INSERT", "COMMIT"} <= set(verbs) and {"UPDATE", "DELETE"} & set(verbs), verbs
    for n in range(1, total + 1):
        _killed_at(f"store-at:{n}", world.repo)
        assert_store_intact(home)
        assert store_dump(home) == before, f"killed before statement {n} of {total}"
    _clean_hook(world.repo)
    _clean_hook(world.repo, ref_env)
    assert figures(home) == figures(tmp_path / "ref-home")


@pytest.mark.parametrize("point", ["store-after-commit", "publish-after-send"])
def test_sigkill_between_the_store_and_the_shared_ledger(point: str, tmp_path: Path, env_dirs: dict[str, Path],
                                                          memory_api: FakeMemoryApi) -> None:
    """Killed after the store's COMMIT and before publishing, or after the memory API accepted the
    records and before the mark moved: the records wait past the mark, and the next hook, with no
    new spend, sends them (again: a union by id, nothing doubled)."""
    world = build_world(tmp_path, env_dirs)
    home = env_dirs["costattr_home"]
    env = env_with(COSTATTR_LEDGER="memory-api", COSTATTR_API_URL=memory_api.url,
                   COSTATTR_API_USER=memory_api.user, COSTATTR_API_KEY=memory_api.key)
    shared = MemoryApiLedger(memory_api.url, memory_api.user, memory_api.key, timeout=10)
    _clean_hook(world.repo, env)  # a machine that has published before: the mark exists
    for _ in range(2):
        world.grow(3)
        if point == "publish-after-send":  # the background publisher sends: it is the one killed
            lock = try_lock()  # so that the hook starts none of its own
            assert lock is not None and run_cli(*HOOK, cwd=world.repo, env=env).returncode == 0
            os.close(lock)
            _killed_at(point, world.repo, env, (PUBLISH_COMMAND,))
        else:
            _killed_at(point, world.repo, env)
        assert_store_intact(home)
        with LocalStore(ledger_file(home)) as store:
            assert waiting(store, shared, None) > 0  # recorded here, not marked delivered
        if point == "publish-after-send":
            assert set(shared.read().records) == set(read_records(home))  # delivered all the same
    _clean_hook(world.repo, env)
    with LocalStore(ledger_file(home)) as store:
        assert waiting(store, shared, None) == 0
    held = shared.read()
    assert held.set_aside.count == 0
    assert set(held.records) == set(read_records(home))  # the shared ledger got exactly the local records
    ref_env = env_with(COSTATTR_HOME=str(tmp_path / "ref-home"))
    _clean_hook(world.repo, ref_env)
    assert figures(home) == figures(tmp_path / "ref-home")
    assert leftovers(home)["corrupt"] == []
