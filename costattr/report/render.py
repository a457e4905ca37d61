"""Render a rollup: a table for people, markdown for trackers, csv for spreadsheets, json for
scripts, and an ncdu-style tree for drilling down."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from costattr.markdown import md_escape
from costattr.output import console, fmt_tokens, fmt_usd, unpriced_note
from costattr.report.rollup import Rollup, Row, day_of, pct


def _duration(seconds: int) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"
    return f"{seconds // 86400}d"


def _cost(row: Row) -> str:
    text = fmt_usd(row.cost, estimated=row.estimated)
    if row.unpriced_requests:
        text += "+?"
    if row.over_budget:
        text += "!"
    return text


def _cells(row: Row, tz: tzinfo | None = None) -> list[str]:
    last = day_of(row.last_ts, tz)  # the day in the report's time zone, as --by day cuts it
    return [
        _cost(row),
        fmt_tokens(row.tokens.total),
        f"{row.tokens.cache_pct():.0f}%",
        str(len(row.sessions)),
        str(len(row.commits)),
        last.isoformat() if last else "",
        _duration(row.duration_s),
    ]


HEADERS = ["Cost", "Tokens", "Cache", "Sess", "Cmts", "Last", "Span"]
_KEY_HEADERS = {"pr": "PR"}  # groupings whose heading is not just the name capitalised
KEY_MIN_WIDTH = 8
SPAN_NOTE = "Span: first to last request (spans overlap, so they do not add up)"
COLUMN_GAP = 2  # what SIMPLE_HEAD without edges puts between two columns (padding + divider)


def key_header(by: str) -> str:
    return _KEY_HEADERS.get(by, by.capitalize())


def fit(text: str, width: int) -> str:
    """`text` cut to `width` terminal cells (wide characters count two), an ellipsis marking the cut."""
    from rich.cells import cell_len, set_cell_size

    return text if cell_len(text) <= width else set_cell_size(text, max(width - 1, 0)) + "…"


def _footnotes(roll: Rollup, price_date: str | None, unpriced_models: Mapping[str, int] | None = None) -> list[str]:
    """The table's and markdown's notes. `unpriced_models` (model -> unpriced requests) names
    the unknown models when the caller has them (already escaped for markdown)."""
    notes = ["~ estimated from list prices" + (f" as of {price_date}" if price_date else "")]
    if roll.total.unpriced_requests:
        notes.append(unpriced_note(roll.total.unpriced_requests,
                                   roll.total.unpriced_models if unpriced_models is None else unpriced_models))
    if any(r.over_budget for r in roll.rows):
        notes.append("! over budget")
    notes.append(SPAN_NOTE)
    return notes


def render_table(roll: Rollup, price_date: str | None = None) -> None:
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    out = console()
    # Over budget in red on a colour terminal; the `!` says the same where there is no colour (NO_COLOR).
    body: list[tuple[str, list[str], str | None]] = [
        (row.key, _cells(row, roll.tz), "red" if row.over_budget else None) for row in roll.rows]
    if roll.unattributed.requests:
        body.append(("(unattributed)", _cells(roll.unattributed, roll.tz), "dim"))
    footer = _cells(roll.total, roll.tz)
    # The key column gets what the figures leave of the terminal: were every column left to rich,
    # a long key would make it shrink all of them evenly, cutting figures ("Cac…", "$12.3…").
    figures = sum(max(len(h), len(f), *(len(c[i]) for _, c, _ in body)) for i, (h, f) in
                  enumerate(zip(HEADERS, footer, strict=True)))
    room = out.width - figures - COLUMN_GAP * len(HEADERS)
    longest = max([len(roll.by), len("Total"), *(cell_len(k) for k, _, _ in body)])
    key_width = max(KEY_MIN_WIDTH, min(room, longest))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False, show_footer=True,
              caption="; ".join(_footnotes(roll, price_date)), caption_justify="left")
    t.add_column(key_header(roll.by), no_wrap=True, overflow="ellipsis", max_width=key_width, footer="Total")
    for i, header in enumerate(HEADERS):
        t.add_column(header, justify="left" if header == "Last" else "right", no_wrap=True, footer=footer[i])
    for key, cells, style in body:
        # Text, not a str: a branch named `fix/[wip]` is a name, not rich markup.
        t.add_row(Text(fit(key, key_width)), *cells, style=style)
    # Rendered to text first so no line ends in the padding rich adds: pasted tables and golden
    # files stay free of trailing blanks.
    with out.capture() as captured:
        out.print(t)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    out.file.flush()


def render_markdown(roll: Rollup, price_date: str | None = None) -> str:
    """A table to paste into a tracker. Only keys and the price date come from outside (branch
    names, a shared ledger) and are escaped; the figures are ours and stay readable."""
    lines = [f"| {key_header(roll.by)} | " + " | ".join(HEADERS) + " |",
             "|---|" + "|".join("---:" if h != "Last" else "---" for h in HEADERS) + "|"]
    for row in roll.rows:
        # A file, not a comment the bot signs: no zero-width spaces against @mentions here.
        lines.append("| " + " | ".join([md_escape(row.key, mentions=False), *_cells(row, roll.tz)]) + " |")
    if roll.unattributed.requests:
        lines.append("| _unattributed_ | " + " | ".join(_cells(roll.unattributed, roll.tz)) + " |")
    lines.append("| **Total** | " + " | ".join(f"**{c}**" for c in _cells(roll.total, roll.tz)) + " |")
    lines.append("")
    models = {md_escape(m, mentions=False): n for m, n in roll.total.unpriced_models.items()}
    lines.append("_" + "; ".join(_footnotes(roll, md_escape(price_date, mentions=False) if price_date else None,
                                            models)) + "_")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ["key", "cost_usd", "estimated", "input", "output", "cache_write", "cache_read", "cache_pct",
              "requests", "unpriced_requests", "sessions", "commits", "prs", "first_ts", "last_ts", "duration_s",
              "budget_usd", "over_budget"]


def render_csv(roll: Rollup) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)

    def emit(row: Row, key: str) -> None:
        d = row.as_json()
        t = d["tokens"]
        w.writerow([key, d["cost_usd"], d["estimated"], t["input"], t["output"], t["cache_write"], t["cache_read"],
                    d["cache_pct"], d["requests"], row.unpriced_requests, d["sessions"], len(row.commits),
                    " ".join(f"#{p}" for p in d["prs"]), d["first_ts"] or "", d["last_ts"] or "", d["duration_s"],
                    d.get("budget_usd", ""), d.get("over_budget", "")])

    for row in roll.rows:
        emit(row, row.key)
    if roll.unattributed.requests:
        emit(roll.unattributed, "(unattributed)")
    emit(roll.total, "(total)")
    return buf.getvalue()


def render_tree(roll: Rollup, price_date: str | None = None) -> str:
    """key -> sessions -> records, each with its share of its parent (ncdu-style), as wide as
    the terminal."""
    width = console().width
    lines: list[str] = []
    total = roll.total.cost
    rows = roll.rows + ([roll.unattributed] if roll.unattributed.requests else [])
    for row in rows:
        head = f"{_cost(row):>11} {pct(row.cost, total):5.1f}%  "  # flags (+?, !) as in the table
        lines.append(head + fit(row.key, max(width - len(head), KEY_MIN_WIDTH)))
        # A record may reach a row in several parts (by day, by model): one line per record.
        by_session: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        for spend, cost in row.parts:
            slot = by_session[spend.session_id].setdefault(spend.record.id, [spend, Decimal(0)])
            slot[1] += cost
        sessions = sorted(by_session.items(), key=lambda kv: -sum((p[1] for p in kv[1].values()), Decimal(0)))
        for i, (sid, parts) in enumerate(sessions):
            s_cost = sum((p[1] for p in parts.values()), Decimal(0))
            last_s = i == len(sessions) - 1
            first = next(iter(parts.values()))[0]
            lines.append(f"{fmt_usd(s_cost):>11} {pct(s_cost, row.cost):5.1f}%  {'└─' if last_s else '├─'} "
                         f"session {sid[:8]} ({first.record.tool})")
            segs = sorted(parts.values(), key=lambda p: -p[1])
            for j, (spend, cost) in enumerate(segs):
                where = f"{spend.commit[:7]}" if spend.commit else spend.record.state
                label = f"{where} {spend.branch or '(no branch)'}"
                if spend.message:
                    label += f": {spend.message}"
                if spend.record.note:  # "before --base": why this spend is unattributed
                    label += f" ({spend.record.note})"
                if spend.record.backfilled:
                    label += " (backfilled)"
                stem = "   " if last_s else "│  "
                head = f"{fmt_usd(cost):>11} {pct(cost, s_cost):5.1f}%  {stem}{'└─' if j == len(segs) - 1 else '├─'} "
                lines.append(head + fit(label, max(width - len(head), KEY_MIN_WIDTH)))
    lines.append(f"{fmt_usd(total, roll.total.estimated):>11} 100.0%  total")
    return "\n".join(lines) + "\n"
