"""Pricing: the active price table and how events get their cost.

The active table is the one `costattr pricing update` stored under COSTATTR_HOME when it is
valid, else the table embedded in the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Literal

import orjson

from costattr import paths
from costattr.models import UsageEvent
from costattr.pricing.table import EMBEDDED, PriceTable, parse_price_file

CostMode = Literal["auto", "calculate", "display"]
STORED_NAME = "prices.json"


def stored_table_path() -> Path:
    """Where `costattr pricing update` keeps the table it fetched."""
    return paths.costattr_home() / STORED_NAME


def embedded_table() -> PriceTable:
    return PriceTable.from_file(parse_price_file(orjson.loads(EMBEDDED.read_bytes())), "embedded")


def load_table() -> PriceTable:
    """The table in force: a stored update if it is readable and valid, else the embedded one."""
    stored = stored_table_path()
    if stored.is_file():
        try:
            return PriceTable.from_file(parse_price_file(orjson.loads(stored.read_bytes())), str(stored))
        except (ValueError, OSError):
            pass  # a damaged update never stands in for a good table
    return embedded_table()


def recorded_cost(ev: UsageEvent) -> Decimal | None:
    """The cost the tool wrote itself (old Claude Code `costUSD`), if it is a usable amount."""
    if ev.recorded_cost is None:
        return None
    try:
        value = Decimal(ev.recorded_cost)
    except ArithmeticError:
        return None  # a garbled figure is no authority: the tokens still price the request
    return value if value.is_finite() and value >= 0 else None


def price_events(
    events: Iterable[UsageEvent],
    table: PriceTable,
    mode: CostMode = "auto",
    discount: Decimal = Decimal(0),
) -> None:
    """Set cost and cost_source on each event, in place.

    auto: a cost the tool recorded itself wins (authoritative), else tokens x list price.
    calculate: always tokens x list price. display: only recorded costs; others stay unpriced.
    `discount` (0..1) scales estimated costs for users who compare a negotiated rate; it never
    touches a recorded cost, which is what the provider actually charged.
    """
    if not Decimal(0) <= discount <= Decimal(1):
        raise ValueError(f"discount must be between 0 and 1, not {discount}")
    factor = Decimal(1) - discount
    for ev in events:
        recorded = recorded_cost(ev) if mode in ("auto", "display") else None
        if recorded is not None:
            ev.cost, ev.cost_source = recorded, "authoritative"
        elif mode == "display":
            ev.cost, ev.cost_source = None, "estimated"
        else:
            cost = table.cost(ev.model, ev.tokens, ev.speed)
            ev.cost = cost * factor if cost is not None and discount else cost
            ev.cost_source = "estimated"
