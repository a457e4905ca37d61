"""Attribution: a session's events -> segments (session x branch x commit). Pure.

Each event goes by the branch it recorded itself (Claude writes gitBranch per line, Codex per
session), never by what is checked out when the hook runs:

- a branch's closed segments keep every event up to their watermark (`until_ts`);
- newer events on the checked-out branch close into a segment for HEAD;
- newer events on another branch wait in that branch's open segment until a commit there;
- events with no branch are kept as unattributed spend.

The previous entry's closed segments are the only state, so recomputing from the same events
gives the same entry: re-running the hook on amend, rebase or cherry-pick changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from costattr.models import (
    LedgerEntry,
    ModelUsage,
    Segment,
    Tokens,
    TokensModel,
    UsageEvent,
    money,
    to_json_money,
)
from costattr.sessions import Spend

DETACHED = "HEAD"  # what Claude Code records as gitBranch on a detached HEAD

# branch, commit message -> (primary issue, related issues)
IssueFinder = Callable[[str | None, str | None], tuple[str | None, Sequence[str]]]


@dataclass(frozen=True)
class CommitPoint:
    """Where the hook runs: the checked-out branch (None when detached) and HEAD."""

    branch: str | None
    sha: str | None
    message: str | None = None
    prs: tuple[int, ...] = ()


@dataclass(frozen=True)
class EntryMeta:
    repo: str | None = None
    host: str | None = None
    author: str | None = None
    price_table_date: str | None = None


@dataclass
class _Bucket:
    segment: Segment
    spend: Spend = field(default_factory=Spend)
    models: dict[str, Spend] = field(default_factory=dict)
    first_ts: str | None = None
    last_ts: str | None = None

    def add(self, ev: UsageEvent) -> None:
        self.spend.add_event(ev)
        self.models.setdefault(ev.model or "(unknown)", Spend()).add_event(ev)
        self.first_ts = ev.ts if self.first_ts is None else min(self.first_ts, ev.ts)
        self.last_ts = ev.ts if self.last_ts is None else max(self.last_ts, ev.ts)


def event_branch(ev: UsageEvent) -> str | None:
    return ev.git_branch or None


def attribute_session(
    events: Iterable[UsageEvent],
    previous: LedgerEntry | None,
    point: CommitPoint,
    find_issues: IssueFinder,
    meta: EntryMeta,
    *,
    base_usd: Decimal | None = None,
    base_until_ts: str | None = None,
    now: float | None = None,
) -> LedgerEntry | None:
    """The session's new cumulative entry (None when it has no events)."""
    evs = sorted(events, key=lambda e: (e.ts, e.key))
    if not evs:
        return None
    if previous is not None and previous.base_until_ts:
        base_until_ts, base_usd = previous.base_until_ts, money(previous.base_usd or 0)

    closed: dict[str | None, list[_Bucket]] = {}
    for seg in previous.segments if previous else []:
        if seg.commit is not None and seg.until_ts is not None:
            closed.setdefault(seg.branch, []).append(_Bucket(_fresh_copy(seg)))
    for buckets in closed.values():
        buckets.sort(key=lambda b: b.segment.until_ts or "")

    current = point.branch if point.branch is not None else DETACHED
    closing: _Bucket | None = None
    open_: dict[str | None, _Bucket] = {}
    for ev in evs:
        branch = event_branch(ev)
        if base_until_ts is not None and ev.ts <= base_until_ts:
            bucket = open_.get("\0base") or open_.setdefault("\0base", _Bucket(Segment(note="before --base")))
        elif branch is None:
            bucket = open_.get(None) or open_.setdefault(None, _open_bucket(None, find_issues))
        elif (hit := _closed_for(closed.get(_stored_branch(branch)), ev.ts)) is not None:
            bucket = hit
        elif branch is not None and branch == current and point.sha is not None:
            closing = closing or _closing_bucket(closed, point, find_issues)
            bucket = closing
        else:
            bucket = open_.get(branch) or open_.setdefault(branch, _open_bucket(branch, find_issues))
        bucket.add(ev)
    if closing is not None:
        closing.segment.until_ts = max(closing.segment.until_ts or "", closing.last_ts or "")

    buckets = [b for bs in closed.values() for b in bs] + list(open_.values())
    segments = [_finish(b) for b in buckets if b.spend.requests]
    segments.sort(key=lambda s: (s.first_ts or "", s.branch or "", s.commit or ""))
    return _entry(evs, segments, previous, point, meta, base_usd, base_until_ts, now)


def _stored_branch(branch: str | None) -> str | None:
    """Detached-HEAD spend is stored with no branch name, only its commit."""
    return None if branch == DETACHED else branch


def _fresh_copy(seg: Segment) -> Segment:
    """A closed segment's identity and watermark, its figures cleared to be recomputed."""
    return Segment(
        branch=seg.branch, commit=seg.commit, issue=seg.issue, related_issues=list(seg.related_issues),
        prs=list(seg.prs), commit_message=seg.commit_message, until_ts=seg.until_ts, note=seg.note,
    )


def _closed_for(buckets: list[_Bucket] | None, ts: str) -> _Bucket | None:
    for b in buckets or ():
        if ts <= (b.segment.until_ts or ""):
            return b
    return None


def _closing_bucket(closed: dict[str | None, list[_Bucket]], point: CommitPoint, find_issues: IssueFinder) -> _Bucket:
    branch = point.branch  # None when detached: the commit is known, the branch is not
    for b in closed.get(branch, []):
        if b.segment.commit == point.sha:  # the hook ran again on the same commit
            b.segment.prs = sorted(set(b.segment.prs) | set(point.prs))
            return b
    issue, related = find_issues(branch, point.message)
    bucket = _Bucket(Segment(
        branch=branch, commit=point.sha, issue=issue, related_issues=list(related), prs=list(point.prs),
        commit_message=(point.message or "").strip().splitlines()[0][:200] if point.message else None,
    ))
    closed.setdefault(branch, []).append(bucket)
    return bucket


def _open_bucket(branch: str | None, find_issues: IssueFinder) -> _Bucket:
    stored = _stored_branch(branch)
    issue, related = find_issues(stored, None) if stored else (None, ())
    return _Bucket(Segment(branch=stored, issue=issue, related_issues=list(related)))


def _tokens_model(t: Tokens) -> TokensModel:
    return TokensModel(**t.as_dict())


def _finish(b: _Bucket) -> Segment:
    seg = b.segment
    seg.tokens = _tokens_model(b.spend.tokens)
    seg.cost_usd = to_json_money(b.spend.cost)
    seg.authoritative_usd = to_json_money(b.spend.authoritative)
    seg.requests = b.spend.requests
    seg.unpriced_requests = b.spend.unpriced_requests
    seg.first_ts, seg.last_ts = b.first_ts, b.last_ts
    seg.models = {
        name: ModelUsage(requests=s.requests, cost_usd=to_json_money(s.cost), unpriced_requests=s.unpriced_requests,
                         tokens=_tokens_model(s.tokens))
        for name, s in sorted(b.models.items())
    }
    return seg


def _entry(
    evs: list[UsageEvent],
    segments: list[Segment],
    previous: LedgerEntry | None,
    point: CommitPoint,
    meta: EntryMeta,
    base_usd: Decimal | None,
    base_until_ts: str | None,
    now: float | None,
) -> LedgerEntry:
    total = Spend()
    models: list[str] = []
    for ev in evs:
        total.add_event(ev)
        if ev.model and ev.model not in models:
            models.append(ev.model)
    issues: list[str] = []
    for seg in segments:
        for key in [seg.issue, *seg.related_issues]:
            if key and key not in issues:
                issues.append(key)
    on_current = point.branch is not None and any(s.branch == point.branch for s in segments)
    # `upload --pr N` speaks of the checked-out branch: a session that never worked on it is not linked.
    prs = sorted(set(previous.prs if previous else []) | (set(point.prs) if on_current else set()))
    latest_closed = max((s for s in segments if s.commit), key=lambda s: s.until_ts or "", default=None)
    pct = total.tokens.cache_pct()
    cost = to_json_money(total.cost)
    return LedgerEntry(
        session_id=evs[0].session_id,
        cost_usd=cost,
        cache_pct=pct,
        cost_str=f"{total.cost:.4f} ({pct:.1f}%)",
        branch=point.branch if on_current else event_branch(evs[-1]),
        commit=latest_closed.commit if latest_closed else None,
        prs=prs,
        updated_at=round(now if now is not None else time.time(), 3),
        tool=evs[0].tool,
        repo=meta.repo,
        host=meta.host,
        author=meta.author,
        cwd=evs[0].cwd,
        issues=issues,
        tokens=_tokens_model(total.tokens),
        models=models,
        segments=segments,
        base_usd=to_json_money(base_usd) if base_usd is not None and base_until_ts else None,
        base_until_ts=base_until_ts,
        cost_source=_source(total),
        unpriced_requests=total.unpriced_requests,
        requests=total.requests,
        first_ts=evs[0].ts,
        last_ts=evs[-1].ts,
        price_table_date=meta.price_table_date,
    )


def _source(spend: Spend) -> str:
    if spend.authoritative == 0:
        return "estimated"
    return "authoritative" if spend.authoritative == spend.cost and not spend.unpriced_requests else "mixed"


def base_cutoff(events: Iterable[UsageEvent], base: Decimal) -> str | None:
    """The timestamp up to which the work tree's spend adds up to `base` (CloudClawer's --base).

    Spend before it is kept, as unattributed "before --base", rather than charged to the branch.
    """
    running = Decimal(0)
    cutoff: str | None = None
    for ev in sorted(events, key=lambda e: (e.ts, e.key)):
        running += ev.cost or 0
        if running > base:
            break
        cutoff = ev.ts
    return cutoff


def same_figures(a: LedgerEntry | None, b: LedgerEntry) -> bool:
    """Whether an upload would change anything a report shows (updated_at aside)."""
    if a is None:
        return False
    skip = {"updated_at"}
    return a.model_dump(exclude=skip) == b.model_dump(exclude=skip)
