"""Budgets from `[budgets]` in the config: per issue, per branch, per day / week / month."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from costattr.ledger.records import RewriteRecord, SpendRecord
from costattr.ledger.store import LocalStore
from costattr.ledger.view import visible
from costattr.output import fmt_usd


def budget_lookup(budgets: Any) -> Callable[[str, str], Decimal | None]:
    """(grouping, row key) -> the budget that applies, or None."""
    if budgets is None:
        return lambda by, key: None
    issues = {k.upper(): Decimal(str(v)) for k, v in (getattr(budgets, "issue", None) or {}).items()}
    branches = {k: Decimal(str(v)) for k, v in (getattr(budgets, "branch", None) or {}).items()}

    def lookup(by: str, key: str) -> Decimal | None:
        if by == "issue":
            return issues.get(key.upper())
        if by == "branch":
            return branches.get(key)
        if by in ("day", "week", "month"):
            value = getattr(budgets, by, None)
            return Decimal(str(value)) if value is not None else None
        return None

    return lookup


def crossed_budgets(store: LocalStore, new: Iterable[SpendRecord], budgets: Any,
                    absorbed: Iterable[SpendRecord] = ()) -> list[str]:
    """One line per issue or branch whose total went over its budget with these new records.

    `absorbed`: the open records the new closed ones took in. Their spend was counted (and any
    crossing said) when they were recorded, so it is not new here: without them a commit closing a
    branch's open spend would say again what the commit that recorded it said.

    Only the keys the new records touch, and only those with a budget, are looked at: a commit
    never rolls the whole history up.
    """
    lookup = budget_lookup(budgets)
    new, absorbed = list(new), list(absorbed)
    lines: list[str] = []
    for by in ("issue", "branch"):
        for key in sorted({k for r in new if (k := _key(by, r))}):
            budget = lookup(by, key)
            if budget is None:
                continue
            read = store.read_about(**{by: key})
            if by == "issue" and any(isinstance(r, RewriteRecord) and r.issue == key for r in read.records.values()):
                read = store.read()  # an amend moved spend filed under another issue onto this one
            now = sum((s.record.cost for s in visible(read.records)
                       if (s.issue if by == "issue" else s.branch) == key), Decimal(0))
            added = (sum((r.cost for r in new if _key(by, r) == key), Decimal(0))
                     - sum((r.cost for r in absorbed if _key(by, r) == key), Decimal(0)))
            if now > budget >= now - added:
                lines.append(f"budget: {by} {key} is now {fmt_usd(now, precise=True)}, "
                             f"over its {fmt_usd(budget, precise=True)} budget")
    return lines


def _key(by: str, rec: SpendRecord) -> str | None:
    return rec.issue if by == "issue" else rec.display_branch
