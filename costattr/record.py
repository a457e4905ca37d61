"""The hook's work: record the spend of this work tree's sessions that no record covers yet.

One transaction in the local store per run:
1. scan this work tree's sessions (cached, incremental) and price them;
2. keep the requests whose keys the store has not covered for this repository;
3. attribute them (`attribution.attribute`): a closed record for HEAD (absorbing the checked-out
   branch's open records made up to the commit), open records for other branches, unattributed
   records for requests with no branch;
4. add PR links (`--pr`, and links already made for a branch reach new sessions on it) and the
   rewrite of an amended commit;
5. insert, mark the keys covered and the absorbed open records absorbed.
Nothing is ever recomputed from the transcripts, so what was recorded stays recorded.
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from costattr import issue_keys
from costattr.attribution import Attribution, CommitPoint, Where, attribute, base_cutoff, merge_parts, moment
from costattr.config import Config
from costattr.errors import CostattrError
from costattr.gitctx import GitContext, is_inside
from costattr.ledger.records import (
    DETACHED,
    AnyRecord,
    LinkRecord,
    Part,
    RewriteRecord,
    SpendRecord,
    bucket_of,
    cap,
    link_id,
    now_iso,
    rewrite_id,
)
from costattr.ledger.store import LocalStore, Transaction, key_hash, set_digest
from costattr.models import PrLink, SessionCost, Tokens, UsageEvent
from costattr.output import plural
from costattr.pipeline import priced_scan

CACHE_NOTICE_PREFIX = "the scan cache was unreadable"


@dataclass
class UploadResult:
    attribution: Attribution = field(default_factory=Attribution)
    point: CommitPoint | None = None
    label: str | None = None  # what the closing record is for: issue key, else branch, else commit
    links: list[LinkRecord] = field(default_factory=list)
    rewrites: list[RewriteRecord] = field(default_factory=list)
    new_prs: list[int] = field(default_factory=list)
    sessions: int = 0
    messages: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    dry_run: bool = False

    @property
    def records(self) -> list[AnyRecord]:
        return [*self.attribution.records, *self.links, *self.rewrites]

    def spend(self, state: str) -> tuple[Decimal, Tokens, int]:
        cost, tokens, unpriced = Decimal(0), Tokens(), 0
        for r in self.attribution.of_state(state):
            cost += r.cost
            tokens.add(r.tokens)
            unpriced += r.unpriced
        return cost, tokens, unpriced

    @property
    def summary(self) -> str:
        """What this commit recorded, CloudClawer's figure shape, labelled; then what went elsewhere.

        `0.0041 (94.5%) on PROJ-7; 0.0100 left open on feature/ENG-9; 0.0002 unattributed; linked PR #101`
        """
        cost, tokens, unpriced = self.spend("closed")
        line = f"{cost:.4f} ({tokens.cache_pct():.1f}%)"
        if unpriced:
            line += f" +{unpriced} unpriced"
        line += f" on {self.label}" if self.label else ""
        opened = self.attribution.of_state("open")
        if opened:
            branches = sorted({r.display_branch or "(detached HEAD)" for r in opened})
            where = branches[0] if len(branches) == 1 else f"{len(branches)} other branches"
            line += f"; {sum((r.cost for r in opened), Decimal(0)):.4f} left open on {where}"
        loose, _t, _u = self.spend("unattributed")
        if self.attribution.of_state("unattributed"):
            line += f"; {loose:.4f} unattributed"
        if self.new_prs:
            line += "; linked " + ", ".join(f"PR #{n}" for n in self.new_prs)
        if self.rewrites:
            line += f"; moved to the rewritten commit {self.rewrites[0].new[:7]}"
        return line


# ---------------------------------------------------------------------------------------------
# Which transcripts are this repository's


def work_tree_filter(git: GitContext):  # type: ignore[no-untyped-def]
    """Whether an event's cwd belongs to this repository: inside one of its work trees, and not
    inside another repository nested in it (a submodule, a vendored clone), whose own hook
    records that spend."""
    roots = tuple(git.worktrees) or (git.workdir,)
    real_roots = tuple(dict.fromkeys(os.path.realpath(r) for r in roots))
    verdicts: dict[str, bool] = {}

    def belongs(cwd: str) -> bool:
        if not cwd:
            return False
        found = verdicts.get(cwd)
        if found is None:
            found = verdicts[cwd] = is_inside(cwd, roots) and not _in_nested_repo(cwd, real_roots)
        return found

    return belongs


def _in_nested_repo(cwd: str, real_roots: tuple[str, ...]) -> bool:
    """A `.git` between `cwd` and the deepest work tree containing it marks another repository.
    A cwd that no longer exists is judged by its path alone (it stays this repository's)."""
    try:
        path = os.path.realpath(cwd)
    except (OSError, ValueError):
        return False
    containing = [r for r in real_roots if path == r or path.startswith(r.rstrip(os.sep) + os.sep)]
    if not containing:
        return False
    root = max(containing, key=len)
    d = path
    while len(d) > len(root):
        try:
            if os.path.lexists(os.path.join(d, ".git")):
                return True
        except (OSError, ValueError):
            return False
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return False


def _scan(git: GitContext, cfg: Config, notices: list[str], *, every_cwd: bool = False):  # type: ignore[no-untyped-def]
    """priced_scan of this work tree (of every transcript with `every_cwd`); a scan cache that
    makes it fail is moved aside and the scan done again from the transcripts alone (the cache is
    an optimisation, never a reason to lose spend). `notices` gets one line per cache moved aside."""
    kwargs = {"cwd_filter": None if every_cwd else work_tree_filter(git), "mode": cfg.pricing.mode,
              "discount": cfg.pricing.discount}
    try:
        result, table = priced_scan(**kwargs)
    except Exception as error:  # noqa: BLE001 - judged below: only a cache failure is handled here
        result, table = _scan_without_cache(error, **kwargs)
        notices.append(_move_cache_aside(error))
    notices.extend(w for w in result.stats.skipped_where if w.startswith(CACHE_NOTICE_PREFIX))
    return result, table


def _scan_without_cache(error: Exception, **kwargs):  # type: ignore[no-untyped-def]
    from costattr.pricing import load_table, price_events
    from costattr.scan import scan

    try:
        result = scan(cwd_filter=kwargs["cwd_filter"], use_cache=False)
    except Exception:  # noqa: BLE001 - not the cache's fault: report the original failure
        raise error from None
    table = load_table()
    price_events(result.events, table, kwargs["mode"], kwargs["discount"])
    return result, table


def _move_cache_aside(error: Exception) -> str:
    from costattr.fsutil import move_aside
    from costattr.logs import log
    from costattr.scan import ScanCache

    path = ScanCache().path
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
    try:
        kept = move_aside(path)
    except OSError:
        return f"{CACHE_NOTICE_PREFIX} ({reason}); scanned without it this time"
    notice = f"{CACHE_NOTICE_PREFIX} ({reason}); moved to {kept} and rebuilt from the transcripts"
    log(notice)
    return notice


@dataclass
class WorkTreeScan:
    """This work tree's priced events by session, and what else the transcripts said about them."""

    by_session: dict[str, list[UsageEvent]]
    price_date: str
    skipped_lines: int
    pr_links: list[PrLink] = field(default_factory=list)
    session_costs: dict[str, SessionCost] = field(default_factory=dict)
    transcript_files: int = 0  # every transcript file found, whatever its cwd
    looked_in: dict[str, list[Path]] = field(default_factory=dict)
    # With `outside=True`: these sessions' requests whose cwd is not in this repository (another
    # repository's spend, recorded there if anywhere), for backfill's summary.
    outside: list[UsageEvent] = field(default_factory=list)


def session_events(git: GitContext, cfg: Config, session: str | None = None,
                   notices: list[str] | None = None, *, outside: bool = False) -> WorkTreeScan:
    """This work tree's priced events by session (only `session`'s, given an id or prefix).
    `outside`: scan every transcript, to tell which of these sessions' requests ran elsewhere
    (a full scan: for backfill, never for the hook)."""
    result, table = _scan(git, cfg, notices if notices is not None else [], every_cwd=outside)
    events = result.events
    elsewhere: list[UsageEvent] = []
    if outside:
        belongs = work_tree_filter(git)
        events = [e for e in result.events if belongs(e.cwd)]
        mine = {e.session_id for e in events}
        elsewhere = [e for e in result.events if e.session_id in mine and not belongs(e.cwd)]
    by_session: dict[str, list[UsageEvent]] = defaultdict(list)
    for ev in events:
        if session is None or ev.session_id == session or ev.session_id.startswith(session):
            by_session[ev.session_id].append(ev)
    costs = {} if cfg.pricing.mode == "calculate" else result.session_costs  # calculate: lines only
    if session is not None and not by_session:
        raise CostattrError(f"no session {session!r} ran in this work tree",
                            hint="`costattr sessions` lists the sessions and their ids")
    return WorkTreeScan(by_session, table.date, result.stats.skipped_lines,
                        [p for p in result.pr_links if p.session_id in by_session],
                        {sid: c for sid, c in costs.items() if sid in by_session},
                        len(result.files), result.looked_in, elsewhere)


def text(value: str | None) -> str | None:
    """`value` as valid UTF-8 text: lone surrogates (undecodable bytes) become U+FFFD."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            raw = value.encode("utf-8", "replace")
        return raw.decode("utf-8", "replace")


def local_store(cfg: Config | None, workdir: Path | None = None) -> LocalStore:
    """This machine's ledger: `[ledger] path` when set (relative to the work tree), else COSTATTR_HOME."""
    configured = cfg.ledger.path if cfg is not None else None
    if not configured:
        return LocalStore()
    path = Path(configured).expanduser()
    if not path.is_absolute() and workdir is not None:
        path = Path(workdir) / path
    if path.suffix == ".json":  # the 0.1 spelling: the v2 store sits next to it, the file is migrated
        path = path.with_suffix(".sqlite")
    return LocalStore(path)


# ---------------------------------------------------------------------------------------------
# The use case


def upload(
    git: GitContext,
    cfg: Config,
    *,
    prs: Iterable[int] = (),
    base: Decimal | None = None,
    session: str | None = None,
    dry_run: bool = False,
    now: str | None = None,
    store: LocalStore | None = None,
) -> UploadResult:
    """Attribute the new requests and write their records (nothing with `dry_run`)."""
    notices: list[str] = []
    scanned = session_events(git, cfg, session, notices=notices)
    by_session, price_date, skipped = scanned.by_session, scanned.price_date, scanned.skipped_lines
    now = now or now_iso()
    point = CommitPoint(text(git.branch), git.head_sha, text(git.head_message), git.head_time, git.detached)
    repo = git.repo_id
    where = Where(repo=cap(text(repo), "repo") or repo, host=text(socket.gethostname()),
                  author=text(git.author_name or git.author_email), recorded_at=now, prices=price_date)
    cutoff = base_cutoff([e for evs in by_session.values() for e in evs], base) if base is not None else None

    def find_issues(branch: str | None, message: str | None) -> tuple[str | None, tuple[str, ...]]:
        refs = issue_keys.extract(branch, message, cfg.issues)
        return refs.primary, refs.related

    out = UploadResult(point=point, skipped_lines=skipped, sessions=len(by_session), dry_run=dry_run,
                       messages=list(dict.fromkeys(notices)))
    store = store or local_store(cfg, git.workdir)
    wanted_prs = sorted(set(prs))

    class _DryRun(Exception):
        pass

    try:
        with store.write() as tx:
            new = new_events(tx, where.repo, by_session, git)
            opened = tx.open_on(where.repo, point.current) if point.sha is not None else []
            out.attribution = attribute(new, opened, point, find_issues, where, now=now, base_cutoff=cutoff)
            add_residuals(tx, where.repo, scanned, out.attribution)
            out.label = _label(point, out.attribution)
            out.links, out.new_prs = branch_links(tx, where.repo, point, out.attribution.records, wanted_prs, now)
            out.links += pr_link_records(scanned, by_session, git, where.repo, now)
            out.rewrites = rewrite_records(tx, where.repo, [(old, git.head_sha) for old in git.rewritten_from
                                                            if git.head_sha], text(git.branch), text(git.head_message),
                                           find_issues, now)
            tx.insert(out.records)
            for sid, evs in new.items():
                tx.cover(where.repo, sid, [key_hash(e.key) for e in evs])
            tx.absorb(out.attribution.absorbed)
            said = int(tx.meta(f"skipped-lines:{where.repo}") or 0)
            if skipped != said:
                # New unreadable lines (damaged, hostile, or torn mid-write) are said once, with
                # where to look; the same count is not repeated on every commit.
                if skipped > said:
                    out.messages.append(f"{plural(skipped - said, 'unreadable transcript line')} skipped in this "
                                        f"work tree's sessions ({skipped} in all; `costattr doctor` lists them)")
                tx.set_meta(f"skipped-lines:{where.repo}", str(skipped))
            if not scanned.transcript_files and tx.meta(f"hinted-no-transcripts:{where.repo}") is None:
                # Said once per repository: a commit made without any assistant is the common case.
                where_looked = "; ".join(f"{tool}: {', '.join(str(p) for p in roots)}"
                                         for tool, roots in scanned.looked_in.items())
                out.messages.append(f"no assistant transcripts found (looked in {where_looked}); "
                                    "`costattr doctor` says where costattr looks and what to set")
                tx.set_meta(f"hinted-no-transcripts:{where.repo}", now)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    out.messages += store.notices
    if out.attribution.future:
        n = out.attribution.future
        out.messages.append(f"{n} request{'s' if n != 1 else ''} stamped more than 10 minutes in the future "
                            "kept open (a wrong clock or a damaged line); they never close into a commit")
    if not dry_run and cfg.budgets is not None and _has_budgets(cfg):
        taken = set(out.attribution.absorbed)  # counted when they were recorded: not new spend
        out.messages += budget_warnings(store, out.attribution.records, cfg, [r for r in opened if r.id in taken])
    return out


def new_events(tx: Transaction, repo: str, by_session: dict[str, list[UsageEvent]],
                git: GitContext) -> dict[str, list[UsageEvent]]:
    """The events no record covers yet, by session. A v1 watermark (a 0.1 ledger's last view of a
    session) covers what it held, once."""
    legacy = tx.legacy(by_session) if by_session else {}
    out: dict[str, list[UsageEvent]] = {}
    for sid, evs in by_session.items():
        hashes = [key_hash(e.key) for e in evs]
        mark = legacy.get(sid)
        if mark is not None and _legacy_applies(mark, repo, git):
            held = [h for e, h in zip(evs, hashes, strict=True) if moment(e.ts) <= moment(mark[2])]
            tx.cover(repo, sid, held)
            tx.drop_legacy(sid)
        known = tx.digest(repo, sid)
        unique = list(dict.fromkeys(hashes))
        if known is not None and known == (len(unique), set_digest(unique)):
            continue  # exactly the keys already covered: nothing new, no key lookup
        covered = tx.covered(repo, unique)
        fresh = [e for e, h in zip(evs, hashes, strict=True) if h not in covered]
        if fresh:
            out[sid] = fresh
    return out


def _legacy_applies(mark: tuple[str | None, str | None, str], repo: str, git: GitContext) -> bool:
    legacy_repo, cwd, _last = mark
    if legacy_repo is not None:
        return legacy_repo == repo
    return bool(cwd) and is_inside(cwd, git.worktrees or (git.workdir,))


def pr_link_records(scanned: WorkTreeScan, by_session: dict[str, list[UsageEvent]], git: GitContext, repo: str,
                     now: str) -> list[LinkRecord]:
    """Claude Code's `pr-link` records, as `upload --pr` would link them: the session's spend on the
    branch it was on, in this repository only (`prRepository` must name it)."""
    out: list[LinkRecord] = []
    slug = (git.repo_slug or "").lower()
    for pl in scanned.pr_links:
        if pl.number is None or (pl.repository or "").lower() != slug or not slug:
            continue
        branch = pl.branch or _branch_at(by_session.get(pl.session_id, []), pl.timestamp)
        if branch and branch != DETACHED:
            branch = cap(text(branch), "branch") or branch
            out.append(LinkRecord(link_id(repo, pl.session_id, branch, pl.number), pl.session_id, repo, branch,
                                  pl.number, "pr-link", now))
    return out


def _branch_at(events: list[UsageEvent], ts: str | None) -> str | None:
    """The branch the session was on at `ts`: its last request up to then (else its first one)."""
    if not events:
        return None
    ordered = sorted(events, key=lambda e: moment(e.ts))
    before = [e for e in ordered if ts is None or moment(e.ts) <= moment(ts)]
    return (before[-1] if before else ordered[0]).git_branch


RESIDUAL_MODEL = "(within session, not attributable to a line)"


def add_residuals(tx: Transaction, repo: str, scanned: WorkTreeScan, attribution: Attribution) -> None:
    """Claude Code's own cost of a session (`cost-state`) covers calls no line shows (auxiliary
    models): the part of it above the session's priced lines is recorded, as it grows, on the
    session's newest record of this run, authoritative, never spread over the lines."""
    for sid, recorded in scanned.session_costs.items():
        events = scanned.by_session.get(sid, [])
        priced = sum((e.cost for e in events if e.cost is not None), Decimal(0))
        residual = recorded.cost - priced - tx.residual_recorded(repo, sid, RESIDUAL_MODEL)
        mine = [i for i, r in enumerate(attribution.records) if r.session_id == sid]
        if residual <= 0 or not mine:  # below the lines (not every call is in it), or nothing new to carry it
            continue
        i = max(mine, key=lambda i: attribution.records[i].last_ts)
        rec = attribution.records[i]
        extra = Part(bucket_of(rec.last_ts), RESIDUAL_MODEL, 0, 0, Tokens(), residual, residual)
        attribution.records[i] = replace(rec, parts=tuple(merge_parts(rec.parts, [extra])))


def _label(point: CommitPoint, attribution: Attribution) -> str | None:
    closed = attribution.of_state("closed")
    if point.sha is None:
        return None
    if closed and closed[0].issue:
        return closed[0].issue
    if point.branch:
        return point.branch
    return f"commit {point.sha[:7]}"


def branch_links(tx: Transaction, repo: str, point: CommitPoint, new: list[SpendRecord], prs: list[int],
           now: str) -> tuple[list[LinkRecord], list[int]]:
    """Link records: `--pr` links every session's spend on the checked-out branch, now and later;
    a branch already linked links the sessions that newly spend on it."""
    links: list[LinkRecord] = []
    current = point.branch
    new_prs: list[int] = []
    if prs and current is not None:
        known = tx.prs_of(repo, current)
        new_prs = [n for n in prs if n not in known]
        sessions = tx.sessions_on(repo, current) | {r.session_id for r in new if r.branch == current}
        links += [LinkRecord(link_id(repo, sid, current, n), sid, repo, current, n, "upload", now)
                  for sid in sorted(sessions) for n in prs]
    for branch in sorted({r.branch for r in new if r.branch}):
        assert branch is not None
        linked = tx.prs_of(repo, branch)
        if linked:
            sessions = {r.session_id for r in new if r.branch == branch}
            links += [LinkRecord(link_id(repo, sid, branch, n), sid, repo, branch, n, "upload", now)
                      for sid in sorted(sessions) for n in sorted(linked)]
    return list({link.id: link for link in links}.values()), new_prs


def rewrite_records(tx: Transaction, repo: str, pairs: Iterable[tuple[str, str]], branch: str | None,
                    message_of, find_issues, now: str) -> list[RewriteRecord]:  # type: ignore[no-untyped-def]
    """Rewrite records for every session with spend made on `branch` on an old commit (or on an
    earlier rewrite of it). The commit may still be on other branches: their spend stays."""
    out: list[RewriteRecord] = []
    for old, new in pairs:
        if old == new:
            continue
        message = message_of(new) if callable(message_of) else message_of
        issue, related = find_issues(branch, message)
        first = cap((message or "").strip().splitlines()[0], "message") if message else None
        for sid in sorted(tx.closed_on(repo, old, branch)):
            out.append(RewriteRecord(rewrite_id(repo, sid, branch, old, new), sid, repo, branch, old, new, first,
                                     cap(issue, "issue"), tuple(k for k in related if k != issue), now))
    return out


def _has_budgets(cfg: Config) -> bool:
    b = cfg.budgets
    return bool(b.issue or b.branch or b.day is not None or b.week is not None or b.month is not None)


def budget_warnings(store: LocalStore, new: list[SpendRecord], cfg: Config,
                    absorbed: Iterable[SpendRecord] = ()) -> list[str]:
    """One line per issue or branch this upload pushed past its configured budget."""
    from costattr.report.budget import crossed_budgets

    return crossed_budgets(store, new, cfg.budgets, absorbed)
