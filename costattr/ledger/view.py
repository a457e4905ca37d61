"""What the records say, once merged: the spend a report shows, and the per-session entry view.

A union of records is all any backend stores; this module reads it:

* open records named in some record's `closes` are hidden (their spend lives on in the record
  that absorbed them);
* a commit rewritten by amend or rebase is shown as its newest rewrite, with that message's
  issue keys (`RewriteRecord`), so the old SHA and its old issue do not linger;
* a spend record belongs to every PR linked to its (repository, session, branch).

`session_entries` builds the CloudClawer entry per session (`session_id, cost_usd, cache_pct,
cost_str, branch, commit, prs, updated_at`, plus costattr's fields and the records themselves), the
shape the memory API file and `costattr export` keep for readers that know it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from costattr.ledger.records import (
    RECORD_VERSION,
    AnyRecord,
    LinkRecord,
    Part,
    RewriteRecord,
    SpendRecord,
    parse_utc,
)
from costattr.models import Tokens, to_json_money

ENTRY_SCHEMA_VERSION = RECORD_VERSION


@dataclass(frozen=True, slots=True)
class Spend:
    """One visible spend record as reports see it: commit and issue keys after rewrites, PRs after links."""

    record: SpendRecord
    commit: str | None
    issue: str | None
    related: tuple[str, ...]
    message: str | None
    prs: tuple[int, ...]

    @property
    def branch(self) -> str | None:
        return self.record.display_branch

    @property
    def parts(self) -> tuple[Part, ...]:
        return self.record.parts

    @property
    def session_id(self) -> str:
        return self.record.session_id


def visible(records: Mapping[str, AnyRecord] | Iterable[AnyRecord]) -> list[Spend]:
    """The spend records a report shows, resolved; in time order (then by id), whatever the backend's."""
    items = list(records.values()) if isinstance(records, Mapping) else list(records)
    absorbed = {i for r in items if isinstance(r, SpendRecord) for i in r.closes}
    rewrites: dict[tuple[str, str | None, str], list[RewriteRecord]] = defaultdict(list)
    links: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for r in items:
        if isinstance(r, RewriteRecord):
            rewrites[(r.repo, r.branch, r.old)].append(r)
        elif isinstance(r, LinkRecord):
            links[(r.repo, r.session_id, r.branch)].add(r.pr)
    out: list[Spend] = []
    for r in items:
        if not isinstance(r, SpendRecord) or r.id in absorbed:
            continue
        commit, issue, related, message = r.commit, r.issue, r.related, r.message
        if commit is not None:
            rewritten = _follow(rewrites, r.repo, r.branch, commit)
            if rewritten is not None:
                commit, issue, related, message = rewritten.new, rewritten.issue, rewritten.related, rewritten.message
        prs = tuple(sorted(links.get((r.repo, r.session_id, r.branch), ()))) if r.branch is not None else ()
        out.append(Spend(r, commit, issue, related, message, prs))
    out.sort(key=lambda s: (s.record.last_ts, s.record.session_id, s.record.id))
    return out


def _follow(rewrites: Mapping[tuple[str, str | None, str], list[RewriteRecord]], repo: str, branch: str | None,
            commit: str) -> RewriteRecord | None:
    """The last rewrite of `commit` on `branch` (amend of an amend, rebase after amend...). Several
    rewrites of one commit (two clones that each amended it) resolve by SHA, the same in every copy."""
    seen = {commit}
    last: RewriteRecord | None = None
    while True:
        nexts = rewrites.get((repo, branch, commit))
        if not nexts:
            return last
        last = min(nexts, key=lambda r: r.new)
        commit = last.new
        if commit in seen:  # a cycle (rewritten back and forth): stop where it closes
            return last
        seen.add(commit)


# ----------------------------------------------------------------------------------------------
# The session entry (CloudClawer shape)


def session_entries(records: Mapping[str, AnyRecord] | Iterable[AnyRecord]) -> dict[str, dict[str, Any]]:
    """One CloudClawer-shaped entry per session, computed from its records; the records ride along
    under `records`, so a reader that merges by union of records loses nothing."""
    items = list(records.values()) if isinstance(records, Mapping) else list(records)
    by_session: dict[str, list[AnyRecord]] = defaultdict(list)
    for r in items:
        by_session[r.session_id].append(r)
    shown = {s.record.id: s for s in visible(items)}
    out: dict[str, dict[str, Any]] = {}
    for sid in sorted(by_session):
        recs = sorted(by_session[sid], key=lambda r: (r.kind, r.id))
        out[sid] = entry_of(sid, recs, [shown[r.id] for r in recs if r.id in shown])
    return out


def entry_of(sid: str, recs: list[AnyRecord], spends: list[Spend]) -> dict[str, Any]:
    tokens = Tokens()
    cost = authoritative = Decimal(0)
    requests = unpriced = 0
    models: list[str] = []
    issues: list[str] = []
    prs: set[int] = set()
    for s in sorted(spends, key=lambda s: parse_utc(s.record.first_ts)):
        for p in s.parts:
            tokens.add(p.tokens)
            cost += p.cost
            authoritative += p.authoritative
            requests += p.requests
            unpriced += p.unpriced
            if p.model not in models:
                models.append(p.model)
        for key in (s.issue, *s.related):
            if key and key not in issues:
                issues.append(key)
        prs.update(s.prs)
    latest = max(spends, key=lambda s: parse_utc(s.record.last_ts), default=None)
    latest_closed = max((s for s in spends if s.commit), key=lambda s: parse_utc(s.record.last_ts), default=None)
    pct = tokens.cache_pct()
    spend_recs = [s.record for s in spends]
    stamps = [r.recorded_at for r in recs if getattr(r, "recorded_at", None)]
    return {
        "session_id": sid,
        "cost_usd": to_json_money(cost),
        "cache_pct": pct,
        "cost_str": f"{cost:.4f} ({pct:.1f}%)",
        "branch": latest.branch if latest else None,
        "commit": latest_closed.commit if latest_closed else None,
        "prs": sorted(prs),
        "updated_at": max((parse_utc(t).timestamp() for t in stamps if t), default=0.0),
        "schema_version": ENTRY_SCHEMA_VERSION,
        "tool": spend_recs[0].tool if spend_recs else None,
        "repo": _display_repo(latest.record.repo) if latest else None,
        "host": latest.record.host if latest else None,
        "author": latest.record.author if latest else None,
        "issues": issues,
        "tokens": tokens.as_dict(),
        "models": models,
        "cost_source": _source(cost, authoritative, unpriced),
        "requests": requests,
        "unpriced_requests": unpriced,
        "first_ts": min((r.first_ts for r in spend_recs), key=parse_utc, default=None),
        "last_ts": max((r.last_ts for r in spend_recs), key=parse_utc, default=None),
        "records": [r.to_json() for r in recs],
    }


def _display_repo(repo: str) -> str:
    return repo.removeprefix("path:")


def _source(cost: Decimal, authoritative: Decimal, unpriced: int) -> str:
    if authoritative == 0:
        return "estimated"
    return "authoritative" if authoritative == cost and not unpriced else "mixed"
