"""Corruption: a truncated or garbage ledger, scan cache (the byte cursors), outbox file or
publish marker. The hook still exits 0 and still records the spend; the damaged file is moved
aside (its bytes kept, never overwritten or deleted) with one line saying where it went and how
to recover; reading commands exit non-zero with that message (the ledger) or rebuild (the cache).
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from fake_memory_api import FakeMemoryApi
from helpers_reliability import (
    HOOK,
    build_world,
    clean_reference,
    env_with,
    figures,
    ledger_file,
    leftovers,
    run_cli,
)

RNG = random.Random(1107)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------------
# The ledger

def _valid_ledger_bytes(home: Path) -> bytes:
    return ledger_file(home).read_bytes()


LEDGER_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: bytes(RNG.getrandbits(8) for _ in range(4096)),
    "empty": lambda good: b"",
    "nul-block": lambda good: b"\0" * len(good),  # what some file systems show after a power cut
    "invalid-utf8": lambda good: good.replace(b'"agent-costs"', b'"agent-\xff\xfe-costs"', 1),
    "lone-surrogate": lambda good: good.replace(b'"agent-costs"', b'"agent-\\ud800-costs"', 1),
    "not-a-ledger": lambda good: b'[1, 2, 3]',
    "invalid-entry": lambda good: orjson.dumps({"path": "agent-costs", "data": {"s": {"session_id": "s",
                                                                                      "cost_usd": "lots"}}}),
    "deep-nesting": lambda good: b'{"data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "merge-conflict": lambda good: b"<<<<<<< HEAD\n" + good + b"=======\n" + good + b">>>>>>> other\n",
}


@pytest.fixture
def recorded(tmp_path: Path, env_dirs: dict[str, Path]):  # type: ignore[no-untyped-def]
    """A world whose ledger holds its spend, and the reference figures of a clean upload."""
    world = build_world(tmp_path, env_dirs)
    assert run_cli(*HOOK, cwd=world.repo).returncode == 0  # a single clean upload: the reference
    return world, figures(env_dirs["costattr_home"])


@pytest.mark.parametrize("damage", sorted(LEDGER_DAMAGE))
def test_damaged_ledger_hook_records_anyway_and_keeps_the_file(damage: str, recorded, env_dirs: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    world, reference = recorded
    home = env_dirs["costattr_home"]
    bad = LEDGER_DAMAGE[damage](_valid_ledger_bytes(home))
    ledger_file(home).write_bytes(bad)
    proc = run_cli(*HOOK, cwd=world.repo)
    assert proc.returncode == 0
    lines = _lines(proc.stderr)
    assert len(lines) == 1, proc.stderr  # one line: where it went and how to recover
    kept = [p for p in home.glob("ledger.json.corrupt-*")]
    assert len(kept) == 1 and kept[0].read_bytes() == bad  # moved, byte for byte
    assert str(kept[0]) in lines[0] and "move it back" in lines[0]
    assert figures(home) == reference  # and the spend is recorded in a fresh ledger


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-a-ledger", "invalid-entry"])
def test_damaged_ledger_reading_commands_fail_with_the_message(damage: str, recorded, env_dirs: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    world, _reference = recorded
    home = env_dirs["costattr_home"]
    bad = LEDGER_DAMAGE[damage](_valid_ledger_bytes(home))
    ledger_file(home).write_bytes(bad)
    report = run_cli("report", "--format", "json", cwd=world.repo)
    assert report.returncode == 1 and report.stdout == ""
    kept = list(home.glob("ledger.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bad
    assert str(kept[0]) in report.stderr and "hint:" in report.stderr and "move it back" in report.stderr
    # The file is kept aside once: the next reading command finds no ledger, not a second copy.
    again = run_cli("report", "--format", "json", cwd=world.repo)
    assert again.returncode == 0 and len(list(home.glob("ledger.json.corrupt-*"))) == 1
    # The bot, with --strict, fails the same way; by default it never fails a build.
    ledger_file(home).write_bytes(bad)
    strict = run_cli("comment", "--dry-run", "--pr", "1", "--strict", cwd=world.repo)
    assert strict.returncode != 0 and "moved to" in strict.stderr
    assert len(list(home.glob("ledger.json.corrupt-*"))) == 2


def test_a_reader_never_moves_aside_a_ledger_a_writer_just_replaced(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A report reads a damaged ledger; before it moves the file aside, a hook writes a good one
    in its place. The good one must stay: damage is judged again under the lock."""
    from costattr.ledger import jsonfile
    from costattr.models import LedgerEntry

    ledger = jsonfile.JsonLedger(tmp_path / "ledger.json")
    ledger.path.write_bytes(b"{ torn")
    good = jsonfile.encode_ledger({"s1": LedgerEntry(session_id="s1", cost_usd=1.5)})
    real_decode = jsonfile.decode_ledger
    calls = []

    def decode(raw: bytes):  # type: ignore[no-untyped-def]
        calls.append(raw)
        if len(calls) == 1:  # the hook's atomic write lands right after the report read the bytes
            jsonfile.atomic_write_bytes(ledger.path, good)
        return real_decode(raw)

    monkeypatch.setattr(jsonfile, "decode_ledger", decode)
    entries = ledger.read()
    assert list(entries) == ["s1"] and ledger.path.read_bytes() == good
    assert not list(tmp_path.glob("ledger.json.corrupt-*"))


def test_moving_aside_never_overwrites_an_earlier_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes moving files aside in the same second, each having checked the name was free:
    the name is reserved atomically, so neither copy replaces the other."""
    from costattr import fsutil

    target = tmp_path / "ledger.json"
    kept = []
    # Scoped: monkeypatch.undo() would also undo conftest's isolation of the real home.
    with monkeypatch.context() as m:
        m.setattr(fsutil.time, "strftime", lambda fmt: "20261124T000000")
        m.setattr(Path, "exists", lambda self: False)  # every check says "free", as in a race
        for body in (b"first damaged copy", b"second damaged copy", b"third"):
            target.write_bytes(body)
            kept.append(fsutil.move_aside(target))
    assert len(set(kept)) == 3
    assert [k.read_bytes() for k in kept] == [b"first damaged copy", b"second damaged copy", b"third"]


def test_recovery_path_in_the_message_works(recorded, env_dirs: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    """`repair it, move it back, run costattr upload` restores the earlier figures exactly."""
    world, reference = recorded
    home = env_dirs["costattr_home"]
    good = _valid_ledger_bytes(home)
    ledger_file(home).write_bytes(good[:-7])  # torn: the last bytes lost
    assert run_cli(*HOOK, cwd=world.repo).returncode == 0
    kept = next(home.glob("ledger.json.corrupt-*"))
    kept.write_bytes(good)  # "repaired"
    os.replace(kept, ledger_file(home))
    proc = run_cli("upload", cwd=world.repo)
    assert proc.returncode == 0, proc.stderr
    assert figures(home) == reference


# ---------------------------------------------------------------------------------------------
# The scan cache (file cursors and parse results, SQLite)

def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for st in statements:
            conn.execute(st)
    finally:
        conn.close()


def _checkpoint(path: Path) -> None:
    _sql(path, "PRAGMA wal_checkpoint(TRUNCATE)")


CACHE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": lambda p: p.write_bytes(bytes(RNG.getrandbits(8) for _ in range(8192))),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "header-only": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "zeroed-pages": lambda p: p.write_bytes(p.read_bytes()[:4096] + b"\0" * (len(p.read_bytes()) - 4096)),
    "garbage-wal": lambda p: Path(str(p) + "-wal").write_bytes(bytes(RNG.getrandbits(8) for _ in range(9000))),
    "wrong-schema": lambda p: _sql(p, "DROP TABLE files", "CREATE TABLE files (a)"),
    "state-not-json": lambda p: _sql(p, "UPDATE files SET state = x'00ff10'"),
    "cwds-not-json": lambda p: _sql(p, "UPDATE files SET cwds = '{'"),
    "state-wrong-shape": lambda p: _sql(p, """UPDATE files SET state = '{"records": 5}'"""),
    "record-wrong-shape": lambda p: _sql(p, """UPDATE files SET state = '{"records": [[1, 2]], "offset": 0,
        "skipped": 0, "reasons": {}, "where": [], "parser": {}}'"""),
    "offset-past-end": lambda p: _sql(p, "UPDATE files SET state = json_set(state, '$.offset', 99999999)"),
}
# Value-level damage makes scan.py raise while reading the cache: the hook's fallback (record.py)
# moves the cache aside and scans without it; `costattr sessions` has no such fallback.
_SESSIONS_CRASH = {"state-wrong-shape", "record-wrong-shape"}


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_damaged_scan_cache_hook_records_exactly(damage: str, recorded, env_dirs: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    world, reference = recorded
    home = env_dirs["costattr_home"]
    cache = home / "cache" / "scan.sqlite"
    _checkpoint(cache)
    ledger_file(home).unlink()  # the hook must read everything again, through the damaged cache
    CACHE_DAMAGE[damage](cache)
    bad = cache.read_bytes()
    proc = run_cli(*HOOK, cwd=world.repo, env=env_with(COSTATTR_NO_FAST_PATH="1"))
    assert proc.returncode == 0 and "not recorded" not in proc.stderr, proc.stderr
    assert figures(home) == reference  # a cache can cost time, never a figure
    kept = sorted(p for p in cache.parent.glob("scan.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm")))
    lines = _lines(proc.stderr)
    assert len(lines) == len(kept), proc.stderr  # one line per file moved aside, none otherwise
    for k, line in zip(kept, lines, strict=True):
        assert str(k) in line and "rebuilt" in line
    if kept and damage not in ("wrong-schema",):
        assert kept[0].read_bytes() == bad  # moved, byte for byte


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_damaged_scan_cache_sessions_rebuilds(damage: str, tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    world = build_world(tmp_path, env_dirs)
    home = env_dirs["costattr_home"]
    clean = run_cli("sessions", "--format", "json", cwd=world.repo)
    cache = home / "cache" / "scan.sqlite"
    _checkpoint(cache)
    CACHE_DAMAGE[damage](cache)
    proc = run_cli("sessions", "--format", "json", cwd=world.repo)
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["totals"] == orjson.loads(clean.stdout)["totals"]


# ---------------------------------------------------------------------------------------------
# The outbox and the publish marker (shared backend: the memory API)

def _api_env(api: FakeMemoryApi) -> dict[str, str]:
    return env_with(COSTATTR_LEDGER="memory-api", COSTATTR_API_URL=api.url, COSTATTR_API_USER=api.user,
                    COSTATTR_API_KEY=api.key)


def _shared(api: FakeMemoryApi) -> dict[str, dict]:  # type: ignore[type-arg]
    return {sid: {k: v for k, v in e.items() if k not in ("updated_at", "branch")} for sid, e in api.data().items()}


OUTBOX_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda good: good[: len(good) // 3],
    "garbage": lambda good: bytes(RNG.getrandbits(8) for _ in range(600)),
    "empty": lambda good: b"",
    "wrong-shape": lambda good: b'{"entry": [1, 2]}',
    "invalid-entry": lambda good: b'{"entry": {"session_id": 5}}',
}


@pytest.mark.parametrize("damage", sorted(OUTBOX_DAMAGE))
def test_damaged_outbox_file_is_kept_and_nothing_is_lost(damage: str, tmp_path: Path, env_dirs: dict[str, Path],
                                                         memory_api: FakeMemoryApi) -> None:
    world = build_world(tmp_path, env_dirs)
    env = _api_env(memory_api)
    memory_api.mode = "error"
    down = run_cli(*HOOK, cwd=world.repo, env=env)
    assert down.returncode == 0 and "outbox" in down.stderr
    home = env_dirs["costattr_home"]
    waiting = sorted((home / "outbox").glob("*/*.json"))
    assert waiting
    victim = waiting[0]
    bad = OUTBOX_DAMAGE[damage](victim.read_bytes())
    victim.write_bytes(bad)
    stray = victim.with_name("zz-stray.json")
    stray.write_bytes(b"\x00\x01 not json")
    memory_api.mode = "ok"
    proc = run_cli(*HOOK, cwd=world.repo, env=env | {"COSTATTR_NO_FAST_PATH": "1"})
    assert proc.returncode == 0, proc.stderr
    kept = sorted(victim.parent.glob("*.corrupt-*"))
    assert len(kept) == 2
    assert {k.read_bytes() for k in kept} == {bad, b"\x00\x01 not json"}  # byte for byte
    for k in kept:
        line = next(ln for ln in _lines(proc.stderr) if str(k) in ln)
        assert "unreadable" in line and "sent again" in line
    assert _shared(memory_api) == figures(home)  # the shared ledger lacks nothing


def test_waiting_outbox_is_retried_by_the_next_hook(tmp_path: Path, env_dirs: dict[str, Path],
                                                    memory_api: FakeMemoryApi) -> None:
    world = build_world(tmp_path, env_dirs)
    env = _api_env(memory_api)
    memory_api.mode = "error"
    assert run_cli(*HOOK, cwd=world.repo, env=env).returncode == 0
    memory_api.mode = "ok"  # back up; the next commit brings no new spend
    proc = run_cli(*HOOK, cwd=world.repo, env=env)
    assert proc.returncode == 0, proc.stderr
    assert _shared(memory_api) == figures(env_dirs["costattr_home"])


def test_damaged_publish_marker_publishes_everything_again(tmp_path: Path, env_dirs: dict[str, Path],
                                                           memory_api: FakeMemoryApi) -> None:
    world = build_world(tmp_path, env_dirs)
    env = _api_env(memory_api)
    home = env_dirs["costattr_home"]
    assert run_cli(*HOOK, cwd=world.repo, env=env).returncode == 0
    memory_api.files.clear()  # the shared ledger lost everything (a reset server, say)
    marker = home / "publish-pending.json"
    marker.write_bytes(b'{"pending": {"s": "x"')  # and a hook died writing the marker
    world.grow(2)
    proc = run_cli(*HOOK, cwd=world.repo, env=env)
    assert proc.returncode == 0
    kept = list(home.glob("publish-pending.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b'{"pending": {"s": "x"'
    line = next(ln for ln in _lines(proc.stderr) if str(kept[0]) in ln)
    assert "published again" in line
    assert _shared(memory_api) == figures(home)


def test_damaged_fast_path_state_never_skips_spend(recorded, env_dirs: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    world, _reference = recorded
    home = env_dirs["costattr_home"]
    state = home / "hook-state.json"
    assert state.exists()
    for bad in (b"\xff\xfe garbage", state.read_bytes()[:-5], b'{"/nowhere": {"head": 1}}', b"[]"):
        state.write_bytes(bad)
        world.grow(1)
        proc = run_cli(*HOOK, cwd=world.repo)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
        ref = clean_reference([world.repo], home.parent / f"ref-{len(bad)}")
        assert figures(home) == ref
    assert leftovers(home)["corrupt"] == []
