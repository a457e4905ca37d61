"""Roll visible spend records up into report rows. Pure functions over plain data.

Every part of every record (its spend in one 15-minute bucket, for one model) lands in exactly one
row, or in `unattributed` when it has no key for the chosen grouping (no issue, no PR, no
branch...), so rows plus unattributed always add up to the totals. Day, week and month rows and
`--since/--until` cut at the parts' buckets in the report's time zone: exact in any real zone.
Keys that are related but not primary (a second issue in a commit message) are listed on the
row, never summed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any

from costattr.ledger.records import BUCKET_MINUTES, Part, parse_utc
from costattr.ledger.view import Spend
from costattr.models import Tokens, to_json_money

GROUPINGS = ("issue", "pr", "branch", "session", "commit", "model", "day", "week", "month",
             "author", "repo", "host", "tool")
_PER_PART = frozenset({"model", "day", "week", "month"})
_TIME = frozenset({"day", "week", "month"})


@dataclass(slots=True)
class Row:
    key: str
    cost: Decimal = Decimal(0)
    authoritative: Decimal = Decimal(0)
    tokens: Tokens = field(default_factory=Tokens)
    requests: int = 0
    unpriced_requests: int = 0
    unpriced_models: dict[str, int] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    # Insertion-ordered sets (dicts): a row can gather every commit and issue key of a large
    # ledger (the total row does), so membership must not cost a scan of a list.
    _commits: dict[str, None] = field(default_factory=dict)
    prs: set[int] = field(default_factory=set)
    _related: dict[str, None] = field(default_factory=dict)
    first_ts: str | None = None
    last_ts: str | None = None
    budget: Decimal | None = None
    backfilled: Decimal = Decimal(0)  # of `cost`, what `costattr backfill` recorded
    # (spend record, cost of it in this row): what --tree drills into
    parts: list[tuple[Spend, Decimal]] = field(default_factory=list)

    @property
    def commits(self) -> list[str]:
        return list(self._commits)

    @property
    def related(self) -> list[str]:
        return list(self._related)

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
        return int((parse_utc(self.last_ts) - parse_utc(self.first_ts)).total_seconds())

    def add(self, spend: Spend, parts: Iterable[Part], first: str, last: str) -> Decimal:
        """Add some parts of one record; returns their cost."""
        cost = Decimal(0)
        for p in parts:
            cost += p.cost
            self.authoritative += p.authoritative
            self.tokens.add(p.tokens)
            self.requests += p.requests
            if p.unpriced:
                self.unpriced_requests += p.unpriced
                self.unpriced_models[p.model] = self.unpriced_models.get(p.model, 0) + p.unpriced
        self.cost += cost
        if spend.record.backfilled:
            self.backfilled += cost
        self.sessions.add(spend.session_id)
        if spend.commit:
            self._commits[spend.commit] = None
        self.prs.update(spend.prs)
        for key in (spend.issue, *spend.related):
            if key and key != self.key:
                self._related[key] = None
        # Records keep canonical timestamps (`canonical_ts`): text order is time order.
        if self.first_ts is None or first < self.first_ts:
            self.first_ts = first
        if self.last_ts is None or last > self.last_ts:
            self.last_ts = last
        self.parts.append((spend, cost))
        return cost

    def absorb(self, other: Row) -> None:
        """Fold a whole row in (the `--top` remainder)."""
        self.cost += other.cost
        self.backfilled += other.backfilled
        self.authoritative += other.authoritative
        self.tokens.add(other.tokens)
        self.requests += other.requests
        self.unpriced_requests += other.unpriced_requests
        for m, n in other.unpriced_models.items():
            self.unpriced_models[m] = self.unpriced_models.get(m, 0) + n
        self.sessions |= other.sessions
        self._commits.update(other._commits)
        self.prs |= other.prs
        self._related.update((k, None) for k in other._related if k != self.key)
        for ts in (other.first_ts, other.last_ts):
            if ts is not None:
                self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
                self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.parts += other.parts

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
            out["unpriced_models"] = dict(sorted(self.unpriced_models.items()))
        if self.backfilled:  # only then: a ledger the hook alone wrote reads as it always did
            out["backfilled_usd"] = to_json_money(self.backfilled)
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
        unattributed: dict[str, Any] = {"cost_usd": to_json_money(un.cost), "tokens": tokens_json(un.tokens),
                                        "requests": un.requests, "sessions": len(un.sessions),
                                        "unpriced_requests": un.unpriced_requests}
        if un.unpriced_models:
            unattributed["unpriced_models"] = dict(sorted(un.unpriced_models.items()))
        return {
            "by": self.by,
            "rows": [r.as_json() for r in self.rows],
            "totals": self.total.as_json() | {"rows": len(self.rows)},
            "unattributed": unattributed,
        }


@dataclass(frozen=True)
class Filters:
    since: date | None = None
    until: date | None = None
    issue: str | None = None
    branch: str | None = None
    repo: str | None = None
    prs: tuple[int, ...] = ()  # any of them
    tz: tzinfo | None = None

    def keep(self, spend: Spend) -> bool:
        if self.issue and self.issue.upper() not in {k.upper() for k in (spend.issue or "", *spend.related)}:
            return False
        if self.branch and spend.branch != self.branch:
            return False
        if self.repo and self.repo not in (spend.record.repo, display_repo(spend.record.repo)):
            return False
        return not self.prs or any(n in spend.prs for n in self.prs)

    @property
    def by_day(self) -> bool:
        return self.since is not None or self.until is not None

    def keep_day(self, day: date) -> bool:
        return not ((self.since and day < self.since) or (self.until and day > self.until))


def display_repo(repo: str) -> str:
    return repo.removeprefix("path:")


@lru_cache(maxsize=65536)
def bucket_day(bucket: str, tz: tzinfo | None) -> date:
    """The local day of a 15-minute bucket (it never straddles a local midnight)."""
    return parse_utc(bucket).astimezone(tz).date()


def day_of(ts: str | None, tz: tzinfo | None) -> date | None:
    return parse_utc(ts).astimezone(tz).date() if ts else None


def period_key(by: str, day: date) -> str:
    if by == "day":
        return day.isoformat()
    if by == "week":  # ISO weeks start on Monday
        monday = day - timedelta(days=day.weekday())
        return f"{monday.isoformat()} (W{day.isocalendar().week:02d})"
    return day.strftime("%Y-%m")


def _record_key(by: str, spend: Spend) -> str | None:
    rec = spend.record
    match by:
        case "issue":
            return spend.issue
        case "pr":
            # Spend linked to several PRs is one row naming them all: every PR shows, and rows
            # still add up to the total.
            return " ".join(f"#{n}" for n in spend.prs) if spend.prs else None
        case "branch":
            return spend.branch
        case "session":
            return rec.session_id
        case "commit":
            return spend.commit
        case "author":
            return rec.author
        case "repo":
            return display_repo(rec.repo)
        case "host":
            return rec.host
        case "tool":
            return rec.tool
    raise ValueError(f"unknown grouping {by!r}")


def _part_key(by: str, part: Part, tz: tzinfo | None) -> str:
    if by == "model":
        return part.model
    return period_key(by, bucket_day(part.bucket, tz))


@lru_cache(maxsize=65536)
def _bucket_span(bucket: str) -> tuple[str, str]:
    """A bucket's first and last millisecond, as canonical timestamps (`YYYY-MM-DDTHH:MM:SS.mmmZ`)."""
    minute = int(bucket[14:16])
    return f"{bucket[:16]}:00.000Z", f"{bucket[:14]}{minute + BUCKET_MINUTES - 1:02d}:59.999Z"


def _clip(spend: Spend, part: Part) -> tuple[str, str]:
    """The record's first and last request, clamped into one part's bucket.

    Text comparisons: records keep canonical timestamps, and validated buckets are 15-minute
    slots, so text order is time order (and a report over 100k records parses no dates here).
    A part outside the record's span (a 0.1 record keeps all its spend in its last bucket)
    lands on the bucket's edge, never in the next bucket (which may be the next local day).
    """
    start, end = _bucket_span(part.bucket)
    rec = spend.record
    return min(max(rec.first_ts, start), end), min(max(rec.last_ts, start), end)


def rollup(
    spends: Iterable[Spend],
    by: str,
    filters: Filters = Filters(),
    budget_for: Callable[[str, str], Decimal | None] | None = None,
) -> Rollup:
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}")
    rows: dict[str, Row] = {}
    unattributed = Row("(unattributed)")
    total = Row("(total)")
    per_part = by in _PER_PART or filters.by_day

    def row_for(key: str | None) -> Row:
        if key is None:
            return unattributed
        row = rows.get(key)
        if row is None:  # not setdefault: that would build a Row for every part it adds
            row = rows[key] = Row(key)
        return row

    for spend in spends:
        if not filters.keep(spend):
            continue
        rec = spend.record
        if not per_part:
            row_for(_record_key(by, spend)).add(spend, rec.parts, rec.first_ts, rec.last_ts)
            total.add(spend, rec.parts, rec.first_ts, rec.last_ts)
            continue
        record_key = None if by in _PER_PART else _record_key(by, spend)
        for part in rec.parts:
            if filters.by_day and not filters.keep_day(bucket_day(part.bucket, filters.tz)):
                continue
            key = _part_key(by, part, filters.tz) if by in _PER_PART else record_key
            first, last = _clip(spend, part)
            row_for(key).add(spend, (part,), first, last)
            total.add(spend, (part,), first, last)
    # Days, weeks and months read in time order (their keys sort as dates); the rest costliest first.
    ordered = sorted(rows.values(), key=(lambda r: r.key) if by in _TIME else (lambda r: (-r.cost, r.key)))
    if budget_for is not None:
        for row in ordered:
            row.budget = budget_for(by, row.key)
    return Rollup(by, ordered, unattributed, total, filters.tz)


def top(roll: Rollup, n: int) -> Rollup:
    """The N costliest rows; the rest folded into one row so the sums still add up."""
    if n <= 0 or len(roll.rows) <= n:
        return roll
    costliest = sorted(roll.rows, key=lambda r: (-r.cost, r.key))
    kept = {id(r) for r in costliest[:n]}
    rest = Row(f"({len(roll.rows) - n} more)")
    for row in costliest[n:]:
        rest.absorb(row)
    # The kept rows stay in the report's order (time order for days, weeks, months).
    return Rollup(roll.by, [r for r in roll.rows if id(r) in kept] + [rest], roll.unattributed, roll.total, roll.tz)


def pct(part: Decimal, whole: Decimal) -> float:
    return float(round(100 * part / whole, 1)) if whole else 0.0
