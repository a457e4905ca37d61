"""`costattr pricing update`: fetch a LiteLLM price file, keep what we can price exactly, store it.

LiteLLM's `model_prices_and_context_window.json` maps model ids to per-token USD costs;
`costattr.pricing.litellm` turns it into our models and rates (the same conversion
scripts/build_prices.py uses for the embedded table). The result is validated and only then
replaces the stored table, atomically. Any failure leaves the table in force untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from costattr.errors import CostattrError
from costattr.fsutil import atomic_write_bytes
from costattr.pricing import embedded_table, load_table, stored_table_path
from costattr.pricing.litellm import MODES, catalogue, complete_from, convert_row, placement
from costattr.pricing.table import ModelPrice, PriceFile, PriceTable
from costattr.secrets import strip_userinfo

DEFAULT_URL = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"
DEFAULT_TIMEOUT = 10.0
MAX_BYTES = 64 * 1024 * 1024  # the real file is a few MB; anything far larger is not it



def update_table(url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> PriceTable:
    """Fetch, convert, validate and store a new table; return it as it now stands on disk."""
    url = url or DEFAULT_URL
    keep = f"the price table in use (dated {load_table().date}) is unchanged"
    raw = _download(url, timeout, keep)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CostattrError(f"{url} is not valid JSON ({e})", f"{keep}; is the URL a LiteLLM price file?") from e
    price_file = build_price_file(data, source=strip_userinfo(url), today=_today(), fallback=embedded_table(),
                                  keep=keep)
    path = stored_table_path()
    try:
        atomic_write_bytes(path, dump_price_file(price_file))
    except OSError as e:
        raise CostattrError(f"cannot write {path}: {e}", f"{keep}; check COSTATTR_HOME is writable") from e
    return PriceTable.from_file(price_file, str(path))


def _download(url: str, timeout: float, keep: str) -> bytes:
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    too_big = f"{url} is larger than {MAX_BYTES // 2**20} MiB"
                    raise CostattrError(too_big, f"{keep}; is it the right file?")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException as e:
        raise CostattrError(f"timed out after {timeout:g}s fetching {url}", f"{keep}; retry, or raise --timeout") from e
    except httpx.HTTPStatusError as e:
        status = e.response.status_code
        raise CostattrError(f"{url} answered HTTP {status}", f"{keep}; retry later or pass --url") from e
    except (httpx.HTTPError, httpx.InvalidURL) as e:  # connection refused, DNS, TLS, not a URL, ...
        raise CostattrError(f"cannot fetch {url}: {e}", f"{keep}; check the network or pass --url") from e


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def build_price_file(data: Any, source: str, today: str, fallback: PriceTable, keep: str = "") -> PriceFile:
    """The table to store: the fetched first-party models, then the fallback (embedded) table
    for what they do not cover, then the models only resellers' rows price.

    The embedded table ranks above resellers' rows: it was built from the same kind of file
    with the provider pages' corrections (scripts/build_prices.py)."""
    hint = f"{keep}; is the URL a LiteLLM model_prices_and_context_window.json?".lstrip("; ")
    if not isinstance(data, dict):
        raise CostattrError(f"{source} is not a LiteLLM price file (expected an object of models)", hint)
    found = catalogue(data)
    fetched = {key: price for key, (rank, price) in found.items() if rank == 0}
    if not fetched:
        raise CostattrError(f"{source} has no usable Anthropic, OpenAI or Google chat model prices", hint)
    models = complete_from(fetched, fallback)
    covered = PriceTable("", "", models)
    resold = {key: price for key, (rank, price) in found.items() if rank > 0 and covered.lookup(key) is None}
    models.update(resold)
    added = len(models) - len(fetched) - len(resold)
    note = f"LiteLLM prices from {source}, fetched {today}: {len(fetched) + len(resold)} models"
    note += f", plus {added} from the embedded table dated {fallback.date}" if added else ""
    try:
        return PriceFile(date=today, source=note, models=models)
    except ValidationError as e:  # convert_row validated each entry; this guards the whole
        raise CostattrError(f"{source} gave an invalid price table: {e}", hint) from e


def convert_entry(key: str, entry: Any) -> ModelPrice | None:
    """One LiteLLM row as a ModelPrice, or None when it is not a first-party chat model we can
    price from stated rates."""
    if not isinstance(entry, dict) or entry.get("mode") not in MODES:
        return None
    placed = placement(key, entry)
    return convert_row(entry, placed[2]) if placed is not None and placed[0] == 0 else None


def dump_price_file(price_file: PriceFile) -> bytes:
    return orjson.dumps(
        price_file.model_dump(mode="python", exclude_none=True),
        default=_plain_decimal,
        option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE,
    )


def _plain_decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # "30", not "3E+1"
    raise TypeError(f"cannot serialise {type(value).__name__}")
