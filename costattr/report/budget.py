"""Budgets from `[budgets]` in the config: per issue, per branch, per day / week / month."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from costattr.ledger.records import SpendRecord
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


def crossed_budgets(store: LocalStore, new: Iterable[SpendRecord], budgets: Any) -> list[str]:
    """One line per issue or branch whose total went over its budget with these new records.

    Only the keys the new records touch, and only those with a budget, are looked at: a commit
    never rolls the whole history up.
    """
    lookup = budget_lookup(budgets)
    new = list(new)
    lines: list[str] = []
    for by in ("issue", "branch"):
        keys = {(r.issue if by == "issue" else r.display_branch) for r in new}
        for key in sorted(k for k in keys if k):
            budget = lookup(by, key)
            if budget is None:
                continue
            read = store.read_about(**{by: key})
            now = sum((s.record.cost for s in visible(read.records)
                       if (s.issue if by == "issue" else s.branch) == key), Decimal(0))
            added = sum((r.cost for r in new if (r.issue if by == "issue" else r.display_branch) == key), Decimal(0))
            if now > budget >= now - added:
                lines.append(f"budget: {by} {key} is now {fmt_usd(now)}, over its {fmt_usd(budget)} budget")
    return lines
