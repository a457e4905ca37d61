"""The hook's work: attribute the spend of the sessions that ran in this work tree and upsert
their entries into the ledger, then publish them to the shared backend if one is configured."""

from __future__ import annotations

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
    roots = tuple(git.worktrees) or (git.workdir,)
    return lambda cwd: bool(cwd) and is_inside(cwd, roots)


def session_events(git: GitContext, cfg: Config, session: str | None = None) -> tuple[dict[str, list[UsageEvent]], str, int]:
    """This work tree's priced events by session, the price-table date and skipped-line count."""
    result, table = priced_scan(
        cwd_filter=work_tree_filter(git), mode=cfg.pricing.mode, discount=cfg.pricing.discount
    )
    by_session: dict[str, list[UsageEvent]] = defaultdict(list)
    for ev in result.events:
        if session is None or ev.session_id == session or ev.session_id.startswith(session):
            by_session[ev.session_id].append(ev)
    return by_session, table.date, result.stats.skipped_lines


def upload(
    git: GitContext,
    cfg: Config,
    *,
    prs: Iterable[int] = (),
    base: Decimal | None = None,
    session: str | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> UploadResult:
    by_session, price_date, skipped = session_events(git, cfg, session)
    point = CommitPoint(git.branch, git.head_sha, git.head_message, tuple(sorted(set(prs))))
    meta = EntryMeta(repo=git.repo_slug, host=socket.gethostname(), author=git.author_name or git.author_email,
                     price_table_date=price_date)
    cutoff = base_cutoff([e for evs in by_session.values() for e in evs], base) if base is not None else None

    def find_issues(branch: str | None, message: str | None) -> tuple[str | None, tuple[str, ...]]:
        refs = issue_keys.extract(branch, message, cfg.issues)
        return refs.primary, refs.related

    out = UploadResult(skipped_lines=skipped, sessions=len(by_session))
    ledger = local_ledger()

    def apply(entries: dict[str, LedgerEntry]) -> None:
        for sid, evs in sorted(by_session.items()):
            prev = entries.get(sid)
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
    return out


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
