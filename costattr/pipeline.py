"""transcripts -> sources -> events -> pricing: the first half of the pipeline, in one call."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, tzinfo
from decimal import Decimal

from costattr.models import UsageEvent, local_day
from costattr.pricing import CostMode, load_table, price_events
from costattr.pricing.table import PriceTable
from costattr.scan import ProgressFn, ScanResult, scan


def priced_scan(
    tools: Iterable[str] | None = None,
    *,
    cwd_filter: Callable[[str], bool] | None = None,
    mode: CostMode = "auto",
    discount: Decimal = Decimal(0),
    progress: ProgressFn | None = None,
    use_cache: bool = True,
) -> tuple[ScanResult, PriceTable]:
    result = scan(tools, cwd_filter=cwd_filter, progress=progress, use_cache=use_cache)
    table = load_table()
    price_events(result.events, table, mode, discount)
    return result, table


def in_range(events: Iterable[UsageEvent], since: date | None, until: date | None,
             tz: tzinfo | None) -> list[UsageEvent]:
    if since is None and until is None:
        return list(events)
    out = []
    for ev in events:
        day = local_day(ev.ts, tz)
        if (since is None or day >= since) and (until is None or day <= until):
            out.append(ev)
    return out
