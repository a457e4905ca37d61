"""Terminal output: stdout carries data, stderr carries chatter (progress, notes, warnings).

Tables go through rich, which honours NO_COLOR and the terminal width by itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import orjson

TABLE_WIDTH = 80


def console(stderr: bool = False, width: int | None = None) -> Any:
    from rich.console import Console

    return Console(
        file=sys.stderr if stderr else sys.stdout,
        width=width or _width(),
        no_color=bool(os.environ.get("NO_COLOR")),
        highlight=False,
        soft_wrap=False,
    )


def _width() -> int:
    try:
        cols = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        cols = 0
    if cols <= 0:
        cols = os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else TABLE_WIDTH
    return max(40, min(cols, 200))


def echo_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def note(message: str) -> None:
    print(message, file=sys.stderr)


def fmt_usd(value: Decimal, estimated: bool = False, *, precise: bool = False) -> str:
    """Money for people, the one rule for tables, Markdown and the PR comment: cents
    (`$13.96`, `$1,234.57`), and four decimals for a non-zero amount below one cent (`$0.0041`),
    so small spend never reads as nothing. `~` marks an estimate. `precise` (a sentence comparing
    two amounts, like a budget warning) keeps four decimals below $1, so "$0.0136 over its
    $0.0100 budget" never reads "$0.01 over its $0.01". Machine formats (JSON, CSV) carry the
    exact amount."""
    prefix = "~" if estimated else ""
    if value != 0 and abs(value) < (Decimal(1) if precise else Decimal("0.01")):
        return f"{prefix}${value:.4f}"
    return f"{prefix}${value:,.2f}"


UNPRICED_NAMES_SHOWN = 5  # a long tail of unknown models is summarised, not listed


def unpriced_note(requests: int, models: Mapping[str, int] | None = None) -> str:
    """What is said wherever unpriced requests are counted, naming the models when known:
    `+? 3 requests of unknown models are not priced: foo (2), bar (1)`."""
    text = f"+? {plural(requests, 'request')} of unknown models {'is' if requests == 1 else 'are'} not priced"
    if models:
        ranked = sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))
        names = ", ".join(f"{printable(m)} ({n})" for m, n in ranked[:UNPRICED_NAMES_SHOWN])
        more = len(ranked) - UNPRICED_NAMES_SHOWN
        text += f": {names}" + (f" and {more} more" if more > 0 else "")
    return text


def plural(n: int, one: str, many: str | None = None) -> str:
    """`1 entry`, `4 entries`: the one pluraliser."""
    return f"{n:,} {one}" if n == 1 else f"{n:,} {many or one + 's'}"


def printable(text: str) -> str:
    """`text` with control characters escaped: a model name from a transcript is not allowed to
    move the cursor or recolour the terminal."""
    return text if text.isprintable() else "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def fmt_tokens(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A byte progress bar on stderr, only on a terminal; yields None when there is none to show."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
