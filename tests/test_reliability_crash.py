"""Crashes: hooks killed with SIGKILL at random moments, many times in a row, then one clean
upload, give exactly the figures of a single clean upload; and SIGKILL at each precise moment
of a write (temp written, renamed, lock held, cache half-stored, outbox half-written) leaves
nothing a later run misreads, loses or double counts.
"""

from __future__ import annotations

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
    assert_valid_ledger,
    build_world,
    env_with,
    figures,
    ledger_file,
    leftovers,
    run_cli,
    start_cli,
)

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
            # A full hook takes ~0.3-1 s here (interpreter start included): most die mid-way.
            kill_at = [rng.uniform(0.02, 0.45) for _ in procs]
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
            assert_valid_ledger(home)
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
        assert figures(home) == figures(ref_home), f"phase {phase}"
    print(f"\nrandom SIGKILLs delivered: {delivered}, hooks that finished before their kill: {finished}")
    assert delivered >= PHASES * ROUNDS // 2  # most hooks really were killed mid-way
    # Killed writers' temp files are swept by the next ledger write.
    assert [p for p in leftovers(home)["tmp"] if p.startswith(".ledger.json")] == []
    world.close()


# ---------------------------------------------------------------------------------------------
# SIGKILL at precise points, by a wrapper that patches costattr and then runs `python -m costattr`

_KILL_AT = r'''
import os, runpy, signal, sys
point, argv = sys.argv[1], sys.argv[2:]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_replace = os.replace
def replace(src, dst, *a, **k):
    name = os.path.basename(str(dst))
    if point == "ledger-before-rename" and name == "ledger.json": die()
    if point == "state-before-rename" and name == "hook-state.json": die()
    if point == "outbox-before-rename" and "/outbox/" in str(dst) and not name.startswith(".") and ".corrupt-" not in name: die()
    real_replace(src, dst, *a, **k)
    if point == "ledger-after-rename" and name == "ledger.json": die()
    if point == "outbox-after-rename" and "/outbox/" in str(dst) and not name.startswith("."): die()
os.replace = replace

if point == "lock-held":
    from costattr.ledger import jsonfile
    real_load = jsonfile.JsonLedger._load
    def load(self, *, locked):
        out = real_load(self, locked=locked)
        if locked: die()
        return out
    jsonfile.JsonLedger._load = load

if point in ("cache-mid-store", "cache-stored"):
    # At the SQLite level, whatever shape the scan code has: the first COMMIT after rows were written.
    import sqlite3
    real_connect = sqlite3.connect
    class Conn(sqlite3.Connection):
        wrote = False
        def executemany(self, sql, *a):
            if "INSERT" in sql.upper():
                self.wrote = True
            return super().executemany(sql, *a)
        def execute(self, sql, *a):
            if sql.strip().upper() == "COMMIT" and self.wrote:
                if point == "cache-mid-store":
                    super().execute("DELETE FROM files")  # the half-done transaction wrecks the table...
                    die()  # ...and dies before COMMIT: the next run must find the old cache intact
                super().execute(sql, *a)
                die()  # the cursors moved, the ledger not written yet
            return super().execute(sql, *a)
    def connect(*a, **k):
        k["factory"] = Conn
        return real_connect(*a, **k)
    sqlite3.connect = connect

sys.argv = ["costattr", *argv]
runpy.run_module("costattr", run_name="__main__")
'''

POINTS = ["ledger-before-rename", "ledger-after-rename", "lock-held", "cache-mid-store", "cache-stored",
          "state-before-rename"]


def _killed_at(point: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([PY, "-c", _KILL_AT, point, *HOOK], cwd=cwd, env=env or env_with(), capture_output=True,
                          text=True, timeout=120, check=False)
    return proc


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_step_of_a_write(point: str, tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs)
    home = env_dirs["costattr_home"]
    ref_env = env_with(COSTATTR_HOME=str(tmp_path / "ref-home"))
    # A ledger written before, then more spend, then the hook killed at `point`, twice in a row.
    assert run_cli(*HOOK, cwd=world.repo).returncode == 0
    world.grow(4)
    before = ledger_file(home).read_bytes()
    for _ in range(1 if point == "cache-stored" else 2):  # once stored, the next run writes no cache
        proc = _killed_at(point, world.repo)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
        assert_valid_ledger(home)  # the old ledger or the new one, never a torn one
        if point in ("ledger-before-rename", "lock-held", "cache-mid-store", "cache-stored"):
            assert ledger_file(home).read_bytes() == before  # nothing moved: the watermark neither
    # Then one clean hook, through the fast path like a real commit: exactly a single clean upload.
    proc = run_cli(*HOOK, cwd=world.repo)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert run_cli(*HOOK, cwd=world.repo, env=ref_env).returncode == 0
    assert figures(home) == figures(tmp_path / "ref-home")
    left = leftovers(home)
    assert left["corrupt"] == []
    assert [p for p in left["tmp"] if p.startswith(".ledger.json")] == []  # swept under the lock


@pytest.mark.parametrize("point", ["outbox-before-rename", "outbox-after-rename"])
def test_sigkill_while_writing_the_outbox(point: str, tmp_path: Path, env_dirs: dict[str, Path],
                                          memory_api: FakeMemoryApi) -> None:
    world = build_world(tmp_path, env_dirs)
    env = env_with(COSTATTR_LEDGER="memory-api", COSTATTR_API_URL=memory_api.url, COSTATTR_API_USER=memory_api.user,
                   COSTATTR_API_KEY=memory_api.key)
    memory_api.mode = "error"  # the shared ledger is down: entries go to the outbox
    for _ in range(2):
        proc = _killed_at(point, world.repo, env)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert_valid_ledger(env_dirs["costattr_home"])
    memory_api.mode = "ok"
    proc = run_cli(*HOOK, cwd=world.repo, env=env)
    assert proc.returncode == 0 and "not recorded" not in proc.stderr, proc.stderr
    assert "unreadable" not in proc.stderr  # no half-written outbox file was ever visible
    local = figures(env_dirs["costattr_home"])
    shared = {sid: {k: v for k, v in e.items() if k not in ("updated_at", "branch")} for sid, e in memory_api.data().items()}
    assert local and shared == local  # the shared ledger got exactly the local figures
    ref_env = env_with(COSTATTR_HOME=str(tmp_path / "ref-home"))
    assert run_cli(*HOOK, cwd=world.repo, env=ref_env).returncode == 0
    assert local == figures(tmp_path / "ref-home")
    assert leftovers(env_dirs["costattr_home"])["corrupt"] == []
