"""Properties of the report over random ledgers: rows plus unattributed are the totals, exactly,
for every grouping, every filter, every time zone and with --top N; the totals do not depend on
the grouping; and every rendering keeps to what it promises (80 columns, sums in the csv).

The ledgers are LedgerEntry/Segment objects as the hook writes them: money is a JSON float whose
repr is the exact Decimal, a segment's per-model figures add up to the segment's (up to the 1e-10
rounding each model's cost got on its own when it was written).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costattr.models import LedgerEntry, ModelUsage, Segment, Tokens, TokensModel, money
from costattr.report.budget import budget_lookup
from costattr.report.render import render_csv, render_markdown, render_table, render_tree
from costattr.report.rollup import GROUPINGS, Filters, Rollup, Row, rollup, top

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BRANCHES = ["main", "feature/PROJ-1-login", "alice/eng-42-cache", "123-crash", "release-1.2",
            "feature/PROJ-9-a-really-long-branch-name-that-never-ends-and-goes-on"]
ISSUES = ["PROJ-1", "ENG-42", "#123", "AB#7", "PROJ-9"]
COMMITS = [f"{i:x}" * 40 for i in range(1, 7)]
MODELS = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "gpt-5.1-codex", "mystery-model"]
ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Kathmandu"),
         ZoneInfo("Pacific/Kiritimati")]
START = datetime(2026, 10, 25, tzinfo=UTC)  # spans the end of summer time in Europe
ONE_TENTH_NANO = Decimal("1e-10")

# USD with the precision the ledger keeps, small enough that every sum stays exact as a float repr.
usd = st.decimals(min_value=0, max_value=20, places=8, allow_nan=False, allow_infinity=False)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@st.composite
def tokens(draw: st.DrawFn) -> Tokens:
    n = st.integers(0, 50_000)
    return Tokens(draw(n), draw(n), draw(n), draw(n), draw(n), draw(st.integers(0, 1000)))


@st.composite
def segments(draw: st.DrawFn) -> Segment:
    start = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 45)))
    end = start + timedelta(minutes=draw(st.integers(0, 60 * 30)), milliseconds=draw(st.integers(0, 999)))
    models: dict[str, ModelUsage] = {}
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True))
        cost = Decimal(0)
        tok = Tokens()
        requests = unpriced = 0
        for name in names:
            m_cost, m_tok, m_req = draw(usd), draw(tokens()), draw(st.integers(1, 20))
            m_unpriced = m_req if name == "mystery-model" else 0
            models[name] = ModelUsage(requests=m_req, cost_usd=float(0 if m_unpriced else m_cost),
                                      unpriced_requests=m_unpriced, tokens=TokensModel(**m_tok.as_dict()))
            cost += 0 if m_unpriced else m_cost
            tok.add(m_tok)
            requests += m_req
            unpriced += m_unpriced
        # each model's cost was rounded on its own when written: the segment's may differ by 1e-10
        if cost > ONE_TENTH_NANO:
            cost += draw(st.sampled_from([Decimal(0), ONE_TENTH_NANO, -ONE_TENTH_NANO]))
    else:
        cost, tok = draw(usd), draw(tokens())
        requests = draw(st.integers(1, 30))  # the hook keeps no segment without a request
        unpriced = draw(st.integers(0, requests))
    authoritative = draw(st.sampled_from([Decimal(0), cost, (cost / 2).quantize(Decimal("1e-8"))]))
    return Segment(
        branch=draw(st.none() | st.sampled_from(BRANCHES)),
        commit=draw(st.none() | st.sampled_from(COMMITS)),
        issue=draw(st.none() | st.sampled_from(ISSUES)),
        related_issues=draw(st.lists(st.sampled_from(ISSUES), max_size=2, unique=True)),
        prs=draw(st.lists(st.integers(1, 6), max_size=2, unique=True)),
        tokens=TokensModel(**tok.as_dict()),
        cost_usd=float(cost),
        authoritative_usd=float(authoritative),
        requests=requests,
        unpriced_requests=unpriced,
        first_ts=iso(start),
        last_ts=draw(st.sampled_from([iso(end), None])) if not models else iso(end),
        models=models,
        commit_message=draw(st.none() | st.sampled_from(["Add login", "Fix | pipes [x] *stars*", "日本語のコミット"])),
    )


@st.composite
def ledgers(draw: st.DrawFn) -> list[LedgerEntry]:
    n = draw(st.integers(0, 6))
    out: list[LedgerEntry] = []
    for i in range(n):
        segs = draw(st.lists(segments(), max_size=4))
        stamps = sorted(s.last_ts or s.first_ts or "" for s in segs)
        out.append(LedgerEntry(
            session_id=draw(st.sampled_from([f"sess-{i}", f"{i:08x}-5b1d-7c40-9e8f-c0dec0dec0de"])),
            tool=draw(st.sampled_from(["claude", "codex"])),
            host=draw(st.none() | st.sampled_from(["laptop", "ci-runner-7", "desk"])),
            author=draw(st.none() | st.sampled_from(["Test Dev", "Alice"])),
            repo=draw(st.none() | st.sampled_from(["acme/app", "acme/api"])),
            branch=draw(st.none() | st.sampled_from(BRANCHES)),
            prs=draw(st.lists(st.integers(1, 6), max_size=2, unique=True)),
            segments=segs,
            first_ts=stamps[0] if stamps else None,
            last_ts=stamps[-1] if stamps else None,
        ))
    return out


@st.composite
def filters(draw: st.DrawFn) -> Filters:
    day = st.none() | st.dates(min_value=date(2026, 10, 20), max_value=date(2026, 12, 15))
    return Filters(
        since=draw(day), until=draw(day),
        issue=draw(st.none() | st.sampled_from([*ISSUES, "proj-1"])),
        branch=draw(st.none() | st.sampled_from(BRANCHES)),
        repo=draw(st.none() | st.sampled_from(["acme/app", "acme/api"])),
        pr=draw(st.none() | st.integers(1, 6)),
        tz=draw(st.sampled_from(ZONES)),
    )


def plain(f: Filters) -> Filters:
    """The filter that keeps everything, cut in the same time zone."""
    return Filters(tz=f.tz)


TOKEN_KINDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "reasoning")


def assert_adds_up(roll: Rollup) -> None:
    rows = [*roll.rows, roll.unattributed]
    assert sum((r.cost for r in rows), Decimal(0)) == roll.total.cost
    assert sum((r.authoritative for r in rows), Decimal(0)) == roll.total.authoritative
    for kind in TOKEN_KINDS:
        assert sum(getattr(r.tokens, kind) for r in rows) == getattr(roll.total.tokens, kind), kind
    assert sum(r.requests for r in rows) == roll.total.requests
    assert sum(r.unpriced_requests for r in rows) == roll.total.unpriced_requests


def assert_json_adds_up(roll: Rollup) -> None:
    """The same through the JSON edge: floats read back through their repr are the exact sums."""
    doc = json.loads(json.dumps(roll.as_json()))
    rows, un, tot = doc["rows"], doc["unattributed"], doc["totals"]
    assert sum((money(r["cost_usd"]) for r in rows), Decimal(0)) + money(un["cost_usd"]) == money(tot["cost_usd"])
    for kind in ("input", "output", "cache_write", "cache_read"):
        assert sum(r["tokens"][kind] for r in rows) + un["tokens"][kind] == tot["tokens"][kind]
    assert [r["key"] for r in rows] == [r.key for r in roll.rows]


def kept_segments(entries: list[LedgerEntry], f: Filters) -> list[Segment]:
    return [s for e in entries for s in e.segments if f.keep(e, s)]


@SETTINGS
@given(entries=ledgers(), by=st.sampled_from(GROUPINGS), f=filters(), n=st.integers(0, 4))
def test_rows_plus_unattributed_are_the_totals(entries: list[LedgerEntry], by: str, f: Filters, n: int) -> None:
    full = rollup(entries, by, f)
    assert_adds_up(full)
    assert_json_adds_up(full)
    # the total is the sum over the segments the filters keep, whatever the grouping
    kept = kept_segments(entries, f)
    assert full.total.cost == sum((money(s.cost_usd) for s in kept), Decimal(0))
    assert full.total.requests == sum(s.requests for s in kept)
    assert full.total.tokens.as_dict() == {
        k: sum(getattr(s.tokens, k) for s in kept) for k in TOKEN_KINDS}
    # every key once, costliest first
    assert len({r.key for r in full.rows}) == len(full.rows)
    assert [r.cost for r in full.rows] == sorted((r.cost for r in full.rows), reverse=True)

    folded = top(full, n)
    assert_adds_up(folded)
    assert_json_adds_up(folded)
    assert folded.total is full.total and folded.unattributed is full.unattributed
    if n and len(full.rows) > n:
        assert [r.key for r in folded.rows[:n]] == [r.key for r in full.rows[:n]]
        assert len(folded.rows) == n + 1 and folded.rows[-1].key == f"({len(full.rows) - n} more)"
    else:
        assert folded.rows == full.rows


@SETTINGS
@given(entries=ledgers(), f=filters())
def test_totals_do_not_depend_on_the_grouping(entries: list[LedgerEntry], f: Filters) -> None:
    totals = {by: rollup(entries, by, f).total for by in GROUPINGS}
    first = totals["issue"]
    for by, total in totals.items():
        assert total.cost == first.cost, by
        assert total.tokens == first.tokens, by
        assert total.requests == first.requests and total.unpriced_requests == first.unpriced_requests, by
        assert total.sessions == first.sessions, by


@SETTINGS
@given(entries=ledgers(), tz=st.sampled_from(ZONES))
def test_filters_only_remove(entries: list[LedgerEntry], tz: Any) -> None:
    """A filtered report is a part of the unfiltered one, row by row."""
    everything = {r.key: r for r in rollup(entries, "issue", Filters(tz=tz)).rows}
    for f in (Filters(issue="PROJ-1", tz=tz), Filters(branch="main", tz=tz), Filters(repo="acme/app", tz=tz),
              Filters(pr=1, tz=tz), Filters(since=date(2026, 11, 1), until=date(2026, 11, 30), tz=tz)):
        for row in rollup(entries, "issue", f).rows:
            assert row.key in everything and row.cost <= everything[row.key].cost
            assert row.requests <= everything[row.key].requests


@SETTINGS
@given(entries=ledgers(), period=st.sampled_from(["day", "week", "month"]), tz=st.sampled_from(ZONES),
       since=st.dates(min_value=date(2026, 10, 20), max_value=date(2026, 12, 15)), span=st.integers(0, 20))
def test_since_until_keep_exactly_the_days_in_between(entries: list[LedgerEntry], period: str, tz: Any,
                                                     since: date, span: int) -> None:
    """--since/--until are inclusive, and cut in the same time zone as the day rows."""
    until = since + timedelta(days=span)
    by_day = rollup(entries, "day", Filters(tz=tz))
    inside = sum((r.cost for r in by_day.rows if since.isoformat() <= r.key <= until.isoformat()), Decimal(0))
    assert rollup(entries, period, Filters(since=since, until=until, tz=tz)).total.cost == inside


@SETTINGS
@given(entries=ledgers(), by=st.sampled_from(["issue", "branch", "day", "week", "month"]),
       budget=st.decimals(min_value=0, max_value=30, places=2))
def test_over_budget_is_cost_above_budget(entries: list[LedgerEntry], by: str, budget: Decimal) -> None:
    class Budgets:  # the attributes BudgetConfig has
        issue = dict.fromkeys(ISSUES, budget)
        branch = dict.fromkeys(BRANCHES, budget)
        day = week = month = budget

    roll = rollup(entries, by, Filters(tz=UTC), budget_for=budget_lookup(Budgets()))
    for row in roll.rows:
        assert row.budget == budget
        assert row.over_budget == (row.cost > budget)
        assert row.as_json()["over_budget"] == (row.cost > budget)
    assert not roll.unattributed.over_budget


# ------------------------------------------------------------------------------------------------
# renderings


def _render(fn: Callable[[], None]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn()
    return out.getvalue()


key_text = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S"))
                   | st.sampled_from("/-_[]日本"), min_size=1, max_size=90)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=ledgers(), by=st.sampled_from(GROUPINGS), keys=st.lists(key_text, min_size=1, max_size=6))
def test_table_and_tree_fit_80_columns(entries: list[LedgerEntry], by: str, keys: list[str]) -> None:
    from rich.cells import cell_len

    roll = rollup(entries, by, Filters(tz=UTC))
    for row, key in zip(roll.rows, keys, strict=False):
        row.key = key  # any branch name, issue key or host: long, wide, bracketed
    roll.rows.append(Row(keys[0], cost=Decimal("12345.6789"), requests=1, unpriced_requests=1, budget=Decimal(1)))
    table = _render(lambda: render_table(roll, "2026-11-24"))
    tree = render_tree(roll)
    for text in (table, tree):
        too_wide = [line for line in text.splitlines() if cell_len(line) > 80]
        assert not too_wide
    assert table.splitlines()[0].split()[1:] == ["Cost", "Tokens", "Cache", "Sess", "Cmts", "Last", "Time"]
    assert "$12,345.68+?!" in table  # the figures are never the ones cut short
    assert all(line == line.rstrip() for line in table.splitlines())


@SETTINGS
@given(entries=ledgers(), by=st.sampled_from(GROUPINGS), n=st.integers(0, 3))
def test_csv_and_markdown_carry_every_row(entries: list[LedgerEntry], by: str, n: int) -> None:
    roll = top(rollup(entries, by, Filters(tz=UTC)), n)
    rows = list(csv.DictReader(io.StringIO(render_csv(roll))))
    assert rows[-1]["key"] == "(total)"
    body = rows[:-1]
    assert len(body) == len(roll.rows) + (1 if roll.unattributed.requests else 0)
    # unattributed spend with no requests is $0 by construction, so the csv still adds up
    assert sum((Decimal(r["cost_usd"]) for r in body), Decimal(0)) == Decimal(rows[-1]["cost_usd"])
    assert sum(int(r["cache_read"]) for r in body) == int(rows[-1]["cache_read"])
    md = render_markdown(roll).splitlines()
    assert len(md) == 2 + len(body) + 1 + 2  # header, rule, rows, total, blank, footnotes
