"""`costattr sessions`: one row per session, straight from the transcripts (no ledger needed)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from costattr.cli import verbose
from costattr.commands.options import date_range
from costattr.models import ScanStats, SessionCost, UsageEvent, to_json_money
from costattr.output import TABLE_WIDTH, console, echo_json, fmt_tokens, fmt_usd, note, progress_bar, unpriced_note
from costattr.pipeline import in_range, priced_scan
from costattr.sessions import SessionSummary, Spend, Totals, summarize, totals
from costattr.sources import SOURCES


@click.command("sessions")
@date_range
@click.option("--tool", type=click.Choice(sorted(SOURCES)), multiple=True, help="Only this assistant (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--cost-mode", type=click.Choice(["auto", "calculate", "display"]), default="auto", show_default=True,
              help="auto: a cost the tool recorded wins (costUSD per line, Claude Code's cost-state per "
                   "session); calculate: always tokens x list price.")
@click.pass_context
def command(ctx: click.Context, since: date | None, until: date | None, tz: tzinfo | None, tool: tuple[str, ...],
            fmt: str, cost_mode: str) -> None:
    """Every session with its tokens, cache hit rate and exact cost, newest first.

    \b
    Example:
      costattr sessions --since 2026-11-01
      costattr sessions --tool codex --format json | jq '.totals'
    """
    with progress_bar("scanning transcripts") as bar:
        result, table = priced_scan(tool or None, mode=cost_mode, progress=bar)  # type: ignore[arg-type]
    events = in_range(result.events, since, until, tz)
    recorded = {} if cost_mode == "calculate" else whole_sessions(result.session_costs, result.events, events)
    sessions = summarize(events, recorded)
    total = totals(sessions)
    if fmt == "json":
        echo_json(_as_json(sessions, total, result.stats))
    else:
        _print_table(sessions, total, table.date)
    _notes(result.stats, result.looked_in, bool(result.files), verbose(ctx), total)


def whole_sessions(costs: dict[str, SessionCost], scanned: list[UsageEvent], kept: list[UsageEvent]
                   ) -> dict[str, SessionCost]:
    """The recorded totals of sessions every event of which is in view: a session cut by
    --since/--until has no recorded total for the part shown (cost-state is not per line)."""
    if len(kept) == len(scanned):
        return costs
    shown = Counter(ev.session_id for ev in kept)
    whole = Counter(ev.session_id for ev in scanned)
    return {sid: c for sid, c in costs.items() if shown[sid] and shown[sid] == whole[sid]}


def _as_json(sessions: list[SessionSummary], total: Totals, stats: ScanStats) -> dict[str, Any]:
    return {
        "sessions": [s.as_json() for s in sessions],
        "totals": {
            "tokens": total.tokens.as_dict(),
            "cost_usd": to_json_money(total.cost),
            "sessions": len(sessions),
            "requests": total.requests,
            "unpriced_requests": total.unpriced_requests,
            "unpriced_models": dict(sorted(total.unpriced_models.items())),
            "residual_usd": to_json_money(total.residual) if total.residual is not None else None,
            "cache_pct": total.tokens.cache_pct(),
        },
        "skipped_lines": stats.skipped_lines,
    }


def _print_table(sessions: list[SessionSummary], total: Spend, price_date: str) -> None:
    from rich import box
    from rich.table import Table

    out = console()
    if not sessions:
        out.print("No sessions found.")
        return
    caption = f"prices as of {price_date}; ~ = estimated from list prices"
    if total.unpriced_requests:
        caption += "; +N? = N requests of unknown models, not priced (not in the cost)"
    if total.residual is not None:
        caption += f"; {RESIDUAL_LABEL}: {RESIDUAL_MEANING}"
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=0, show_edge=False, show_footer=True,
              caption=caption, caption_justify="left")
    # 80 columns fit the figures with short names; a wider terminal gives its room to the names.
    extra = max(0, out.width - TABLE_WIDTH)
    id_width = 36 if extra >= 40 else 8
    extra -= 28 if id_width == 36 else 0
    t.add_column("Session", no_wrap=True, min_width=8, footer="Total")
    t.add_column("Last", no_wrap=True, min_width=11, footer=f"{len(sessions)} sess.")
    t.add_column("Tool", no_wrap=True, min_width=6)
    t.add_column("Project", no_wrap=True, overflow="ellipsis", max_width=10 + extra // 2)
    t.add_column("Models", no_wrap=True, overflow="ellipsis", max_width=11 + extra - extra // 2)
    t.add_column("Tokens", justify="right", no_wrap=True, min_width=6, footer=fmt_tokens(total.tokens.total))
    t.add_column("Cache", justify="right", no_wrap=True, min_width=5, footer=f"{total.tokens.cache_pct():.0f}%")
    t.add_column("Cost", justify="right", no_wrap=True, min_width=12,
                 footer=_cost_cell(total, total.cost, total.authoritative))
    for s in sessions:
        t.add_row(
            s.session_id[:id_width],
            s.last_ts[5:16].replace("T", " "),
            s.tool,
            Path(s.cwd).name or s.cwd,
            ", ".join(_short_model(m) for m in s.models),
            fmt_tokens(s.spend.tokens.total),
            f"{s.spend.tokens.cache_pct():.0f}%",
            _cost_cell(s.spend, s.cost, s.authoritative),
        )
        if s.residual is not None:
            # Its own row: the session's recorded total is the cost above, but this part of it
            # belongs to no line, hence to no branch or commit.
            t.add_row("", "", "", RESIDUAL_LABEL, "", "", "", _signed_usd(s.residual))
    out.print(t)


# The residual row's label, and what the caption says it means (the table is 80 columns: the
# whole phrase does not fit a cell).
RESIDUAL_LABEL = "↳ residual"
RESIDUAL_MEANING = "within session, not attributable to a line (Claude Code's own total minus the priced lines)"


def _cost_cell(spend: Spend, cost: Decimal | None = None, authoritative: Decimal | None = None) -> str:
    cost = spend.cost if cost is None else cost
    authoritative = spend.authoritative if authoritative is None else authoritative
    text = fmt_usd(cost, estimated=authoritative != cost)
    return text + (f" +{spend.unpriced_requests}?" if spend.unpriced_requests else "")


def _signed_usd(value: Decimal) -> str:
    return ("-" if value < 0 else "+") + fmt_usd(abs(value))


def _short_model(model: str) -> str:
    """`claude-sonnet-4-5-20250929` -> `sonnet-4-5`: the family and version are what people scan for."""
    return re.sub(r"-\d{8}$", "", model.removeprefix("claude-"))


def _notes(stats: ScanStats, looked_in: dict[str, list[Path]], found_files: bool, verbose_: bool,
           total: Totals | None = None) -> None:
    if total is not None and total.unpriced_requests:
        note(unpriced_note(total.unpriced_requests, total.unpriced_models)
             + "; `costattr pricing update` may know them")
    if not found_files:
        where = "; ".join(f"{tool}: {', '.join(str(p) for p in roots)}" for tool, roots in looked_in.items())
        note(f"No transcripts found. Looked in {where}.")
        note("Set CLAUDE_CONFIG_DIR or CODEX_HOME if your assistant keeps them elsewhere.")
    if stats.skipped_lines:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(stats.skipped_reasons.items(), key=lambda kv: -kv[1]))
        note(f"Skipped {stats.skipped_lines} unreadable line(s): {reasons}." + ("" if verbose_ else " (-v for where)"))
        if verbose_:
            for where in stats.skipped_where:
                note(f"  {where}")
