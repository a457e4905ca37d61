"""The memory API under attack: a real HTTP server on 127.0.0.1 (tests/fake_memory_api.py) that
drips, withholds ETags, answers garbage, serves out-of-range records, races our writes; and the
month files that keep 20,000 sessions publishable (see docs/shared-ledgers.md).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from builders import part, spend
from fake_memory_api import API_KEY, FakeMemoryApi

from costattr.cli import main
from costattr.ledger.memory_api import MONTHS_NAME, MemoryApiLedger, RemoteUnavailable, month_path, to_archive
from costattr.ledger.records import AnyRecord, SpendRecord
from costattr.ledger.view import session_entries
from costattr.testing.gitrepo import commit, make_repo


def ledger_for(api: FakeMemoryApi, **kw: Any) -> MemoryApiLedger:
    return MemoryApiLedger(api.url, api.user, API_KEY, **kw)


def entry_of(*records: AnyRecord) -> dict[str, Any]:
    (entry,) = session_entries(records).values()
    return entry


def months_ago(n: int) -> str:
    """`YYYY-MM` of n months before this one (the move is relative to the clock)."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 - n
    return f"{index // 12}-{index % 12 + 1:02d}"


def spent_in(month: str, session: str, cost: str = "0.01") -> SpendRecord:
    ts = f"{month}-10T10:00:00.000Z"
    return spend(session, first_ts=ts, parts=[part(ts, cost=cost)])


def ids(api: FakeMemoryApi, path: str = "agent-costs") -> Counter[str]:
    return Counter(r["id"] for r in api.records(path))


# ----------------------------------------------------------------------------------------------
# One deadline per call, whatever the server drips


def test_a_drip_cannot_hold_a_call_past_its_timeout(memory_api: FakeMemoryApi) -> None:
    """Each byte restarts httpx's per-read timeout, so a drip faster than it held a call for ever
    (the previous release: headers dripped one byte every 1.5 s against a 2 s budget held a hook
    63 s); the call still ends at its timeout, for headers and body alike."""
    for mode, call, drip, timeout in (("header-drip", "read", 1.5, 2.0), ("header-drip", "add", 0.3, 1.0),
                                      ("body-drip", "read", 0.3, 1.0)):
        memory_api.mode, memory_api.drip = mode, drip
        led = ledger_for(memory_api, timeout=timeout)
        t0 = time.monotonic()
        with pytest.raises(RemoteUnavailable, match=f"did not answer within {timeout:g} s"):
            led.read() if call == "read" else led.add([spend("s1")])
        assert time.monotonic() - t0 < timeout + 4, (mode, call)
    assert memory_api.count("PUT") == 0


def test_a_run_deadline_caps_every_call_inside_it(memory_api: FakeMemoryApi) -> None:
    """The background publisher's one deadline: a call's own timeout never runs past it."""
    memory_api.mode = "hang"
    led = ledger_for(memory_api, timeout=60.0)
    led.deadline = time.monotonic() + 1.0
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="did not answer"):
        led.add([spend("s1")])
    assert time.monotonic() - t0 < 5


# ----------------------------------------------------------------------------------------------
# Answers that are not a ledger file are errors, never an empty file


def test_a_200_without_an_etag_is_never_written_over(memory_api: FakeMemoryApi) -> None:
    """Without an ETag a write cannot be conditional, and an unconditional PUT replaces what
    another client wrote meanwhile. Reading needs none."""
    held = spend("s0")
    memory_api.write_direct("s0", entry_of(held))
    memory_api.mode = "no-etag"
    with pytest.raises(RemoteUnavailable) as info:
        ledger_for(memory_api).add([spend("s1")])
    assert info.value.reason == "no ETag on the file" and "nothing was written" in str(info.value)
    assert memory_api.count("PUT") == 0
    assert set(ledger_for(memory_api).read().records) == {held.id}


@pytest.mark.parametrize("body", [b'{"path": "agent-costs", "data": []}', b'{"path": "agent-costs", "data": "x"}',
                                  b'{"path": "agent-costs"}', b'[{"data": {}}]', b"", b"<html>maintenance</html>"])
def test_an_answer_that_is_not_a_ledger_file_is_an_error(memory_api: FakeMemoryApi, body: bytes) -> None:
    memory_api.mode, memory_api.raw_body = "raw", body
    for call in (lambda led: led.read(), lambda led: led.add([spend("s1")])):
        with pytest.raises(RemoteUnavailable) as info:
            call(ledger_for(memory_api))
        assert info.value.reason == "malformed answer"
    assert memory_api.count("PUT") == 0


# ----------------------------------------------------------------------------------------------
# Out-of-range remote records: set aside, counted, never shown


def _hostile_file(api: FakeMemoryApi) -> SpendRecord:
    """One good record, and five that must never reach a figure."""
    good = spend("good", branch="main", issue="PROJ-7", parts=[part(cost="0.50")])  # the branch checked out
    negative = {**good.to_json(), "id": "a" * 24, "session_id": "neg",
                "parts": [[*part(cost="0.50").to_json()[:10], "-2.22", "0"]]}
    huge_tokens = {**good.to_json(), "id": "b" * 24, "session_id": "huge",
                   "parts": [[*part().to_json()[:4], 10**300, *part().to_json()[5:]]]}
    huge_cost = {**good.to_json(), "id": "c" * 24, "session_id": "huge-cost",
                 "parts": [[*part().to_json()[:10], 1e300, "0"]]}
    api.write_direct("good", entry_of(good))
    for raw in (negative, huge_tokens, huge_cost):
        api.write_direct(raw["session_id"], {**entry_of(good), "session_id": raw["session_id"], "records": [raw]})
    # Another CloudClawer client's entry with a negative cost, and a costattr 0.1 entry with one.
    api.write_direct("cc-1", {"session_id": "cc-1", "cost_usd": -2.22, "cost_str": "-2.2200 (0.0%)",
                              "branch": "feature/PROJ-7-login", "commit": None, "prs": [], "updated_at": 1.0})
    api.write_direct("v1-neg", {"session_id": "v1-neg", "schema_version": 1, "repo": "acme/app", "cost_usd": -2.22,
                                "segments": [{"branch": "feature/PROJ-7-login", "requests": 1, "cost_usd": -2.22,
                                              "first_ts": "2026-11-20T10:00:00.000Z"}]})
    return good


def test_out_of_range_records_are_counted_and_never_shown(memory_api: FakeMemoryApi, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    good = _hostile_file(memory_api)
    held = ledger_for(memory_api).read()
    assert set(held.records) == {good.id} and held.set_aside.count == 5

    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(repo, "initial")
    monkeypatch.chdir(repo)
    for name, value in (("COSTATTR_API_URL", memory_api.url), ("COSTATTR_API_USER", memory_api.user),
                        ("COSTATTR_API_KEY", API_KEY)):
        monkeypatch.setenv(name, value)
    assert main(["report", "--ledger", "memory-api", "--by", "issue", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert Decimal(str(report["totals"]["cost_usd"])) == good.cost
    assert "5 records set aside as invalid" in err
    assert main(["comment", "--pr", "7", "--dry-run", "--ledger", "memory-api"]) == 0
    comment_out, comment_err = capsys.readouterr()
    assert "5 records set aside as invalid" in comment_err
    assert "$0.50" in comment_out
    for text in (out, comment_out):
        assert "-2.22" not in text and "e+300" not in text and "1000000000000" not in text


# ----------------------------------------------------------------------------------------------
# Months: `agent-costs` keeps two months, older entries move to `agent-costs/YYYY-MM`


def _seed_months(api: FakeMemoryApi, per_month: int = 2, months: int = 4) -> dict[str, list[SpendRecord]]:
    """`per_month` sessions in each of the last `months` months (this one included), written by
    another machine's costattr."""
    out: dict[str, list[SpendRecord]] = {}
    for n in range(months):
        month = months_ago(n)
        out[month] = [spent_in(month, f"s-{month}-{i}") for i in range(per_month)]
        for rec in out[month]:
            api.write_direct(rec.session_id, entry_of(rec))
    return out


FOREIGN = {"session_id": "cc-agent-1", "cost_usd": 0.5, "cache_pct": 10.0, "cost_str": "0.5000 (10.0%)",
           "branch": "main", "commit": None, "prs": [], "updated_at": 1.0}


def test_old_months_move_out_and_every_record_still_reads(memory_api: FakeMemoryApi) -> None:
    seeded = _seed_months(memory_api)
    memory_api.write_direct("cc-agent-1", FOREIGN)
    everything = {r.id for recs in seeded.values() for r in recs}
    new = spent_in(months_ago(0), "s-new")
    led = ledger_for(memory_api)
    led.add([new])
    head = memory_api.data()
    kept = {months_ago(0), months_ago(1)}
    assert {k for k in head if k != "cc-agent-1"} == {r.session_id for m in kept for r in seeded[m]} | {"s-new"}
    assert head["cc-agent-1"] == FOREIGN  # another client's entry stays where it is, untouched
    for month in (months_ago(2), months_ago(3)):
        path = month_path("agent-costs", month)
        assert ids(memory_api, path) == Counter({r.id: 1 for r in seeded[month]})
        entry = memory_api.data(path)[seeded[month][0].session_id]
        assert entry["cost_usd"] == 0.01 and entry["branch"] == "main"  # CloudClawer's shape, in every file
    assert set(memory_api.data(month_path("agent-costs", MONTHS_NAME))) == {months_ago(2), months_ago(3)}
    assert set(led.read().records) == everything | {new.id}
    # What is moved stays moved: the next publish reads and writes `agent-costs` only.
    before = list(memory_api.requests)
    led.add([spent_in(months_ago(0), "s-newer")])
    assert memory_api.requests[len(before):] == [("GET", 200), ("PUT", 200)]


def test_a_write_racing_the_move_loses_nothing(memory_api: FakeMemoryApi) -> None:
    seeded = _seed_months(memory_api, months=3)
    theirs = spent_in(months_ago(0), "theirs")
    late = spent_in(months_ago(2), f"s-{months_ago(2)}-0")  # a late record of a session being moved
    pending = iter([(theirs.session_id, entry_of(theirs)), (late.session_id, entry_of(late))])

    def another_client(server: FakeMemoryApi) -> None:
        if server.count("PUT") >= 2:  # once the move has written its month file and the list
            found = next(pending, None)
            if found is not None:
                server.write_direct(*found)

    memory_api.before_put = another_client
    led = ledger_for(memory_api)
    led.add([spent_in(months_ago(0), "mine")])
    memory_api.before_put = None
    assert memory_api.count("PUT", 412) >= 1  # the move lost the race once, and read again
    everything = {r.id for recs in seeded.values() for r in recs} | {theirs.id, late.id}
    got = led.read().records
    assert everything <= set(got) and len(got) == len(everything) + 1
    # The late record went into the month file with its session, beside what was moved before.
    month_file = memory_api.data(month_path("agent-costs", months_ago(2)))
    assert {r["id"] for r in month_file[late.session_id]["records"]} >= {late.id, seeded[months_ago(2)][0].id}
    assert late.session_id not in memory_api.data()


def test_a_late_record_of_a_moved_session_joins_its_month(memory_api: FakeMemoryApi) -> None:
    seeded = _seed_months(memory_api, months=3)
    led = ledger_for(memory_api)
    led.add([spent_in(months_ago(0), "mine")])
    old = seeded[months_ago(2)][0]
    late = spent_in(months_ago(2), old.session_id, cost="0.02")
    led.add([late])  # lands in agent-costs, then moves to its month at once
    assert old.session_id not in memory_api.data()
    entry = memory_api.data(month_path("agent-costs", months_ago(2)))[old.session_id]
    assert {r["id"] for r in entry["records"]} == {old.id, late.id} and entry["cost_usd"] == 0.03
    assert {old.id, late.id} <= set(led.read().records)


def test_a_move_that_fails_leaves_agent_costs_whole(memory_api: FakeMemoryApi) -> None:
    seeded = _seed_months(memory_api, months=3)
    memory_api.fail_paths = {month_path("agent-costs", months_ago(2))}
    mine = spent_in(months_ago(0), "mine")
    led = ledger_for(memory_api)
    led.add([mine])  # delivered: the move is tidying, tried again by a later publish
    head = memory_api.data()
    assert {r.session_id for recs in seeded.values() for r in recs} | {"mine"} == set(head)
    memory_api.fail_paths = set()
    assert set(led.read().records) == {r.id for recs in seeded.values() for r in recs} | {mine.id}
    led.add([spent_in(months_ago(0), "later")])  # the next publish finishes the move
    assert {r.session_id for r in seeded[months_ago(2)]}.isdisjoint(memory_api.data())


def test_publishing_keeps_working_when_the_history_outgrows_the_cap(memory_api: FakeMemoryApi) -> None:
    """The cap applies to one answer: once old months are moved out, a history far past the cap
    still publishes (the previous release: 14,000 sessions over 32 MiB and `sync` failed)."""
    for n in range(10):
        month = months_ago(n)
        for i in range(40):
            rec = spent_in(month, f"s-{month}-{i}")
            memory_api.write_direct(rec.session_id, entry_of(rec))
    total = len(json.dumps(memory_api.data()))
    ledger_for(memory_api).add([spent_in(months_ago(0), "first")])  # the first move, with the default cap
    cap = total // 3
    assert len(json.dumps(memory_api.data())) < cap < total
    small = ledger_for(memory_api, max_bytes=cap)
    small.add([spent_in(months_ago(0), "second")])
    assert "second" in memory_api.data()
    with pytest.raises(RemoteUnavailable, match="larger than"):  # reading everything needs every file...
        ledger_for(memory_api, max_bytes=len(json.dumps(memory_api.data())) // 2).read()
    assert len(small.read().records) == 402  # ...each under the cap


def test_the_files_other_clients_read_are_never_emptied_by_a_wrong_clock(memory_api: FakeMemoryApi) -> None:
    seeded = _seed_months(memory_api, months=4)
    led = ledger_for(memory_api)
    doc = led._get(led._client(), "agent-costs", time.monotonic() + 5)
    moving = to_archive(doc.contents("test"), now=datetime(2099, 1, 1, tzinfo=UTC))
    # A clock in 2099 moves what a right clock moves, never the newest two months of the data.
    assert set(moving) == {months_ago(2), months_ago(3)}
    assert {k for entries in moving.values() for k in entries} == {
        r.session_id for m in (months_ago(2), months_ago(3)) for r in seeded[m]}
