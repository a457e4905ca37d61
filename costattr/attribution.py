"""Attribution: a hook's new requests -> immutable spend records. Pure: no I/O, no clock.

Each request goes by the branch its own line recorded (Claude writes gitBranch per line, Codex per
session), never by what happens to be checked out:

- requests on the checked-out branch made up to the commit's time close into a record for HEAD,
  together with that branch's open records made up to then (which the new record names in
  `closes`, so every copy of the ledger hides them from then on);
- requests on another branch (or made after the commit's time) wait in open records;
- requests with no branch are unattributed, for good;
- with `--base`, the checked-out branch's requests up to the base's cut-off are set aside as
  unattributed "before --base", once.

Only requests no record covers yet reach this module (the store keeps which keys are covered), so
re-running the hook (amend, rebase, a second upload) never counts a request twice, and a deleted or
truncated transcript can never lower a figure already recorded: records are only ever added.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from costattr.ledger.records import (
    BEFORE_BASE,
    DETACHED,
    Part,
    SpendRecord,
    bucket_of,
    canonical_ts,
    cap,
    keys_digest,
    parse_utc,
    spend_id,
)
from costattr.models import Tokens, UsageEvent

# branch, commit message -> (primary issue, related issues)
IssueFinder = Callable[[str | None, str | None], tuple[str | None, Sequence[str]]]

# A line stamped further than this ahead of the hook's clock is "in the future": kept open and
# reported, so it can never close into a commit or pull later spend along (a 2099 line is on record).
FUTURE_TOLERANCE = timedelta(minutes=10)


@dataclass(frozen=True)
class CommitPoint:
    """Where the hook runs: the checked-out branch, HEAD, its message and commit time (UTC ISO)."""

    branch: str | None  # None when detached outside a rebase
    sha: str | None  # None in a repository with no commit yet
    message: str | None = None
    time: str | None = None  # the commit's committer time: requests up to it close into it
    detached: bool = False

    @property
    def current(self) -> str:
        """The branch name requests recorded when they ran on this checkout."""
        return self.branch if self.branch is not None else DETACHED


@dataclass(frozen=True)
class Where:
    """Identity stamped on every record this hook writes."""

    repo: str
    host: str | None = None
    author: str | None = None
    recorded_at: str | None = None
    prices: str | None = None  # the price table's date


@dataclass
class Attribution:
    records: list[SpendRecord] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)  # open records the new closed ones replace
    future: int = 0  # requests stamped in the future, kept open

    def of_state(self, state: str) -> list[SpendRecord]:
        return [r for r in self.records if r.state == state]


@lru_cache(maxsize=65536)
def moment(ts: str) -> datetime:
    return parse_utc(ts)


def attribute(
    events_by_session: dict[str, list[UsageEvent]],
    open_on_current: Iterable[SpendRecord],
    point: CommitPoint,
    find_issues: IssueFinder,
    where: Where,
    *,
    now: str,
    base_cutoff: str | None = None,
) -> Attribution:
    """Records for the new requests, by session; `open_on_current` are this repository's open
    records on the checked-out branch (any session), candidates for closing into HEAD."""
    out = Attribution()
    now_m = moment(now)
    close_until = _close_bound(point)
    base_until = moment(base_cutoff) if base_cutoff is not None else None
    issue_closed, related_closed = find_issues(point.branch, point.message) if point.sha else (None, ())
    message = cap((point.message or "").strip().splitlines()[0], "message") if point.message else None

    # The checked-out branch's open records: set aside when made before the --base cut-off,
    # joined into the closing record when made up to the commit, left open when made after it.
    to_base: dict[str, list[SpendRecord]] = defaultdict(list)
    to_close: dict[str, list[SpendRecord]] = defaultdict(list)
    for rec in open_on_current:
        if rec.branch != point.current:
            continue
        if base_until is not None and moment(rec.last_ts) <= base_until:
            to_base[rec.session_id].append(rec)
        elif close_until is not None and moment(rec.last_ts) <= close_until:
            to_close[rec.session_id].append(rec)

    for sid in sorted(set(events_by_session) | set(to_base) | set(to_close)):
        events = sorted(events_by_session.get(sid, ()), key=lambda e: (moment(e.ts), e.key))
        closing: list[UsageEvent] = []
        opened: dict[tuple[str, bool], list[UsageEvent]] = defaultdict(list)
        loose: dict[str | None, list[UsageEvent]] = defaultdict(list)
        for ev in events:
            branch = cap(ev.git_branch or None, "branch")
            t = moment(ev.ts)
            future = t > now_m + FUTURE_TOLERANCE
            out.future += future
            if branch is None:
                loose[None].append(ev)
            elif branch == point.current and base_until is not None and t <= base_until:
                loose[BEFORE_BASE].append(ev)
            elif branch == point.current and close_until is not None and t <= close_until and not future:
                closing.append(ev)
            else:
                # Kept apart by `future`: a record holding a line from 2099 is never closed, and
                # must not hold today's spend hostage with it.
                opened[(branch, future)].append(ev)
        tool = events[0].tool if events else (to_close.get(sid) or to_base[sid])[0].tool
        if closing or to_close.get(sid):
            out.records.append(spend_record(sid, tool, where, "closed", point.branch, point.sha, issue_closed,
                                       tuple(related_closed), message, None, closing, to_close.get(sid, [])))
        for (branch, _future), evs in sorted(opened.items()):
            issue, related = find_issues(branch, None) if branch != DETACHED else (None, ())
            out.records.append(spend_record(sid, tool, where, "open", branch, None, issue, tuple(related), None, None,
                                       evs, []))
        if to_base.get(sid) and BEFORE_BASE not in loose:
            loose[BEFORE_BASE] = []
        for note, evs in sorted(loose.items(), key=lambda kv: kv[0] or ""):
            olds = to_base.get(sid, []) if note == BEFORE_BASE else []
            out.records.append(spend_record(sid, tool, where, "unattributed", None, None, None, (), None, note, evs,
                                            olds))
    out.absorbed = sorted(i for r in out.records for i in r.closes)
    return out


def _close_bound(point: CommitPoint) -> datetime | None:
    """Requests up to the end of the commit's second close into it (git keeps whole seconds)."""
    if point.sha is None or point.time is None:
        return None
    return moment(point.time) + timedelta(seconds=1) - timedelta(microseconds=1)


def spend_record(
    sid: str, tool: str, where: Where, state: str, branch: str | None, commit: str | None, issue: str | None,
    related: tuple[str, ...], message: str | None, note: str | None, events: list[UsageEvent],
    absorbed: list[SpendRecord], *, backfilled: bool = False,
) -> SpendRecord:
    """One spend record, its id from what it covers (`backfilled` is shown, never part of the id:
    a request is covered once, by the hook or by backfill, so the two never write the same one)."""
    parts = merge_parts([p for r in absorbed for p in r.parts], parts_of(events))
    stamps = [e.ts for e in events] + [t for r in absorbed for t in (r.first_ts, r.last_ts)]
    first, last = canonical_ts(min(stamps, key=moment)), canonical_ts(max(stamps, key=moment))
    covers = keys_digest([e.key for e in events] + [f"record:{r.id}" for r in absorbed])
    cwd = next((e.cwd for e in events if e.cwd), None) or next((r.cwd for r in absorbed if r.cwd), None)
    return SpendRecord(
        id=spend_id(where.repo, sid, state, branch, commit, note, covers), session_id=sid, tool=tool,
        repo=where.repo, state=state, branch=branch, commit=commit,  # type: ignore[arg-type]
        issue=cap(issue, "issue"), related=tuple(k for k in related if k != issue), message=message, note=note,
        first_ts=first, last_ts=last, parts=tuple(parts), closes=tuple(r.id for r in absorbed),
        host=cap(where.host, "host"), author=cap(where.author, "author"), cwd=cap(cwd, "cwd"),
        recorded_at=where.recorded_at, prices=where.prices, backfilled=backfilled,
    )


class _Acc:
    __slots__ = ("requests", "unpriced", "tokens", "cost", "authoritative")

    def __init__(self) -> None:
        self.requests = 0
        self.unpriced = 0
        self.tokens = Tokens()
        self.cost = Decimal(0)
        self.authoritative = Decimal(0)


def parts_of(events: Iterable[UsageEvent]) -> list[Part]:
    """Events folded into parts per (15-minute bucket, model), sorted."""
    return merge_parts(
        Part(bucket_of(ev.ts), cap(ev.model or "(unknown)", "model") or "(unknown)", 1, int(ev.cost is None),
             ev.tokens, ev.cost or Decimal(0), ev.cost if ev.cost is not None and ev.cost_source == "authoritative"
             else Decimal(0))
        for ev in events
    )


def merge_parts(*groups: Iterable[Part]) -> list[Part]:
    """Parts of the same (bucket, model) added together, sorted."""
    acc: dict[tuple[str, str], _Acc] = {}
    for group in groups:
        for p in group:
            a = acc.get((p.bucket, p.model))
            if a is None:
                a = acc[(p.bucket, p.model)] = _Acc()
            a.requests += p.requests
            a.unpriced += p.unpriced
            a.tokens.add(p.tokens)
            a.cost += p.cost
            a.authoritative += p.authoritative
    return [Part(b, m, a.requests, a.unpriced, a.tokens, a.cost, a.authoritative) for (b, m), a in sorted(acc.items())]


def base_cutoff(events: Iterable[UsageEvent], base: Decimal) -> str | None:
    """The timestamp up to which the work tree's spend adds up to `base` (CloudClawer's --base)."""
    running = Decimal(0)
    cutoff: str | None = None
    for ev in sorted(events, key=lambda e: (moment(e.ts), e.key)):
        running += ev.cost or 0
        if running > base:
            break
        cutoff = ev.ts
    return cutoff
