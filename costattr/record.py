"""The hook's work: attribute the spend of the sessions that ran in this work tree and upsert
their entries into the ledger, then publish them to the shared backend if one is configured."""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from costattr import issue_keys
from costattr.attribution import CommitPoint, EntryMeta, attribute_session, base_cutoff, same_figures
from costattr.config import Config
from costattr.gitctx import GitContext, is_inside
from costattr.ledger import local_ledger
from costattr.models import LedgerEntry, Tokens, UsageEvent, money
from costattr.pipeline import priced_scan

CACHE_NOTICE_PREFIX = "the scan cache was unreadable"


@dataclass
class UploadResult:
    new_cost: Decimal = Decimal(0)
    new_tokens: Tokens = field(default_factory=Tokens)
    sessions: int = 0
    changed: list[LedgerEntry] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    skipped_lines: int = 0

    @property
    def summary(self) -> str:
        """CloudClawer's one-line summary: new cost and the cache hit rate of the new tokens."""
        return f"{self.new_cost:.4f} ({self.new_tokens.cache_pct():.1f}%)"


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


def _scan(git: GitContext, cfg: Config, notices: list[str]):  # type: ignore[no-untyped-def]
    """priced_scan of this work tree; a scan cache that makes it fail is moved aside and the
    scan done again from the transcripts alone (the cache is an optimisation, never a reason
    to lose spend). `notices` gets one line per cache that was moved aside."""
    kwargs = {"cwd_filter": work_tree_filter(git), "mode": cfg.pricing.mode, "discount": cfg.pricing.discount}
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


def session_events(git: GitContext, cfg: Config, session: str | None = None,
                   notices: list[str] | None = None) -> tuple[dict[str, list[UsageEvent]], str, int]:
    """This work tree's priced events by session, the price-table date and skipped-line count."""
    result, table = _scan(git, cfg, notices if notices is not None else [])
    by_session: dict[str, list[UsageEvent]] = defaultdict(list)
    for ev in result.events:
        if session is None or ev.session_id == session or ev.session_id.startswith(session):
            by_session[ev.session_id].append(ev)
    return by_session, table.date, result.stats.skipped_lines


def _text(value: str | None) -> str | None:
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


def is_stale(prev: LedgerEntry | None, events: list[UsageEvent]) -> bool:
    """Whether the ledger already holds a later view of this session than `events` (a hook that
    scanned before another one that wrote first). Transcripts only grow, so the later view wins:
    overwriting it would drop spend and the watermarks of segments closed meanwhile."""
    if prev is None or not events:
        return False
    last = max(ev.ts for ev in events)
    prev_last = prev.last_ts or ""
    return prev_last > last or (prev_last == last and prev.requests > len(events))


def upload(
    git: GitContext,
    cfg: Config,
    *,
    prs: Iterable[int] = (),
    base: Decimal | None = None,
    session: str | None = None,
    dry_run: bool = False,
    now: float | None = None,
    shared: bool = False,
) -> UploadResult:
    """Attribute and upsert. With `shared` (a shared backend is configured) the changed sessions
    are marked pending publication before the ledger is written (see `mark_pending`)."""
    notices: list[str] = []
    by_session, price_date, skipped = session_events(git, cfg, session, notices=notices)
    # Git names are bytes: a branch that is not UTF-8 reaches us with lone surrogates, which no JSON
    # ledger can store. The assistant records such a branch with U+FFFD; so do we, to match it.
    point = CommitPoint(_text(git.branch), git.head_sha, _text(git.head_message), tuple(sorted(set(prs))))
    meta = EntryMeta(repo=_text(git.repo_slug), host=_text(socket.gethostname()),
                     author=_text(git.author_name or git.author_email), price_table_date=price_date)
    cutoff = base_cutoff([e for evs in by_session.values() for e in evs], base) if base is not None else None

    def find_issues(branch: str | None, message: str | None) -> tuple[str | None, tuple[str, ...]]:
        refs = issue_keys.extract(branch, message, cfg.issues)
        return refs.primary, refs.related

    out = UploadResult(skipped_lines=skipped, sessions=len(by_session), messages=list(dict.fromkeys(notices)))
    ledger = local_ledger()

    def apply(entries: dict[str, LedgerEntry]) -> None:
        for sid, evs in sorted(by_session.items()):
            prev = entries.get(sid)
            if is_stale(prev, evs):
                continue
            new = attribute_session(evs, prev, point, find_issues, meta, base_usd=base, base_until_ts=cutoff, now=now)
            if new is None or same_figures(prev, new):
                continue
            out.new_cost += money(new.cost_usd) - (money(prev.cost_usd) if prev else 0)
            out.new_tokens.add(_token_delta(prev, new))
            out.changed.append(new)
            entries[sid] = new

    if dry_run:
        apply(dict(ledger.read()))
        return out
    with ledger.transaction() as entries:
        before = dict(entries)
        apply(entries)
        out.messages += budget_warnings(before, entries, cfg)
        if shared and out.changed:
            mark_pending(out.changed, entries.values(), out.messages)  # durable before the ledger write below
    return out


# ---------------------------------------------------------------------------------------------
# Publication to the shared backend, crash-safe
#
# The local ledger is the hook's watermark: once an entry is written there, the next upload sees
# no change and would never publish it again. So the sessions a hook changes are first marked
# pending ({session: updated_at of the entry to publish}), durably and under the ledger lock,
# then the ledger is written, then they are published (or queued in the outbox), then unmarked.
# A hook killed anywhere in between leaves them marked, and the next hook publishes them.

PENDING_NAME = "publish-pending.json"


def pending_path():  # type: ignore[no-untyped-def]
    from costattr import paths

    return paths.costattr_home() / PENDING_NAME


def _read_pending(notices: list[str] | None = None) -> dict[str, float] | None:
    """The marked sessions; None when the marker was unreadable (moved aside: publish everything)."""
    import orjson

    from costattr.fsutil import move_aside

    path = pending_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        doc = orjson.loads(raw)
        marks = doc["pending"]
        if not isinstance(marks, dict) or not all(isinstance(v, (int, float)) for v in marks.values()):
            raise ValueError("not a {session: updated_at} object")
        return {str(k): float(v) for k, v in marks.items()}
    except (ValueError, KeyError, TypeError) as e:
        try:
            kept = move_aside(path)
        except FileNotFoundError:
            return {}
        if notices is not None:
            notices.append(f"the publish marker {path} was unreadable ({' '.join(str(e).split())[:120]}); kept as "
                           f"{kept}; every local entry is published again (the shared ledger keeps the newest)")
        return None


def _write_pending(marks: dict[str, float]) -> None:
    import orjson

    from costattr.fsutil import atomic_write_bytes

    atomic_write_bytes(pending_path(), orjson.dumps({"schema_version": 1, "pending": marks}))


def mark_pending(changed: Iterable[LedgerEntry], every: Iterable[LedgerEntry], notices: list[str]) -> None:
    """Call under the ledger lock, before the ledger write. An unreadable marker (moved aside)
    marks every entry: what it held is unknown, and publishing twice is harmless."""
    marks = _read_pending(notices)
    if marks is None:
        marks = {e.session_id: e.updated_at for e in every}
    for e in changed:
        marks[e.session_id] = e.updated_at
    _write_pending(marks)


def pending_entries(exclude: Iterable[str] = (), notices: list[str] | None = None) -> list[LedgerEntry]:
    """Entries marked pending by an earlier hook that did not get to publish them."""
    if not pending_path().exists():
        return []
    ledger = local_ledger()
    with ledger.locked():
        marks = _read_pending(notices)
    if marks == {}:
        return []
    skip = set(exclude)
    entries = ledger.read()
    wanted = entries.keys() if marks is None else marks.keys()
    return [entries[sid] for sid in sorted(wanted) if sid in entries and sid not in skip]


def clear_pending(published: Iterable[LedgerEntry]) -> None:
    """Unmark what was handed over, unless a newer hook marked a newer entry meanwhile."""
    published = list(published)
    if not published or not pending_path().exists():
        return
    with local_ledger().locked():
        marks = _read_pending() or {}
        for e in published:
            if marks.get(e.session_id, e.updated_at) <= e.updated_at:
                marks.pop(e.session_id, None)
        if marks:
            _write_pending(marks)
        else:
            try:
                pending_path().unlink()
            except FileNotFoundError:
                pass


def _token_delta(prev: LedgerEntry | None, new: LedgerEntry) -> Tokens:
    now_t = Tokens.from_dict(new.tokens.model_dump())
    if prev is None:
        return now_t
    was = Tokens.from_dict(prev.tokens.model_dump())
    return Tokens(*(max(0, a - b) for a, b in zip(now_t.as_dict().values(), was.as_dict().values(), strict=True)))


def budget_warnings(before: dict[str, LedgerEntry], after: dict[str, LedgerEntry], cfg: Config) -> list[str]:
    """One line per issue or branch this upload pushed past its configured budget."""
    from costattr.report.budget import crossed_budgets

    return crossed_budgets(before.values(), after.values(), cfg.budgets)
