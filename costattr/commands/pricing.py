"""`costattr pricing show|update`: the price table in force, and refreshing it from LiteLLM."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from typing import Any

import click

from costattr.output import TABLE_WIDTH, console, echo_json
from costattr.pricing import load_table
from costattr.pricing.table import LongContext, ModelPrice, PriceTable, Rates
from costattr.pricing.update import DEFAULT_TIMEOUT, DEFAULT_URL, update_table

UNIT = "USD per million tokens"


@click.group("pricing")
def command() -> None:
    """Show the price table, or update it from a LiteLLM price file.

    \b
    Example:
      costattr pricing show --model us.anthropic.claude-sonnet-4-5-20250929-v1:0
      costattr pricing update
    """


@command.command("show")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--model", "model", metavar="NAME",
              help="Only the entry this model name resolves to (or say it is unpriced).")
def show(fmt: str, model: str | None) -> None:
    """The prices in force (USD per million tokens), their date and where they come from.

    \b
    Example:
      costattr pricing show
      costattr pricing show --model claude-opus-4-6[1m]
      costattr pricing show --format json | jq '.models["gpt-5"]'
    """
    table = load_table()
    found = table.lookup(model) if model is not None else None
    rows = list(table.models.items()) if model is None else [found] if found else []
    if fmt == "json":
        echo_json(_as_json(table, dict(rows), model, found[0] if found else None))
    else:
        _print(table, rows, model)


@command.command("update")
@click.option("--url", metavar="URL", help=f"A LiteLLM model_prices_and_context_window.json  [default: {DEFAULT_URL}]")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for the download.")
def update(url: str | None, timeout: float) -> None:
    """Fetch LiteLLM's price file and store it as the table in force.

    Anthropic, OpenAI and Google chat models are kept (first-party rows, then the embedded
    table, then Bedrock/Vertex/Azure rows for models only they list); a failed or implausible
    download leaves the current table in place.

    \b
    Example:
      costattr pricing update
      costattr pricing update --url https://mirror.example.com/model_prices_and_context_window.json
    """
    table = update_table(url, timeout)
    click.echo(f"Price table updated: {len(table.models)} models, dated {table.date}, stored in {table.origin}")


def _origin(table: PriceTable) -> str:
    return "embedded in costattr" if table.origin == "embedded" else f"stored update {table.origin}"


def _print(table: PriceTable, rows: list[tuple[str, ModelPrice]], model: str | None) -> None:
    # Plain echo for sentences: names like "claude-opus-4-6[1m]" must not be read as rich markup.
    click.echo(f"Price table dated {table.date} ({_origin(table)}), {len(table.models)} models")
    if table.source:
        click.echo(textwrap.fill(f"Source: {table.source}", width=TABLE_WIDTH, subsequent_indent="  "))
    if model is not None and not rows:
        click.echo(f"{model}: unpriced (no entry matches it; its spend is reported as unpriced, never $0)")
        return
    if model is not None:
        click.echo(f"{model} resolves to {rows[0][0]}")
        if rows[0][1].override:
            click.echo(textwrap.fill(f"Not LiteLLM's figure: {rows[0][1].override}", width=TABLE_WIDTH,
                                     subsequent_indent="  "))
    console().print(_rich_table(rows))
    click.echo(f"{UNIT}. '-': not published; requests needing it stay unpriced.")


def _rich_table(rows: list[tuple[str, ModelPrice]]) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{UNIT} (fast: multiplier)", title_justify="left")
    grid.add_column("model", overflow="fold")
    for name in ("input", "output", "write 5m", "write 1h", "read", "fast"):
        grid.add_column(name, justify="right", no_wrap=True)
    for key, price in rows:
        fast = f"x{format(price.fast_multiplier.normalize(), 'f')}" if price.fast_multiplier else ""
        grid.add_row(Text(key), *_cells(price), fast)
        if price.long_context is not None:
            grid.add_row(_tier_label(price.long_context), *_cells(price.long_context), "")
    return grid


def _tier_label(lc: LongContext) -> str:
    return f"  prompt>{lc.threshold // 1000}k"


def _cells(rates: Rates) -> list[str]:
    return [_num(r) for r in (rates.input, rates.output, rates.cache_write_5m, rates.cache_write_1h, rates.cache_read)]


def _num(value: Decimal | None) -> str:
    """Cents as cents (22.50), finer rates in full (0.125); '-' for an unpublished rate."""
    if value is None:
        return "-"
    plain = value.normalize()
    return f"{value:.2f}" if -plain.as_tuple().exponent <= 2 else format(plain, "f")  # type: ignore[operator]


def _as_json(table: PriceTable, models: dict[str, ModelPrice], model: str | None, match: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"date": table.date, "source": table.source, "origin": table.origin, "unit": UNIT}
    if model is not None:
        data.update(model=model, match=match)
    data["models"] = {key: _price_json(price) for key, price in models.items()}
    return data


def _price_json(rates: Rates) -> dict[str, Any]:
    # Prices leave as JSON numbers, the one place a float is allowed (design rule 6).
    out: dict[str, Any] = {}
    for name, value in rates:
        if isinstance(value, Rates):
            out[name] = _price_json(value)
        elif isinstance(value, Decimal):
            out[name] = float(value)
        else:
            out[name] = value
    return out
