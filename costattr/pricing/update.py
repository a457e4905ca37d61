"""`costattr pricing update`: fetch a LiteLLM price file, keep what we can price exactly, store it.

LiteLLM's `model_prices_and_context_window.json` maps model ids to per-token USD costs. We keep
first-party Anthropic and OpenAI chat models, turn per-token floats into exact per-million Decimals,
fill the rates LiteLLM leaves out from the providers' billing rules, and only then replace the
stored table, atomically. Any failure leaves the table in force untouched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from costattr.errors import CostattrError
from costattr.fsutil import atomic_write_bytes
from costattr.pricing import embedded_table, load_table, stored_table_path
from costattr.pricing.table import MILLION, LongContext, ModelPrice, PriceFile, PriceTable

DEFAULT_URL = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"
DEFAULT_TIMEOUT = 10.0
MAX_BYTES = 64 * 1024 * 1024  # the real file is a few MB; anything far larger is not it

_PROVIDERS = ("anthropic", "openai")  # first-party ids only: Bedrock/Vertex/Azure rows carry surcharges
_MODES = ("chat", "responses", None)
_ABOVE = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")
# No list price comes near this (the dearest is under $200 per million); a bigger figure is a
# unit mix-up in the source, and pricing with it would be worse than leaving the model unpriced.
_PLAUSIBLE_MAX = Decimal(10_000)
# Anthropic's published multipliers of the base input price (pricing page, prompt caching).
_CACHE_WRITE_5M = Decimal("1.25")
_CACHE_WRITE_1H = Decimal(2)
_CACHE_READ = Decimal("0.1")


def update_table(url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> PriceTable:
    """Fetch, convert, validate and store a new table; return it as it now stands on disk."""
    url = url or DEFAULT_URL
    keep = f"the price table in use (dated {load_table().date}) is unchanged"
    raw = _download(url, timeout, keep)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CostattrError(f"{url} is not valid JSON ({e})", f"{keep}; is the URL a LiteLLM price file?") from e
    price_file = build_price_file(data, source=url, today=_today(), fallback=embedded_table(), keep=keep)
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
    """The table to store: the fetched models, plus embedded ones the download does not cover."""
    hint = f"{keep}; is the URL a LiteLLM model_prices_and_context_window.json?".lstrip("; ")
    if not isinstance(data, dict):
        raise CostattrError(f"{source} is not a LiteLLM price file (expected an object of models)", hint)
    fetched = {key: price for key, entry in data.items() if (price := convert_entry(key, entry)) is not None}
    if not fetched:
        raise CostattrError(f"{source} has no usable Anthropic or OpenAI chat model prices", hint)
    models = complete_from(fetched, fallback)
    added = len(models) - len(fetched)
    note = f"LiteLLM prices from {source}, fetched {today}: {len(fetched)} models"
    note += f", plus {added} from the embedded table dated {fallback.date}" if added else ""
    try:
        return PriceFile(date=today, source=note, models=models)
    except ValidationError as e:  # convert_entry validated each entry; this guards the whole
        raise CostattrError(f"{source} gave an invalid price table: {e}", hint) from e


def convert_entry(key: str, entry: Any) -> ModelPrice | None:
    """One LiteLLM row as a ModelPrice, or None when it is not a first-party chat model we can
    price from stated rates (a row we cannot trust is left out, so its model stays unpriced)."""
    if not _wanted(key, entry):
        return None
    try:
        anthropic = entry["litellm_provider"] == "anthropic"
        base = _tier(entry, "", anthropic, None)
        if base is None:
            return None
        return ModelPrice(**base, long_context=_long_context(entry, anthropic, base), fast_multiplier=_fast(entry))
    except (ArithmeticError, TypeError, ValueError):  # ValidationError is a ValueError
        return None


def _wanted(key: str, entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("litellm_provider") in _PROVIDERS
        and entry.get("mode") in _MODES
        and "/" not in key
        and not key.startswith("ft:")
    )


def _tier(entry: dict[str, Any], suffix: str, anthropic: bool, base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The five rates of one tier (`suffix` "" or "_above_200k_tokens"), missing ones derived.

    Base tier: Anthropic writes are 1.25x (5m) / 2x (1h) input, reads 0.1x; OpenAI charges no
    write surcharge, and a cached token with no discounted rate is billed as input. Upper tier:
    cache rates scale with input, as both providers bill them ("multipliers stack").
    """
    inp, out = _rate(entry, "input_cost_per_token" + suffix), _rate(entry, "output_cost_per_token" + suffix)
    if inp is None or out is None or (inp == 0 and out == 0):
        return None
    write_5m = _rate(entry, "cache_creation_input_token_cost" + suffix)
    write_1h = _rate(entry, "cache_creation_input_token_cost_above_1hr" + suffix)
    read = _rate(entry, "cache_read_input_token_cost" + suffix)
    if base is not None:
        scale = inp / base["input"] if base["input"] else Decimal(1)
        derived_5m, derived_read = base["cache_write_5m"] * scale, base["cache_read"] * scale
        derived_1h = base["cache_write_1h"] * scale if base["cache_write_1h"] is not None else None
    elif anthropic:
        derived_5m, derived_1h, derived_read = inp * _CACHE_WRITE_5M, inp * _CACHE_WRITE_1H, inp * _CACHE_READ
    else:
        # Models that bill cache writes (GPT-5.6 on) also sell a longer retention LiteLLM does not
        # list: leave that rate unknown rather than guess it.
        derived_5m, derived_1h, derived_read = Decimal(0), (Decimal(0) if write_5m is None else None), inp
    return {
        "input": inp,
        "output": out,
        "cache_write_5m": _first(write_5m, derived_5m),
        "cache_write_1h": _first(write_1h, derived_1h),
        "cache_read": _first(read, derived_read),
    }


def _long_context(entry: dict[str, Any], anthropic: bool, base: dict[str, Any]) -> LongContext | None:
    thresholds = sorted(int(m.group(1)) for k in entry if (m := _ABOVE.match(k)))
    if not thresholds:
        return None
    upper = _tier(entry, f"_above_{thresholds[0]}k_tokens", anthropic, base)
    return LongContext(threshold=thresholds[0] * 1000, **upper) if upper is not None else None


def _fast(entry: dict[str, Any]) -> Decimal | None:
    specific = entry.get("provider_specific_entry")
    value = specific.get("fast") if isinstance(specific, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    multiplier = Decimal(str(value))
    return multiplier if multiplier.is_finite() and multiplier > 1 else None


def _rate(entry: dict[str, Any], name: str) -> Decimal | None:
    """A per-token USD cost as exact USD per million. str() first: Decimal(3e-06) would carry the
    float's binary error, Decimal("3e-06") is exactly 3 per million."""
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name} is not a number")
    per_million = (Decimal(str(value)) * MILLION).normalize()
    if not per_million.is_finite() or not Decimal(0) <= per_million <= _PLAUSIBLE_MAX:
        raise ValueError(f"{name} = {value} is not a plausible price")
    return per_million


def _first(stated: Decimal | None, derived: Decimal | None) -> Decimal | None:
    return stated if stated is not None else (derived.normalize() if derived is not None else None)


def complete_from(fetched: dict[str, ModelPrice], fallback: PriceTable) -> dict[str, ModelPrice]:
    """Fetched prices win where they exist. A fetched row missing the fast multiplier or the
    long-context tier the embedded entry for the same model has keeps it (leaving it out would
    under-bill fast or long requests several times over), and embedded models the download does
    not cover stay priced."""
    merged = {}
    for key, price in fetched.items():
        known = fallback.lookup(key)
        if known is not None:
            price = price.model_copy(update={
                "fast_multiplier": price.fast_multiplier or known[1].fast_multiplier,
                "long_context": price.long_context or known[1].long_context,
            })
        merged[key] = price
    covered = PriceTable("", "", merged)
    merged.update({k: p for k, p in fallback.models.items() if covered.lookup(k) is None})
    return merged


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
