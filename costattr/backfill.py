"""`costattr backfill`: attribute the history already in the transcripts, as the hook would have.

The hook only sees spend from the day it is installed; the transcripts go back months, and every
Claude Code line recorded the branch it ran on (Codex: the session's branch). Backfill takes this
repository's requests that no record covers yet and attributes each by its own branch against git
history: it belongs to the first commit made on that branch after it (committer time, the hook's
"up to the end of the commit's second"). Requests with no later commit stay open on their branch
(the next commit on it closes them, exactly as the hook's own open records); requests with no
branch, or on a branch git no longer knows, are unattributed with the reason as the note.

`attribute_history` is pure; `backfill` does the I/O in one store transaction, through the same
coverage the hook uses, so backfill twice, backfill after the hook or the hook after backfill
never counts a request twice, and nothing the hook recorded is moved (its records are left as
they are: backfill only writes records for keys no record covers).
"""

from __future__ import annotations

import bisect
import socket
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from costattr import issue_keys
from costattr.attribution import (
    FUTURE_TOLERANCE,
    Attribution,
    CommitPoint,
    IssueFinder,
    Where,
    moment,
    spend_record,
)
from costattr.config import Config
from costattr.gitctx import BranchHistory, CommitInfo, GitContext, branch_history
from costattr.ledger.records import DETACHED, LinkRecord, SpendRecord, cap, link_id, now_iso
from costattr.ledger.store import LocalStore, key_hash
from costattr.models import UsageEvent, to_json_money
from costattr.record import (
    add_residuals,
    branch_links,
    local_store,
    new_events,
    pr_link_records,
    session_events,
    text,
)

NO_BRANCH = "no branch recorded"
NOT_IN_HISTORY = "branch not in history"
OUTSIDE = "outside the repo"

# (stage, done, total): "history" once git is read, then "sessions" per session attributed.
Progress = Callable[[str, int, int], None]
# branches -> the pull requests whose head each is (GitHub, with a token; one request per branch)
PullsByHead = Callable[[list[str]], dict[str, list[int]]]


@dataclass
class BackfillResult:
    attribution: Attribution = field(default_factory=Attribution)
    links: list[LinkRecord] = field(default_factory=list)
    sessions: int = 0  # this repository's sessions with requests no record covered
    branches: dict[str, str] = field(default_factory=dict)  # branch -> evidence (live, reflog, merged)
    skipped_lines: int = 0
    # Requests of these sessions that ran outside the repository: never recorded here (they are
    # the spend of wherever they ran), counted so the summary says where the rest went.
    outside: tuple[int, Decimal] = (0, Decimal(0))
    dry_run: bool = False
    messages: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.attribution.records)

    @property
    def cost(self) -> Decimal:
        return sum((r.cost for r in self.attribution.records), Decimal(0))

    def by_issue(self) -> dict[str, tuple[int, Decimal]]:
        """Closed spend per issue key (else per branch, as `report --by issue` labels it)."""
        out: dict[str, tuple[int, Decimal]] = {}
        for r in self.attribution.of_state("closed"):
            key = r.issue or f"({r.display_branch or 'no branch'})"
            n, c = out.get(key, (0, Decimal(0)))
            out[key] = (n + r.requests, c + r.cost)
        return dict(sorted(out.items(), key=lambda kv: (-kv[1][1], kv[0])))

    def left_open(self) -> dict[str, tuple[int, Decimal]]:
        return _totals(self.attribution.of_state("open"), lambda r: r.display_branch or "(detached HEAD)")

    def unattributed(self) -> dict[str, tuple[int, Decimal]]:
        """Per reason; "outside the repo" is the one not recorded in this repository's ledger."""
        out = _totals(self.attribution.of_state("unattributed"), lambda r: r.note or NO_BRANCH)
        if self.outside[0]:
            out[OUTSIDE] = self.outside
        return out

    def to_json(self) -> dict[str, object]:
        def money(rows: Mapping[str, tuple[int, Decimal]]) -> dict[str, dict[str, object]]:
            return {k: {"requests": n, "cost_usd": to_json_money(c)} for k, (n, c) in rows.items()}

        return {"dry_run": self.dry_run, "sessions": self.sessions, "requests": self.requests,
                "cost_usd": to_json_money(self.cost), "by_issue": money(self.by_issue()),
                "open": money(self.left_open()),
                "unattributed": money(self.unattributed()), "links": len(self.links),
                "branches": dict(sorted(self.branches.items())), "skipped_lines": self.skipped_lines}


def _totals(records: Sequence[SpendRecord], key: Callable[[SpendRecord], str]) -> dict[str, tuple[int, Decimal]]:
    out: dict[str, tuple[int, Decimal]] = {}
    for r in records:
        n, c = out.get(key(r), (0, Decimal(0)))
        out[key(r)] = (n + r.requests, c + r.cost)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------
# Pure attribution


def attribute_history(
    events_by_session: Mapping[str, Sequence[UsageEvent]],
    history: Mapping[str, Sequence[CommitInfo]],
    find_issues: IssueFinder,
    where: Where,
    *,
    now: str,
    progress: Progress | None = None,
) -> Attribution:
    """Backfilled records for requests no record covers yet: per session, one closed record per
    commit that absorbed requests, one open record per branch with requests after its last commit
    (or stamped in the future), one unattributed record per reason."""
    out = Attribution()
    now_m = moment(now)
    # Requests up to the end of a commit's second close into it, as in the hook (git keeps seconds).
    bounds = {b: [moment(c.time) + timedelta(seconds=1) - timedelta(microseconds=1) for c in cs]
              for b, cs in history.items()}
    by_sha = {c.sha: c for cs in history.values() for c in cs}
    total = len(events_by_session)
    for n, sid in enumerate(sorted(events_by_session), 1):
        events = sorted(events_by_session[sid], key=lambda e: (moment(e.ts), e.key))
        closing: dict[tuple[str, str], list[UsageEvent]] = defaultdict(list)
        opened: dict[str, list[UsageEvent]] = defaultdict(list)
        loose: dict[str, list[UsageEvent]] = defaultdict(list)
        for ev in events:
            branch = cap(ev.git_branch or None, "branch")
            t = moment(ev.ts)
            if branch is None:
                loose[NO_BRANCH].append(ev)
            elif t > now_m + FUTURE_TOLERANCE:
                out.future += 1
                opened[branch].append(ev)  # never closes into a commit, as with the hook
            elif branch == DETACHED:
                opened[branch].append(ev)  # which detached commit is unknowable; a detached hook closes it
            elif branch not in history:
                loose[NOT_IN_HISTORY].append(ev)
            else:
                i = bisect.bisect_left(bounds[branch], t)
                if i < len(bounds[branch]):
                    closing[(branch, history[branch][i].sha)].append(ev)
                else:
                    opened[branch].append(ev)
        tool = events[0].tool
        for (branch, sha), evs in sorted(closing.items()):
            message = by_sha[sha].message
            issue, related = find_issues(branch, message)
            first = cap(message.strip().splitlines()[0], "message") if message.strip() else None
            out.records.append(spend_record(sid, tool, where, "closed", branch, sha, issue, tuple(related), first,
                                            None, evs, [], backfilled=True))
        for branch, evs in sorted(opened.items()):
            issue, related = find_issues(branch, None) if branch != DETACHED else (None, ())
            out.records.append(spend_record(sid, tool, where, "open", branch, None, issue, tuple(related), None, None,
                                            evs, [], backfilled=True))
        for note, evs in sorted(loose.items()):
            out.records.append(spend_record(sid, tool, where, "unattributed", None, None, None, (), None, note, evs,
                                            [], backfilled=True))
        if progress is not None:
            progress("sessions", n, total)
    return out


def head_links(records: Sequence[SpendRecord], pulls: Mapping[str, Sequence[int]], repo: str,
               now: str) -> list[LinkRecord]:
    """Link records for the pull requests whose head is a branch the new records spent on: every
    session with spend on the branch, as `upload --pr` links them (same ids)."""
    sessions: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.branch and r.branch != DETACHED and r.state != "unattributed":
            sessions[r.branch].add(r.session_id)
    return [LinkRecord(link_id(repo, sid, branch, n), sid, repo, branch, n, "backfill", now)
            for branch in sorted(sessions) for n in pulls.get(branch, ()) for sid in sorted(sessions[branch])]


def since_filter(events_by_session: Mapping[str, Sequence[UsageEvent]],
                 since: date | None) -> dict[str, list[UsageEvent]]:
    """Only the requests made on or after `since` (UTC day): earlier ones stay uncovered."""
    out: dict[str, list[UsageEvent]] = {}
    for sid, evs in events_by_session.items():
        kept = [e for e in evs if since is None or moment(e.ts).date() >= since]
        if kept:
            out[sid] = kept
    return out


# ---------------------------------------------------------------------------------------------
# The use case


def backfill(git: GitContext, cfg: Config, *, since: date | None = None, dry_run: bool = False,
             now: str | None = None, store: LocalStore | None = None, progress: Progress | None = None,
             history: BranchHistory | None = None, pulls_by_head: PullsByHead | None = None) -> BackfillResult:
    """Attribute and write (nothing with `dry_run`) the requests no record covers yet.
    `pulls_by_head`, when given, is asked once for the branches the new requests ran on."""
    notices: list[str] = []
    scanned = session_events(git, cfg, notices=notices, outside=True)
    history = history or branch_history(git.workdir)
    if progress is not None:
        progress("history", sum(len(c) for c in history.commits.values()), 0)
    now = now or now_iso()
    where = Where(repo=cap(text(git.repo_id), "repo") or git.repo_id, host=text(socket.gethostname()),
                  author=text(git.author_name or git.author_email), recorded_at=now, prices=scanned.price_date)

    def find_issues(branch: str | None, message: str | None) -> tuple[str | None, tuple[str, ...]]:
        refs = issue_keys.extract(branch, message, cfg.issues)
        return refs.primary, refs.related

    out = BackfillResult(skipped_lines=scanned.skipped_lines, dry_run=dry_run, messages=notices,
                         branches=dict(history.evidence))

    store = store or local_store(cfg, git.workdir)
    wanted = since_filter(scanned.by_session, since)

    class _DryRun(Exception):
        """Rolls the transaction back: even a 0.1 watermark's coverage is not written."""

    pulls: dict[str, list[int]] = {}
    if pulls_by_head is not None:
        # Asked between two transactions: the network must never hold the ledger's lock (a hook
        # waits for it at most 1.5 s).
        try:
            with store.write() as tx:
                pending = new_events(tx, where.repo, wanted, git)
                raise _DryRun
        except _DryRun:
            pass
        branches = sorted({e.git_branch for evs in pending.values() for e in evs
                           if e.git_branch and e.git_branch != DETACHED})
        pulls = pulls_by_head(branches) if branches else {}

    try:
        with store.write() as tx:
            new = new_events(tx, where.repo, wanted, git)
            out.sessions = len(new)
            # Said for the sessions backfilled now: a second run has nothing new to say about them.
            away = [e for evs in since_filter({"": scanned.outside}, since).values() for e in evs
                    if e.session_id in new]
            out.outside = (len(away), sum((e.cost or Decimal(0) for e in away), Decimal(0)))
            out.attribution = attribute_history(new, history.commits, find_issues, where, now=now, progress=progress)
            add_residuals(tx, where.repo, scanned, out.attribution)
            # No checkout to link with --pr: branches already linked reach the new sessions on them.
            out.links, _ = branch_links(tx, where.repo, CommitPoint(None, None), out.attribution.records, [], now)
            out.links += pr_link_records(scanned, scanned.by_session, git, where.repo, now)
            out.links += head_links(out.attribution.records, pulls, where.repo, now)
            tx.insert(out.attribution.records)
            # Only the links the ledger lacked: a pr-link is seen again on every run.
            out.links = [link for link in {link.id: link for link in out.links}.values() if tx.insert([link])]
            for sid, evs in new.items():
                tx.cover(where.repo, sid, [key_hash(e.key) for e in evs])
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    out.messages += store.notices
    if out.attribution.future:
        out.messages.append(f"{out.attribution.future} request(s) stamped more than 10 minutes in the future kept "
                            "open (a wrong clock or a damaged line); they never close into a commit")
    return out
