"""The memory-API backend against a real HTTP server (tests/fake_memory_api.py)."""

from __future__ import annotations

import threading
import time

import pytest
from fake_memory_api import API_KEY, FakeMemoryApi

from costattr.errors import ConfigError
from costattr.ledger.memory_api import (
    MemoryApiLedger,
    RemoteAuthError,
    RemoteUnavailable,
    Secret,
)
from costattr.models import LedgerEntry


def entry(sid: str, updated_at: float = 100.0, cost: float = 1.0, **kw: object) -> LedgerEntry:
    return LedgerEntry(session_id=sid, updated_at=updated_at, cost_usd=cost, cost_str=f"{cost:.4f}", **kw)


@pytest.fixture
def api(memory_api: FakeMemoryApi) -> FakeMemoryApi:
    return memory_api


def ledger_for(api: FakeMemoryApi, key: str = API_KEY, **kw: object) -> MemoryApiLedger:
    return MemoryApiLedger(api.url, api.user, key, **kw)  # type: ignore[arg-type]


def test_read_missing_file_is_empty(api: FakeMemoryApi) -> None:
    assert ledger_for(api).read() == {}
    assert api.requests == [("GET", 404)]


def test_create_then_conditional_update(api: FakeMemoryApi) -> None:
    led = ledger_for(api)
    led.upsert([entry("s1", 100, 1.0)])
    put_headers = [h for h in api.seen_headers if "if-none-match" in h or "if-match" in h]
    assert put_headers[-1].get("if-none-match") == "*"  # first write: create-only
    led.upsert([entry("s2", 100, 2.0)])
    assert api.seen_headers[-1].get("if-match") == '"1"'  # then: only if nobody wrote since our GET
    got = led.read()
    assert set(got) == {"s1", "s2"}
    assert got["s2"].cost_usd == 2.0
    assert api.data()["s1"]["session_id"] == "s1"  # the server holds plain CloudClawer-shaped JSON


def test_newer_entry_wins_and_older_does_not_overwrite(api: FakeMemoryApi) -> None:
    led = ledger_for(api)
    led.upsert([entry("s1", 200, 5.0)])
    led.upsert([entry("s1", 100, 1.0)])  # a stale copy (replayed outbox, old clone)
    assert led.read()["s1"].cost_usd == 5.0
    led.upsert([entry("s1", 300, 7.0)])
    assert led.read()["s1"].cost_usd == 7.0


def test_412_storm_is_resolved_by_merging(api: FakeMemoryApi) -> None:
    led = ledger_for(api)
    led.upsert([entry("mine-0", 1)])
    others = iter(range(3))

    def concurrent_writer(server: FakeMemoryApi) -> None:
        n = next(others, None)
        if n is not None:  # the first three PUTs lose the race against another client
            server.write_direct(f"theirs-{n}", entry(f"theirs-{n}", 50).model_dump(mode="json"))

    api.before_put = concurrent_writer
    led.upsert([entry("mine-1", 2)])
    assert api.count("PUT", 412) == 3
    assert set(led.read()) == {"mine-0", "mine-1", "theirs-0", "theirs-1", "theirs-2"}


def test_endless_conflicts_give_up_within_the_budget(api: FakeMemoryApi) -> None:
    led = ledger_for(api, max_tries=5)
    api.before_put = lambda s: s.write_direct("noise", {"session_id": "noise", "updated_at": time.time()})
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="kept changing"):
        led.upsert([entry("s1")])
    assert time.monotonic() - t0 < 2.5
    assert api.count("PUT", 412) == 5


def test_two_interleaved_writers_both_survive(api: FakeMemoryApi) -> None:
    api.put_delay = 0.01  # widen the window between GET and PUT so the writers keep colliding
    errors: list[BaseException] = []
    # The first PUT of each writer waits for the other's: both read the same version, one must lose.
    barrier = threading.Barrier(2, timeout=5)
    first_puts = iter(range(2))

    def meet(server: FakeMemoryApi) -> None:
        if next(first_puts, None) is not None:
            barrier.wait()

    api.before_put = meet

    def writer(name: str) -> None:
        led = ledger_for(api, max_tries=30, timeout=20.0)
        try:
            for i in range(8):
                led.upsert([entry(f"{name}-{i}", i)])
        except BaseException as e:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(api.data()) == {f"{n}-{i}" for n in ("a", "b") for i in range(8)}
    assert api.count("PUT", 412) > 0  # they did collide, and merging resolved it


def test_entries_we_cannot_parse_are_kept(api: FakeMemoryApi) -> None:
    api.write_direct("future", {"session_id": "future", "cost_usd": "not a number", "x": 1})
    led = ledger_for(api)
    assert led.read() == {}
    assert led.skipped == ["future"]
    led.upsert([entry("s1")])
    assert api.data()["future"] == {"session_id": "future", "cost_usd": "not a number", "x": 1}


def test_wrong_key_is_an_auth_error_naming_the_setting(api: FakeMemoryApi) -> None:
    led = ledger_for(api, key="wrong-key")
    with pytest.raises(RemoteAuthError) as info:
        led.upsert([entry("s1")])
    assert info.value.setting == "COSTATTR_API_KEY"
    assert "COSTATTR_API_KEY" in str(info.value)
    assert "wrong-key" not in str(info.value) and "wrong-key" not in repr(info.value)


def test_forbidden_user_names_the_user_setting(api: FakeMemoryApi) -> None:
    api.mode = "forbidden"
    with pytest.raises(RemoteAuthError) as info:
        ledger_for(api).read()
    assert "COSTATTR_API_USER" in str(info.value)


@pytest.mark.parametrize("mode", ["error", "malformed", "huge"])
def test_bad_answers_are_unavailable_and_nothing_is_written(api: FakeMemoryApi, mode: str) -> None:
    api.write_direct("s0", entry("s0").model_dump(mode="json"))
    api.mode = mode
    with pytest.raises(RemoteUnavailable):
        ledger_for(api).upsert([entry("s1")])
    assert api.count("PUT") == 0
    api.mode = "ok"
    assert set(api.data()) == {"s0"}


def test_huge_answer_is_capped(api: FakeMemoryApi) -> None:
    api.mode = "huge"
    with pytest.raises(RemoteUnavailable, match="larger than 1 MiB"):
        ledger_for(api, max_bytes=1 << 20).read()


def test_server_down_fails_fast(api: FakeMemoryApi) -> None:
    api.stop()
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="cannot reach"):
        ledger_for(api).upsert([entry("s1")])
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("mode", ["hang", "slow"])
def test_unresponsive_server_is_bounded_by_the_timeout(api: FakeMemoryApi, mode: str) -> None:
    api.mode = mode
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="did not answer"):
        ledger_for(api, timeout=1.0).upsert([entry("s1")])
    assert time.monotonic() - t0 < 2.0


def test_key_never_shows() -> None:
    led = MemoryApiLedger("https://bob:pw@api.example/", "dkr", API_KEY)
    for text in (repr(led), str(led), led.describe(), repr(Secret(API_KEY)), f"{Secret(API_KEY)}"):
        assert API_KEY not in text
    assert "pw" not in led.describe()
    assert "****@api.example" in led.describe()
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(API_KEY))


def test_key_with_control_characters_is_refused_without_echo() -> None:
    bad = "abc\r\nX-Injected: " + API_KEY
    with pytest.raises(ConfigError) as info:
        MemoryApiLedger("http://127.0.0.1:1", "dkr", bad)
    assert API_KEY not in str(info.value)


def test_settings_are_required() -> None:
    with pytest.raises(ConfigError, match="COSTATTR_API_URL"):
        MemoryApiLedger("", "dkr", API_KEY)
    with pytest.raises(ConfigError, match="COSTATTR_API_USER"):
        MemoryApiLedger("http://127.0.0.1:1", "", API_KEY)
