"""Properties of the report over random v2 ledgers: rows plus unattributed are the totals, exactly,
for every grouping, every filter, every time zone and with --top N; every row is exactly the parts
that carry its key; the totals do not depend on the grouping; `--by day` and `--since/--until` cut
at the parts' 15-minute buckets in the report's time zone, so a record across a local midnight
splits exactly; and every rendering keeps to what it promises (80 columns, sums in the csv).

The ledgers are records as the hook writes them (closed, open, unattributed spend records with
random parts across buckets and models, links to PRs, rewrites of commits, open records absorbed by
closed ones), resolved by `view.visible` as `costattr report` resolves them. The expected figures
are computed here from the parts themselves, not by the code under test.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from builders import link, part, rewrite, spend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costattr.ledger.records import BEFORE_BASE, BUCKET_MINUTES, DETACHED, AnyRecord, Part
from costattr.ledger.view import Spend, visible
from costattr.models import Tokens, money
from costattr.report.budget import budget_lookup
from costattr.report.render import render_csv, render_markdown, render_table, render_tree
from costattr.report.rollup import GROUPINGS, Filters, Rollup, Row, rollup, top

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BRANCHES = ["main", "feature/PROJ-1-login", "alice/eng-42-cache", "123-crash", "release-1.2",
            "feature/PROJ-9-a-really-long-branch-name-that-never-ends-and-goes-on", DETACHED]
ISSUES = ["PROJ-1", "ENG-42", "#123", "AB#7", "PROJ-9"]
COMMITS = [f"{i:x}" * 40 for i in range(1, 7)]
MODELS = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "gpt-5.1-codex", "mystery-model"]
SESSIONS = ["sess-0", "sess-1", "sess-2", "019a7e2c-5b1d-7c40-9e8f-c0dec0dec0de"]
REPOS = ["acme/app", "acme/api", "path:/src/tool"]
# Whole hours, half and quarter hours off UTC, both sides of it, summer time ending inside the span.
ZONES: list[tzinfo] = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Kolkata"),
                       ZoneInfo("Asia/Kathmandu"), ZoneInfo("Pacific/Chatham"), ZoneInfo("Pacific/Kiritimati")]
START = datetime(2026, 10, 20, tzinfo=UTC)  # summer time ends in Europe (10-25) and the US (11-01)
DAYS = 45
BUCKET = timedelta(minutes=BUCKET_MINUTES)
TOKEN_KINDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "reasoning")

# USD with the ledger's precision: exact as Decimal, and exact through the JSON edge's float.
usd = st.decimals(min_value=0, max_value=20, places=10, allow_nan=False, allow_infinity=False)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_of(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def local_date(bucket: str, tz: tzinfo) -> date:
    return utc_of(bucket).astimezone(tz).date()


# ------------------------------------------------------------------------------------------------
# strategies


@st.composite
def anchors(draw: st.DrawFn) -> datetime:
    """Where a record's spend is centred: anywhere, or on a local midnight of one of the zones
    (so records across midnight, the case day rows must split, are frequent)."""
    day = START + timedelta(days=draw(st.integers(0, DAYS - 1)))
    if draw(st.booleans()):
        return day + BUCKET * draw(st.integers(0, 24 * 60 // BUCKET_MINUTES - 1))
    tz = draw(st.sampled_from(ZONES))
    midnight = datetime.combine(day.date(), datetime.min.time(), tzinfo=tz).astimezone(UTC)
    return midnight - midnight.minute % BUCKET_MINUTES * timedelta(minutes=1)


@st.composite
def record_parts(draw: st.DrawFn) -> tuple[tuple[Part, ...], str, str]:
    """Parts in buckets around an anchor (unique per bucket and model), and the record's first and
    last request, inside its first and last bucket; now and then a 0.1-style record, whose first
    request lies well before its only bucket."""
    anchor = draw(anchors())
    offsets = sorted(draw(st.lists(st.integers(-8, 8), min_size=1, max_size=5, unique=True)))
    parts: list[Part] = []
    for offset in offsets:
        stamp = iso(anchor + BUCKET * offset)
        for model in draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=2, unique=True)):
            requests = draw(st.integers(1, 20))
            unpriced = requests if model == "mystery-model" else draw(st.sampled_from([0, 0, 1]))
            cost = Decimal(0) if unpriced == requests else draw(usd)
            n = st.integers(0, 50_000)
            parts.append(part(stamp, model, cost=cost, requests=requests, unpriced=min(unpriced, requests),
                              authoritative=draw(st.sampled_from([Decimal(0), cost, (cost / 2).quantize(Decimal("1e-10"))])),
                              input=draw(n), output=draw(n), cache_write_5m=draw(n), cache_write_1h=draw(n),
                              cache_read=draw(n), reasoning=draw(st.integers(0, 1000))))
    first_bucket, last_bucket = anchor + BUCKET * offsets[0], anchor + BUCKET * offsets[-1]
    within = st.integers(0, BUCKET_MINUTES * 60_000 - 1).map(lambda ms: timedelta(milliseconds=ms))
    a, b = draw(within), draw(within)
    if first_bucket == last_bucket and a > b:
        a, b = b, a
    first = first_bucket + a
    if len(offsets) == 1 and draw(st.integers(0, 9)) == 0:
        first -= timedelta(hours=draw(st.integers(1, 60)))
    return tuple(parts), iso(first), iso(last_bucket + b)


@st.composite
def ledgers(draw: st.DrawFn) -> list[AnyRecord]:
    records: list[AnyRecord] = []
    open_ids: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        state = draw(st.sampled_from(["closed", "closed", "open", "unattributed"]))
        parts, first, last = draw(record_parts())
        session, repo = draw(st.sampled_from(SESSIONS)), draw(st.sampled_from(REPOS))
        closes = draw(st.lists(st.sampled_from(open_ids), max_size=2, unique=True)) if state == "closed" and open_ids else []
        rec = spend(
            session, repo=repo, state=state,
            branch=None if state == "unattributed" else draw(st.sampled_from(BRANCHES)),
            commit=draw(st.sampled_from(COMMITS)) if state == "closed" else None,
            issue=None if state == "unattributed" else draw(st.none() | st.sampled_from(ISSUES)),
            related=draw(st.lists(st.sampled_from(ISSUES), max_size=2, unique=True)) if state == "closed" else (),
            message=draw(st.none() | st.sampled_from(["Add login", "Fix | pipes [x] *stars*", "日本語のコミット"]))
            if state == "closed" else None,
            note=draw(st.sampled_from([None, BEFORE_BASE])) if state == "unattributed" else None,
            first_ts=first, last_ts=last, parts=parts, closes=closes,
            tool=draw(st.sampled_from(["claude", "codex"])), host=draw(st.none() | st.sampled_from(["laptop", "ci-7"])),
            author=draw(st.none() | st.sampled_from(["Test Dev", "Alice"])),
        )
        records.append(rec)
        if state == "open":
            open_ids.append(rec.id)
    spent = [r for r in records if getattr(r, "branch", None)]
    for r in draw(st.lists(st.sampled_from(spent), max_size=4)) if spent else []:
        records.append(link(r.session_id, r.branch, draw(st.integers(1, 6)), repo=r.repo))  # type: ignore[union-attr]
    committed = [r for r in records if getattr(r, "commit", None)]
    for r in draw(st.lists(st.sampled_from(committed), max_size=2)) if committed else []:
        records.append(rewrite(r.session_id, r.commit, draw(st.sampled_from(COMMITS)), repo=r.repo,  # type: ignore[union-attr]
                               branch=r.branch, message="Reworded", issue=draw(st.none() | st.sampled_from(ISSUES))))  # type: ignore[union-attr]
    return records


@st.composite
def filters(draw: st.DrawFn) -> Filters:
    day = st.none() | st.dates(min_value=START.date() - timedelta(days=3), max_value=START.date() + timedelta(days=DAYS + 3))
    return Filters(
        since=draw(day), until=draw(day),
        issue=draw(st.none() | st.sampled_from([*ISSUES, "proj-1"])),
        branch=draw(st.none() | st.sampled_from(BRANCHES)),
        repo=draw(st.none() | st.sampled_from(["acme/app", "acme/api", "/src/tool"])),
        prs=draw(st.sampled_from([(), (1,), (2, 5), (6,)])),
        tz=draw(st.sampled_from(ZONES)),
    )


# ------------------------------------------------------------------------------------------------
# what the report must show, computed from the parts


def kept(spends: list[Spend], f: Filters) -> list[tuple[Spend, Part]]:
    """The parts the filters keep: by record (issue keys case-insensitively, branch, repository
    with or without `path:`, PR), then by the local day of each part's bucket."""
    assert f.tz is not None
    out = []
    for s in spends:
        keys = {k.upper() for k in (s.issue, *s.related) if k}
        if ((f.issue and f.issue.upper() not in keys) or (f.branch and s.record.display_branch != f.branch)
                or (f.repo and f.repo not in (s.record.repo, s.record.repo.removeprefix("path:")))
                or (f.prs and not any(n in s.prs for n in f.prs))):
            continue
        for p in s.parts:
            day = local_date(p.bucket, f.tz)
            if (f.since is None or f.since <= day) and (f.until is None or day <= f.until):
                out.append((s, p))
    return out


def expected_key(by: str, s: Spend, p: Part, tz: tzinfo) -> str | None:
    rec = s.record
    day = local_date(p.bucket, tz)
    return {
        "issue": s.issue, "pr": f"#{min(s.prs)}" if s.prs else None, "branch": rec.display_branch,
        "session": rec.session_id, "commit": s.commit, "model": p.model, "day": day.isoformat(),
        "week": f"{day - timedelta(days=day.weekday())} (W{day.isocalendar().week:02d})", "month": f"{day:%Y-%m}",
        "author": rec.author, "repo": rec.repo.removeprefix("path:"), "host": rec.host, "tool": rec.tool,
    }[by]


def figures(pairs: list[tuple[Spend, Part]]) -> tuple[Decimal, Decimal, dict[str, int], int, int, set[str]]:
    tokens = Tokens()
    for _s, p in pairs:
        tokens.add(p.tokens)
    return (sum((p.cost for _s, p in pairs), Decimal(0)), sum((p.authoritative for _s, p in pairs), Decimal(0)),
            tokens.as_dict(), sum(p.requests for _s, p in pairs), sum(p.unpriced for _s, p in pairs),
            {s.session_id for s, _p in pairs})


def figures_of(row: Row) -> tuple[Decimal, Decimal, dict[str, int], int, int, set[str]]:
    return row.cost, row.authoritative, row.tokens.as_dict(), row.requests, row.unpriced_requests, row.sessions


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
    for kind in ("input", "output", "cache_write", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning"):
        assert sum(r["tokens"][kind] for r in rows) + un["tokens"][kind] == tot["tokens"][kind], kind
    assert sum(r["requests"] for r in rows) + un["requests"] == tot["requests"]
    assert [r["key"] for r in rows] == [r.key for r in roll.rows]


# ------------------------------------------------------------------------------------------------
# properties


@SETTINGS
@given(records=ledgers(), by=st.sampled_from(GROUPINGS), f=filters(), n=st.integers(0, 4))
def test_rows_plus_unattributed_are_the_totals(records: list[AnyRecord], by: str, f: Filters, n: int) -> None:
    assert f.tz is not None
    spends = visible(records)
    full = rollup(spends, by, f)
    assert_adds_up(full)
    assert_json_adds_up(full)
    # every row is exactly the parts carrying its key, unattributed those with none, the total all of them
    pairs = kept(spends, f)
    by_key: dict[str | None, list[tuple[Spend, Part]]] = defaultdict(list)
    for s, p in pairs:
        by_key[expected_key(by, s, p, f.tz)].append((s, p))
    assert {r.key: figures_of(r) for r in full.rows} == {k: figures(v) for k, v in by_key.items() if k is not None}
    assert figures_of(full.unattributed) == figures(by_key.get(None, []))
    assert figures_of(full.total) == figures(pairs)
    # time groupings in time order; the rest costliest first (then by key)
    if by in ("day", "week", "month"):
        assert [r.key for r in full.rows] == sorted(r.key for r in full.rows)
    else:
        assert [(r.cost, r.key) for r in full.rows] == sorted(((r.cost, r.key) for r in full.rows),
                                                              key=lambda ck: (-ck[0], ck[1]))

    folded = top(full, n)
    assert_adds_up(folded)
    assert_json_adds_up(folded)
    assert folded.total is full.total and folded.unattributed is full.unattributed
    if n and len(full.rows) > n:
        costliest = sorted(full.rows, key=lambda r: (-r.cost, r.key))
        top_n, folded_in = costliest[:n], costliest[n:]
        # the N costliest, in the report's own order (time order for days, weeks, months)
        assert [r.key for r in folded.rows[:n]] == [r.key for r in full.rows if r in top_n]
        rest = folded.rows[-1]
        assert len(folded.rows) == n + 1 and rest.key == f"({len(full.rows) - n} more)"
        assert figures_of(rest) == tuple(_fold(figures_of(r) for r in folded_in))
        assert set(rest.commits) == {c for r in folded_in for c in r.commits}
        assert rest.prs == {p for r in folded_in for p in r.prs}
    else:
        assert folded.rows == full.rows


def _fold(rows: Any) -> list[Any]:
    """Element-wise sums of `figures` tuples (sets united)."""
    out: list[Any] = [Decimal(0), Decimal(0), dict.fromkeys(TOKEN_KINDS, 0), 0, 0, set()]
    for cost, auth, tokens, requests, unpriced, sessions in rows:
        out[0] += cost
        out[1] += auth
        out[2] = {k: out[2][k] + tokens[k] for k in TOKEN_KINDS}
        out[3] += requests
        out[4] += unpriced
        out[5] |= sessions
    return out


@SETTINGS
@given(records=ledgers(), f=filters())
def test_totals_do_not_depend_on_the_grouping(records: list[AnyRecord], f: Filters) -> None:
    spends = visible(records)
    totals = {by: figures_of(rollup(spends, by, f).total) for by in GROUPINGS}
    for by, total in totals.items():
        assert total == totals["issue"], by


@SETTINGS
@given(records=ledgers(), tz=st.sampled_from(ZONES))
def test_filters_only_remove(records: list[AnyRecord], tz: tzinfo) -> None:
    """A filtered report is a part of the unfiltered one, row by row."""
    spends = visible(records)
    everything = {r.key: r for r in rollup(spends, "issue", Filters(tz=tz)).rows}
    for f in (Filters(issue="PROJ-1", tz=tz), Filters(branch="main", tz=tz), Filters(repo="acme/app", tz=tz),
              Filters(prs=(1,), tz=tz), Filters(since=date(2026, 11, 1), until=date(2026, 11, 30), tz=tz)):
        for row in rollup(spends, "issue", f).rows:
            assert row.key in everything and row.cost <= everything[row.key].cost
            assert row.requests <= everything[row.key].requests


@SETTINGS
@given(records=ledgers(), tz=st.sampled_from(ZONES))
def test_by_day_is_each_local_days_parts(records: list[AnyRecord], tz: tzinfo) -> None:
    """`--by day` in a time zone: each day is the sum of the parts whose bucket falls on that local
    date, so a record across local midnight splits exactly; its rows' times are on that day."""
    spends = visible(records)
    days: dict[str, list[tuple[Spend, Part]]] = defaultdict(list)
    for s in spends:
        for p in s.parts:
            start = utc_of(p.bucket)
            # the premise: in every zone in use, a 15-minute bucket lies inside one local day
            assert start.astimezone(tz).date() == (start + BUCKET - timedelta(microseconds=1)).astimezone(tz).date()
            days[local_date(p.bucket, tz).isoformat()].append((s, p))
    roll = rollup(spends, "day", Filters(tz=tz))
    assert {r.key: figures_of(r) for r in roll.rows} == {d: figures(v) for d, v in days.items()}
    assert roll.unattributed.requests == 0 and roll.unattributed.cost == 0
    for row in roll.rows:
        assert row.first_ts is not None and row.last_ts is not None
        assert utc_of(row.first_ts).astimezone(tz).date().isoformat() == row.key
        assert utc_of(row.last_ts).astimezone(tz).date().isoformat() == row.key


@SETTINGS
@given(records=ledgers(), by=st.sampled_from(GROUPINGS), tz=st.sampled_from(ZONES),
       since=st.dates(min_value=START.date() - timedelta(days=2), max_value=START.date() + timedelta(days=DAYS)),
       span=st.integers(0, 20))
def test_since_until_keep_exactly_the_parts_of_those_days(records: list[AnyRecord], by: str, tz: tzinfo,
                                                          since: date, span: int) -> None:
    """--since/--until are inclusive, cut at the parts' local days (the same days as the day rows),
    for every grouping."""
    until = since + timedelta(days=span)
    spends = visible(records)
    inside = [(s, p) for s in spends for p in s.parts if since <= local_date(p.bucket, tz) <= until]
    roll = rollup(spends, by, Filters(since=since, until=until, tz=tz))
    assert figures_of(roll.total) == figures(inside)
    assert_adds_up(roll)
    by_day = {r.key: figures_of(r) for r in rollup(spends, "day", Filters(tz=tz)).rows}
    cut = {r.key: figures_of(r) for r in rollup(spends, "day", Filters(since=since, until=until, tz=tz)).rows}
    assert cut == {d: v for d, v in by_day.items() if since.isoformat() <= d <= until.isoformat()}


@SETTINGS
@given(records=ledgers(), by=st.sampled_from(["issue", "branch", "day", "week", "month"]),
       budget=st.decimals(min_value=0, max_value=30, places=2), tz=st.sampled_from(ZONES))
def test_over_budget_is_cost_above_budget(records: list[AnyRecord], by: str, budget: Decimal, tz: tzinfo) -> None:
    class Budgets:  # the attributes BudgetConfig has
        issue = dict.fromkeys(ISSUES, budget)
        branch = dict.fromkeys(BRANCHES, budget)
        day = week = month = budget

    roll = rollup(visible(records), by, Filters(tz=tz), budget_for=budget_lookup(Budgets()))
    for row in roll.rows:
        assert row.budget == budget
        assert row.over_budget == (row.cost > budget)
        assert row.as_json()["over_budget"] == (row.cost > budget)
    assert not roll.unattributed.over_budget


# A record across local midnight, for each kind of offset: the UTC moment of 2026-11-21 00:00 there.
MIDNIGHTS = {"UTC": "2026-11-21T00:00:00.000Z", "Asia/Kolkata": "2026-11-20T18:30:00.000Z",
             "Asia/Kathmandu": "2026-11-20T18:15:00.000Z", "America/Los_Angeles": "2026-11-21T08:00:00.000Z"}


@pytest.mark.parametrize("zone", sorted(MIDNIGHTS))
def test_a_session_across_local_midnight_splits_exactly(zone: str) -> None:
    midnight = utc_of(MIDNIGHTS[zone])
    before, after = iso(midnight - timedelta(minutes=1)), iso(midnight)
    rec = spend("s-late", issue="PROJ-1", first_ts=before, last_ts=iso(midnight + timedelta(minutes=14)),
                parts=[part(before, cost="1.01"), part(after, cost="0.68")])
    tz = ZoneInfo(zone)
    roll = rollup(visible([rec]), "day", Filters(tz=tz))
    assert {r.key: r.cost for r in roll.rows} == {"2026-11-20": Decimal("1.01"), "2026-11-21": Decimal("0.68")}
    assert rollup(visible([rec]), "issue", Filters(since=date(2026, 11, 21), tz=tz)).total.cost == Decimal("0.68")
    assert rollup(visible([rec]), "issue", Filters(until=date(2026, 11, 20), tz=tz)).total.cost == Decimal("1.01")


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
@given(records=ledgers(), by=st.sampled_from(GROUPINGS), keys=st.lists(key_text, min_size=1, max_size=6),
       tz=st.sampled_from(ZONES))
def test_table_and_tree_fit_80_columns(records: list[AnyRecord], by: str, keys: list[str], tz: tzinfo) -> None:
    from rich.cells import cell_len

    roll = rollup(visible(records), by, Filters(tz=tz))
    for row, key in zip(roll.rows, keys, strict=False):
        row.key = key  # any branch name, issue key or host: long, wide, bracketed
    roll.rows.append(Row(keys[0], cost=Decimal("12345.6789"), requests=1, unpriced_requests=1, budget=Decimal(1)))
    table = _render(lambda: render_table(roll, "2026-11-24"))
    tree = render_tree(roll)
    for text in (table, tree):
        too_wide = [line for line in text.splitlines() if cell_len(line) > 80]
        assert not too_wide
    assert table.splitlines()[0].split()[1:] == ["Cost", "Tokens", "Cache", "Sess", "Cmts", "Last", "Span"]
    assert "$12,345.68+?!" in table  # the figures are never the ones cut short
    assert all(line == line.rstrip() for line in table.splitlines())


@SETTINGS
@given(records=ledgers(), by=st.sampled_from(GROUPINGS), n=st.integers(0, 3), tz=st.sampled_from(ZONES))
def test_csv_and_markdown_carry_every_row(records: list[AnyRecord], by: str, n: int, tz: tzinfo) -> None:
    roll = top(rollup(visible(records), by, Filters(tz=tz)), n)
    rows = list(csv.DictReader(io.StringIO(render_csv(roll))))
    assert rows[-1]["key"] == "(total)"
    body = rows[:-1]
    assert len(body) == len(roll.rows) + (1 if roll.unattributed.requests else 0)
    # unattributed spend with no requests is $0 by construction, so the csv still adds up
    assert sum((Decimal(r["cost_usd"]) for r in body), Decimal(0)) == Decimal(rows[-1]["cost_usd"])
    assert sum(int(r["cache_read"]) for r in body) == int(rows[-1]["cache_read"])
    assert sum(int(r["requests"]) for r in body) == int(rows[-1]["requests"])
    md = render_markdown(roll).splitlines()
    assert len(md) == 2 + len(body) + 1 + 2  # header, rule, rows, total, blank, footnotes


# ------------------------------------------------------------------------------------------------
# cost: a report reads the whole history, so the rollup must stay linear in it


def _large(n: int) -> list[Spend]:
    """n records, each its own session, issue and related key, over a month of buckets."""
    out = []
    for i in range(n):
        ts = iso(START + timedelta(minutes=37 * i))
        out.append(spend(f"s-{i}", issue=f"PROJ-{i}", related=[f"ENG-{i}"], first_ts=ts,
                         parts=[part(ts), part(ts, "claude-haiku-4-5-20251001")]))
    return visible(out)


def _cpu_seconds(spends: list[Spend]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for by, f in (("issue", Filters(tz=UTC)), ("day", Filters(tz=ZoneInfo("Asia/Kolkata"))),
                      ("branch", Filters(since=date(2026, 10, 25), tz=UTC))):
            rollup(spends, by, f)
        best = min(best, time.process_time() - start)
    return best


def test_rollup_stays_linear_in_the_ledger() -> None:
    """Four times the records, about four times the work: a row (the total row above all) gathers
    every commit, session and issue key of the history, and a list scan per key would make that
    quadratic (16x here). CPU time, best of three, with the collector paused: the ratio, not the
    machine's speed, is what is measured."""
    small, large = _large(3_000), _large(12_000)
    gc.collect()
    gc.disable()
    try:
        ratio = _cpu_seconds(large) / _cpu_seconds(small)
    finally:
        gc.enable()
    assert ratio < 10, f"12k records cost {ratio:.1f}x 3k records"
