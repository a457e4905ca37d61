"""The memory-API backend against a real HTTP server (tests/fake_memory_api.py).

The file is CloudClawer's `{"path": "agent-costs", "data": {session_id: entry}}`; in ledger v2
each entry is a view of the session's records, which ride along under `records` and carry the
truth. Every write is a union of records by id: nothing a PUT replaces may lose a record.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import threading
import time
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from builders import part, spend
from fake_memory_api import API_KEY, FakeMemoryApi

from costattr.errors import ConfigError
from costattr.ledger.memory_api import (
    SIDE_KEY_SUFFIX,
    MemoryApiLedger,
    RemoteAuthError,
    RemoteUnavailable,
    Secret,
)
from costattr.ledger.migrate import v1_records
from costattr.ledger.records import AnyRecord, SpendRecord
from costattr.ledger.view import session_entries

V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1" / "ledger-v1.json"
# Another CloudClawer client's entry: plain CloudClawer fields, no records. Never ours to rewrite.
FOREIGN = {"session_id": "cc-agent-1", "cost_usd": 0.5, "cache_pct": 10.0, "cost_str": "0.5000 (10.0%)",
           "branch": "main", "commit": None, "prs": [], "updated_at": 1.0, "written_by": "cloudclawer"}


@pytest.fixture
def api(memory_api: FakeMemoryApi) -> FakeMemoryApi:
    return memory_api


def ledger_for(api: FakeMemoryApi, key: str = API_KEY, **kw: Any) -> MemoryApiLedger:
    return MemoryApiLedger(api.url, api.user, key, **kw)


def ids(records: Iterable[AnyRecord]) -> set[str]:
    return {r.id for r in records}


def raw_ids(api: FakeMemoryApi) -> Counter[str]:
    """How many times each record id is stored in the file (a union never stores one twice)."""
    return Counter(r["id"] for r in api.records())


def spend_total(records: dict[str, AnyRecord]) -> Decimal:
    return sum((r.cost for r in records.values() if isinstance(r, SpendRecord)), Decimal(0))


def other_client_entry(*records: AnyRecord) -> dict[str, Any]:
    """The entry another machine's costattr writes for its session (same code path, its records)."""
    (entry,) = session_entries(records).values()
    return entry


# ----------------------------------------------------------------------------------------------
# GET / PUT, conditional


def test_read_missing_file_is_empty(api: FakeMemoryApi) -> None:
    got = ledger_for(api).read()
    assert got.records == {} and got.set_aside.count == 0
    assert api.requests == [("GET", 404), ("GET", 404)]  # agent-costs, and its list of months


def test_create_then_conditional_update(api: FakeMemoryApi) -> None:
    led = ledger_for(api)
    r1, r2 = spend("s1", branch="feature/PROJ-1-a", issue="PROJ-1"), spend("s2")
    led.add([r1])
    put_headers = [h for h in api.seen_headers if "if-none-match" in h or "if-match" in h]
    assert put_headers[-1].get("if-none-match") == "*" and "if-match" not in put_headers[-1]  # create-only
    led.add([r2])
    assert api.seen_headers[-1].get("if-match") == '"1"'  # then: only if nobody wrote since our GET
    assert api.requests == [("GET", 404), ("PUT", 201), ("GET", 200), ("PUT", 200)]
    got = led.read()
    assert got.records == {r1.id: r1, r2.id: r2}
    # The server holds plain CloudClawer-shaped entries, computed from the records they carry.
    entry = api.data()["s1"]
    assert entry["session_id"] == "s1" and entry["branch"] == "feature/PROJ-1-a" and entry["commit"] == r1.commit
    assert entry["cost_usd"] == float(r1.cost) and entry["cost_str"] == f"{r1.cost:.4f} ({entry['cache_pct']:.1f}%)"
    assert entry["issues"] == ["PROJ-1"] and entry["records"] == [r1.to_json()]


def test_a_record_already_held_is_not_written_again(api: FakeMemoryApi) -> None:
    led = ledger_for(api)
    rec = spend("s1")
    led.add([rec])
    puts = api.count("PUT")
    led.add([rec])  # a replay: the hook re-sending, a second machine, `sync --all`
    assert api.count("PUT") == puts
    assert raw_ids(api) == Counter({rec.id: 1})


def test_merge_is_a_union_of_records_no_timestamp_wins(api: FakeMemoryApi) -> None:
    """0.1 kept the newest `updated_at` per session, so a copy stamped by a clock a day ahead
    froze the entry. In v2 the session's records are merged by id, whatever they were stamped."""
    led = ledger_for(api)
    ahead = spend("s1", first_ts="2026-11-21T09:00:00.000Z", parts=[part("2026-11-21T09:00:00.000Z", cost="0.25")])
    ahead = dataclasses.replace(ahead, recorded_at="2026-11-21T23:59:00.000Z")  # the clock a day ahead
    older = spend("s1", first_ts="2026-11-20T09:00:00.000Z", parts=[part("2026-11-20T09:00:00.000Z", cost="0.50")])
    led.add([ahead])
    led.add([older])  # stamped a day "before" what the file holds: still added
    held = led.read().records
    assert held == {ahead.id: ahead, older.id: older}
    assert api.data()["s1"]["cost_usd"] == 0.75
    assert api.data()["s1"]["requests"] == 2


def test_412_storm_is_resolved_by_merging(api: FakeMemoryApi) -> None:
    led = ledger_for(api, timeout=10.0)  # the backoff between conflicts must not meet the deadline on a busy machine
    mine = [spend("mine-0"), spend("mine-1"), spend("shared")]
    led.add(mine[:1])
    theirs = [spend(f"theirs-{n}") for n in range(3)] + [spend("shared")]
    pending = iter([*((r.session_id, other_client_entry(r)) for r in theirs[:3]), ("cc-agent-1", FOREIGN)])

    def concurrent_writer(server: FakeMemoryApi) -> None:
        found = next(pending, None)
        if found is not None:  # the first four PUTs lose the race against other clients
            server.write_direct(*found)

    api.before_put = concurrent_writer
    led.add(mine[1:])
    assert api.count("PUT", 412) == 4
    api.before_put = None
    # Another machine's record for a session we also write: its entry is merged, not replaced.
    ledger_for(api).add(theirs[3:])
    got = led.read()
    assert set(got.records) == ids(mine) | ids(theirs)
    assert raw_ids(api) == Counter({i: 1 for i in ids(mine) | ids(theirs)})  # nothing doubled
    assert api.data()["cc-agent-1"] == FOREIGN
    assert api.data()["shared"]["requests"] == 2  # both machines' spend on the shared session
    assert got.set_aside.count == 1  # the foreign entry: counted, kept, never an error


def test_endless_conflicts_give_up_within_the_budget(api: FakeMemoryApi) -> None:
    led = ledger_for(api, max_tries=5)
    noise = iter(range(1000))
    api.before_put = lambda s: s.write_direct("noise", {"session_id": "noise", "n": next(noise)})
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="kept changing") as info:
        led.add([spend("s1")])
    assert time.monotonic() - t0 < 2.5
    assert api.count("PUT", 412) == 5
    assert info.value.reason == "5 conflicting writes in a row"
    assert "s1" not in api.data()  # given up: the caller keeps the record waiting


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
    # Half of each writer's records belong to one session both write: its entry is merged record by record.
    batches = {n: [spend("shared" if i % 2 else f"{n}-{i}") for i in range(8)] for n in ("a", "b")}

    def writer(name: str) -> None:
        led = ledger_for(api, max_tries=30, timeout=20.0)
        try:
            for rec in batches[name]:
                led.add([rec])
        except BaseException as e:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    want = {r.id for batch in batches.values() for r in batch}
    assert raw_ids(api) == Counter({i: 1 for i in want})
    assert api.data()["shared"]["requests"] == 8
    assert api.count("PUT", 412) > 0  # they did collide, and merging resolved it


# ----------------------------------------------------------------------------------------------
# Entries we cannot read, and costattr 0.1's entries


def test_entries_we_cannot_read_are_kept_untouched(api: FakeMemoryApi) -> None:
    api.write_direct("future", {"session_id": "future", "cost_usd": "not a number", "x": 1})
    api.write_direct("cc-agent-1", FOREIGN)
    led = ledger_for(api)
    got = led.read()
    assert got.records == {} and got.set_aside.count == 2
    assert "an entry costattr cannot read (kept as it is)" in got.set_aside.reasons
    rec = spend("s1")
    led.add([rec])
    data = api.data()
    assert data["future"] == {"session_id": "future", "cost_usd": "not a number", "x": 1}
    assert data["cc-agent-1"] == FOREIGN
    assert set(led.read().records) == {rec.id}


def test_a_session_key_held_by_an_entry_we_cannot_read_gets_its_entry_beside_it(api: FakeMemoryApi) -> None:
    """Another client wrote its own entry under a session id costattr also records: theirs stays
    as it is, ours goes beside it, and the records are delivered (never reported sent and dropped)."""
    theirs = {**FOREIGN, "session_id": "s1"}
    api.write_direct("s1", theirs)
    led = ledger_for(api)
    first, second = spend("s1"), spend("s1")
    led.add([first])
    led.add([second])
    data = api.data()
    assert data["s1"] == theirs
    assert data[f"s1{SIDE_KEY_SUFFIX}"]["session_id"] == "s1"
    assert set(led.read().records) == {first.id, second.id}
    assert raw_ids(api) == Counter({first.id: 1, second.id: 1})


def test_a_record_that_fails_validation_is_set_aside_and_written_back_as_it_was(api: FakeMemoryApi) -> None:
    good = spend("s1")
    entry = other_client_entry(good)
    broken = {**good.to_json(), "id": "f" * 24, "v": 3, "parts": "a newer costattr's shape"}
    entry["records"].append(broken)
    api.write_direct("s1", entry)
    led = ledger_for(api)
    got = led.read()
    assert set(got.records) == {good.id} and got.set_aside.count == 1
    new = spend("s1")
    led.add([new])  # rewrites the entry of s1
    stored = api.data()["s1"]["records"]
    assert broken in stored
    assert {r["id"] for r in stored} == {good.id, new.id, broken["id"]}


def _v1_entries() -> dict[str, Any]:
    return json.loads(V1_FIXTURE.read_text())["data"]


def test_v1_entries_merge_without_losing_or_doubling_them(api: FakeMemoryApi) -> None:
    """A file costattr 0.1 wrote (tests/fixtures/v1): its entries read as the records the local
    migration makes of them (same ids), touching a session keeps its 0.1 spend, and a machine
    that migrated its own 0.1 ledger sending the same records doubles nothing."""
    entries = _v1_entries()
    for sid, entry in entries.items():
        api.write_direct(sid, entry)
    api.write_direct("cc-agent-1", FOREIGN)
    converted = {r.id: r for e in entries.values() for r in v1_records(e)}
    truth = sum((Decimal(repr(e["cost_usd"])) for e in entries.values()), Decimal(0))
    led = ledger_for(api)
    got = led.read()
    assert got.records == converted
    assert spend_total(got.records) == truth
    assert any(r.kind == "link" and r.pr == 101 for r in got.records.values())  # 0.1's PR list

    new_login = spend("sess-login", repo="acme/legacy", branch="feature/PROJ-12-login", state="open",
                      first_ts="2026-10-18T02:00:00.000Z", parts=[part("2026-10-18T02:00:00.000Z", cost="0.003")])
    new_session = spend("sess-new", repo="acme/legacy")
    led.add([new_login, new_session])
    data = api.data()
    for sid in ("sess-cache", "sess-loose", "sess-main"):
        assert data[sid] == entries[sid]  # untouched 0.1 entries stay byte for byte
    assert data["cc-agent-1"] == FOREIGN
    login = data["sess-login"]  # touched: now a v2 entry holding 0.1's records and the new one
    assert login["schema_version"] == 2 and login["prs"] == [101]
    assert Decimal(str(login["cost_usd"])) == Decimal(repr(entries["sess-login"]["cost_usd"])) + new_login.cost
    after = led.read().records
    assert set(after) == set(converted) | {new_login.id, new_session.id}
    assert spend_total(after) == truth + new_login.cost + new_session.cost

    puts = api.count("PUT")
    led.add(list(converted.values()))  # what `sync --all` sends from a machine that migrated 0.1
    assert api.count("PUT") == puts
    assert spend_total(led.read().records) == truth + new_login.cost + new_session.cost
    assert max(raw_ids(api).values()) == 1


def test_a_damaged_v1_entry_is_kept_and_never_rewritten(api: FakeMemoryApi) -> None:
    entry = copy.deepcopy(_v1_entries()["sess-main"])
    for usage in entry["segments"][0]["models"].values():
        usage["tokens"]["input"] = "ten"  # a hand edit 0.1 never wrote
    api.write_direct("sess-main", entry)
    led = ledger_for(api)
    assert led.read().set_aside.count == 1
    rec = spend("sess-main", repo="acme/legacy")
    led.add([rec])
    assert api.data()["sess-main"] == entry
    assert set(led.read().records) == {rec.id}


# ----------------------------------------------------------------------------------------------
# Failures: messages, nothing written


def test_wrong_key_is_an_auth_error_naming_the_setting(api: FakeMemoryApi) -> None:
    led = ledger_for(api, key="wrong-key")
    with pytest.raises(RemoteAuthError) as info:
        led.add([spend("s1")])
    assert info.value.setting == "COSTATTR_API_KEY" and info.value.reason == "HTTP 401, API key rejected"
    assert "COSTATTR_API_KEY" in str(info.value)
    assert "wrong-key" not in str(info.value) and "wrong-key" not in repr(info.value)
    assert api.count("PUT") == 0


def test_forbidden_user_names_the_user_setting(api: FakeMemoryApi) -> None:
    api.mode = "forbidden"
    with pytest.raises(RemoteAuthError) as info:
        ledger_for(api).read()
    assert "COSTATTR_API_USER" in str(info.value) and "HTTP 403" in info.value.reason


@pytest.mark.parametrize(("mode", "reason"), [("error", "HTTP 503"), ("malformed", "malformed answer"),
                                              ("null", "malformed answer"), ("huge", "answer larger than")])
def test_bad_answers_are_unavailable_and_nothing_is_written(api: FakeMemoryApi, mode: str, reason: str) -> None:
    """`{"data": null}` answered with 200 included: it is not an empty file, and a PUT over it
    would replace everyone's entries with ours."""
    held = spend("s0")
    api.write_direct("s0", other_client_entry(held))
    api.mode = mode
    with pytest.raises(RemoteUnavailable) as info:
        ledger_for(api, max_bytes=1 << 20).add([spend("s1")])
    assert info.value.reason.startswith(reason)
    assert api.count("PUT") == 0
    api.mode = "ok"
    assert set(ledger_for(api).read().records) == {held.id}


def test_null_data_is_an_error_for_read_too(api: FakeMemoryApi) -> None:
    api.mode = "null"
    with pytest.raises(RemoteUnavailable, match="not a ledger file"):
        ledger_for(api).read()


def test_huge_answer_is_capped(api: FakeMemoryApi) -> None:
    api.mode = "huge"
    with pytest.raises(RemoteUnavailable, match="larger than 1 MiB"):
        ledger_for(api, max_bytes=1 << 20).read()


def test_server_down_fails_fast(api: FakeMemoryApi) -> None:
    api.stop()
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="cannot reach"):
        ledger_for(api).add([spend("s1")])
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("mode", ["hang", "slow"])
def test_unresponsive_server_is_bounded_by_the_timeout(api: FakeMemoryApi, mode: str) -> None:
    api.mode = mode
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="did not answer"):
        ledger_for(api, timeout=1.0).add([spend("s1")])
    assert time.monotonic() - t0 < 2.0


# ----------------------------------------------------------------------------------------------
# The key, the settings


def test_key_never_shows() -> None:
    led = MemoryApiLedger("https://bob:pw@api.example/", "dkr", API_KEY)
    for text in (repr(led), str(led), led.describe(), repr(Secret(API_KEY)), f"{Secret(API_KEY)}"):
        assert API_KEY not in text
    assert "pw" not in led.describe()
    assert "****@api.example" in led.describe()
    with pytest.raises(TypeError):
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
