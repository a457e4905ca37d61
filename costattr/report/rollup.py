"""Roll ledger segments up into report rows. Pure functions over plain data.

Every segment lands in exactly one row, or in `unattributed` when it has no key for the chosen
grouping (no issue, no PR, no branch...), so rows plus unattributed always add up to the totals.
Keys that are related but not primary (a second issue in a commit message) are listed on the
row, never summed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from costattr.models import LedgerEntry, Segment, Tokens, cache_pct, local_day, money, parse_ts, to_json_money

GROUPINGS = ("issue", "pr", "branch", "session", "commit", "model", "day", "week", "month",
             "author", "repo", "host", "tool")


@dataclass
class Row:
    key: str
    cost: Decimal = Decimal(0)
    authoritative: Decimal = Decimal(0)
    tokens: Tokens = field(default_factory=Tokens)
    requests: int = 0
    unpriced_requests: int = 0
    sessions: set[str] = field(default_factory=set)
    commits: list[str] = field(default_factory=list)
    prs: set[int] = field(default_factory=set)
    related: list[str] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None
    budget: Decimal | None = None
    parts: list[tuple[LedgerEntry, Segment, Decimal, Tokens]] = field(default_factory=list)

    @property
    def estimated(self) -> bool:
        return self.cost != self.authoritative

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.cost > self.budget

    @property
    def duration_s(self) -> int:
        if not self.first_ts or not self.last_ts:
            return 0
        return int((parse_ts(self.last_ts) - parse_ts(self.first_ts)).total_seconds())

    def add(self, entry: LedgerEntry, seg: Segment, cost: Decimal, tokens: Tokens, authoritative: Decimal,
            requests: int, unpriced: int) -> None:
        self.cost += cost
        self.authoritative += authoritative
        self.tokens.add(tokens)
        self.requests += requests
        self.unpriced_requests += unpriced
        self.sessions.add(entry.session_id)
        if seg.commit and seg.commit not in self.commits:
            self.commits.append(seg.commit)
        self.prs.update(segment_prs(entry, seg))
        for key in [seg.issue, *seg.related_issues]:
            if key and key != self.key and key not in self.related:
                self.related.append(key)
        if seg.first_ts:
            self.first_ts = min(self.first_ts or seg.first_ts, seg.first_ts)
        if seg.last_ts:
            self.last_ts = max(self.last_ts or seg.last_ts, seg.last_ts)
        self.parts.append((entry, seg, cost, tokens))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "cost_usd": to_json_money(self.cost),
            "estimated": self.estimated,
            "tokens": tokens_json(self.tokens),
            "cache_pct": self.tokens.cache_pct(),
            "requests": self.requests,
            "sessions": len(self.sessions),
            "commits": self.commits,
            "prs": sorted(self.prs),
            "related": self.related,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "duration_s": self.duration_s,
        }
        if self.unpriced_requests:
            out["unpriced_requests"] = self.unpriced_requests
        if self.budget is not None:
            out["budget_usd"] = to_json_money(self.budget)
            out["over_budget"] = self.over_budget
        return out


def tokens_json(t: Tokens) -> dict[str, int]:
    return {"input": t.input, "output": t.output, "cache_write": t.cache_write, "cache_read": t.cache_read,
            "cache_write_5m": t.cache_write_5m, "cache_write_1h": t.cache_write_1h, "reasoning": t.reasoning}


@dataclass
class Rollup:
    by: str
    rows: list[Row]
    unattributed: Row
    total: Row
    # The time zone the rows' days were cut in (None: local), so renderers show the same days.
    tz: tzinfo | None = None

    def as_json(self) -> dict[str, Any]:
        un = self.unattributed
        return {
            "by": self.by,
            "rows": [r.as_json() for r in self.rows],
            "totals": self.total.as_json() | {"rows": len(self.rows)},
            "unattributed": {"cost_usd": to_json_money(un.cost), "tokens": tokens_json(un.tokens),
                             "requests": un.requests, "sessions": len(un.sessions),
                             "unpriced_requests": un.unpriced_requests},
        }


@dataclass(frozen=True)
class Filters:
    since: date | None = None
    until: date | None = None
    issue: str | None = None
    branch: str | None = None
    repo: str | None = None
    pr: int | None = None
    tz: tzinfo | None = None

    def keep(self, entry: LedgerEntry, seg: Segment) -> bool:
        if self.issue and self.issue.upper() not in {k.upper() for k in [seg.issue or "", *seg.related_issues]}:
            return False
        if self.branch and seg.branch != self.branch:
            return False
        if self.repo and entry.repo != self.repo:
            return False
        if self.pr is not None and self.pr not in segment_prs(entry, seg):
            return False
        if self.since or self.until:
            day = day_of(seg.last_ts or entry.last_ts, self.tz)
            if day is None or (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True


def segment_prs(entry: LedgerEntry, seg: Segment) -> list[int]:
    """A segment's PRs: its own, else the entry's when the segment is on the entry's branch."""
    if seg.prs:
        return list(seg.prs)
    return list(entry.prs) if entry.prs and seg.branch is not None and seg.branch == entry.branch else []


def day_of(ts: str | None, tz: tzinfo | None) -> date | None:
    return local_day(ts, tz) if ts else None


def _period_key(by: str, ts: str | None, tz: tzinfo | None) -> str | None:
    day = day_of(ts, tz)
    if day is None:
        return None
    if by == "day":
        return day.isoformat()
    if by == "week":  # ISO weeks start on Monday
        monday = day - timedelta(days=day.weekday())
        return f"{monday.isoformat()} (W{day.isocalendar().week:02d})"
    return day.strftime("%Y-%m")


def _keys(by: str, entry: LedgerEntry, seg: Segment, tz: tzinfo | None) -> str | None:
    match by:
        case "issue":
            return seg.issue
        case "pr":
            prs = segment_prs(entry, seg)
            return f"#{min(prs)}" if prs else None
        case "branch":
            return seg.branch
        case "session":
            return entry.session_id
        case "commit":
            return seg.commit
        case "day" | "week" | "month":
            return _period_key(by, seg.last_ts or entry.last_ts, tz)
        case "author":
            return entry.author
        case "repo":
            return entry.repo
        case "host":
            return entry.host
        case "tool":
            return entry.tool
    raise ValueError(f"unknown grouping {by!r}")


def iter_parts(entry: LedgerEntry, seg: Segment, by: str) -> Iterator[tuple[str | None, Decimal, Decimal, Tokens, int, int]]:
    """(model or None, cost, authoritative part, tokens, requests, unpriced) of a segment.

    By model a segment splits into its models; otherwise it is one part.
    """
    if by == "model" and seg.models:
        seg_cost = money(seg.cost_usd)
        names = list(seg.models)
        costs = [money(seg.models[n].cost_usd) for n in names]
        # Each model's cost was rounded on its own when the ledger was written, so their sum can
        # miss the segment's by a few 1e-10: the costliest model takes the remainder, so the total
        # by model is the total by every other grouping.
        biggest = max(range(len(names)), key=lambda i: (costs[i], names[i]))
        costs[biggest] += seg_cost - sum(costs, Decimal(0))
        # The ledger keeps the authoritative share per segment, not per model: a fully
        # authoritative segment is authoritative in every model; a mixed one counts as estimated.
        fully_authoritative = seg_cost != 0 and money(seg.authoritative_usd) == seg_cost
        for name, cost in zip(names, costs, strict=True):
            mu = seg.models[name]
            yield (name, cost, cost if fully_authoritative else Decimal(0), Tokens.from_dict(mu.tokens.model_dump()),
                   mu.requests, mu.unpriced_requests)
        return
    yield (None, money(seg.cost_usd), money(seg.authoritative_usd), Tokens.from_dict(seg.tokens.model_dump()),
           seg.requests, seg.unpriced_requests)


def rollup(
    entries: Iterable[LedgerEntry],
    by: str,
    filters: Filters = Filters(),
    budget_for: Callable[[str, str], Decimal | None] | None = None,
) -> Rollup:
    rows: dict[str, Row] = {}
    unattributed = Row("(unattributed)")
    total = Row("(total)")
    # In time order, not the backend's: a row's commits (and related keys, and the tree's parts)
    # then read as they happened, whichever order the JSON file or the memory API returned.
    pairs = sorted(((entry, seg) for entry in entries for seg in entry.segments),
                   key=lambda p: (p[1].last_ts or p[0].last_ts or "", p[0].session_id, p[1].first_ts or ""))
    for entry, seg in pairs:
        if not filters.keep(entry, seg):
            continue
        for model, cost, auth, tokens, requests, unpriced in iter_parts(entry, seg, by):
            key = model if by == "model" else _keys(by, entry, seg, filters.tz)
            row = unattributed if key is None else rows.setdefault(key, Row(key))
            row.add(entry, seg, cost, tokens, auth, requests, unpriced)
            total.add(entry, seg, cost, tokens, auth, requests, unpriced)
    ordered = sorted(rows.values(), key=lambda r: (-r.cost, r.key))
    if budget_for is not None:
        for row in ordered:
            row.budget = budget_for(by, row.key)
    return Rollup(by, ordered, unattributed, total, filters.tz)


def top(roll: Rollup, n: int) -> Rollup:
    """The N costliest rows; the rest folded into one row so the sums still add up."""
    if n <= 0 or len(roll.rows) <= n:
        return roll
    rest = Row(f"({len(roll.rows) - n} more)")
    for row in roll.rows[n:]:
        for entry, seg, cost, tokens in row.parts:
            rest.add(entry, seg, cost, tokens, Decimal(0), 0, 0)
        rest.authoritative += row.authoritative
        rest.requests += row.requests
        rest.unpriced_requests += row.unpriced_requests
    return Rollup(roll.by, roll.rows[:n] + [rest], roll.unattributed, roll.total, roll.tz)


def pct(part: Decimal, whole: Decimal) -> float:
    return float(round(100 * part / whole, 1)) if whole else 0.0


def cache_pct_of(t: Tokens) -> float:
    return cache_pct(t.input, t.cache_write, t.cache_read)
