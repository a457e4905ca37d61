"""Budgets from `[budgets]` in the config: per issue, per branch, per day / week / month."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from costattr.models import LedgerEntry
from costattr.output import fmt_usd
from costattr.report.rollup import rollup


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


def crossed_budgets(before: Iterable[LedgerEntry], after: Iterable[LedgerEntry], budgets: Any) -> list[str]:
    """One line per issue or branch whose total went over its budget with this upload."""
    lookup = budget_lookup(budgets)
    lines: list[str] = []
    for by in ("issue", "branch"):
        was = {r.key: r.cost for r in rollup(before, by).rows}
        for row in rollup(after, by, budget_for=lookup).rows:
            if row.budget is not None and row.cost > row.budget >= was.get(row.key, Decimal(0)):
                lines.append(f"budget: {by} {row.key} is now {fmt_usd(row.cost)}, over its "
                             f"{fmt_usd(row.budget)} budget")
    return lines
