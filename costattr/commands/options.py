"""Options shared by several commands, so each is spelled and parsed one way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, tzinfo
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class DateParam(click.ParamType):
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value).strip()
        for fmt in ("%Y-%m-%d", "%Y%m%d"):
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        self.fail(f"{value!r} is not a date; use YYYY-MM-DD", param, ctx)


class TzParam(click.ParamType):
    name = "TZ"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tzinfo | None:
        if value is None or isinstance(value, tzinfo):
            return value
        if str(value).lower() == "local":
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(str(value))
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin, or 'local'", param, ctx)


def date_range(f: F) -> F:
    f = click.option("--tz", type=TzParam(), default=None,
                     help="Time zone for day boundaries (IANA name; default: local).")(f)
    f = click.option("--until", type=DateParam(), help="Last day included (YYYY-MM-DD).")(f)
    f = click.option("--since", type=DateParam(), help="First day included (YYYY-MM-DD).")(f)
    return f
