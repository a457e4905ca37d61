"""LiteLLM's price file as a costattr price table: which rows, under which model ids, at which rates.

`model_prices_and_context_window.json` (fetched by `costattr pricing update`, shipped in the
`litellm` wheel as `model_prices_and_context_window_backup.json`, read by
`scripts/build_prices.py`) maps model ids, in every provider's spelling, to per-token USD floats.
This module keeps the Anthropic, OpenAI and Google models, one entry per model:

* the first-party row (`anthropic`, `openai`, `gemini` providers) when there is one; else the
  row of a cloud that resells the model at list price (Bedrock's bare and global/us ids, then
  Vertex, then Azure), under the model's own id. Regional rows (`eu.`, `apac.`, `bedrock/<region>/`,
  `azure/eu/`, ...) carry surcharges and are never used;
* per-token floats become exact per-million Decimals; the rates LiteLLM leaves out are filled
  from the providers' billing rules (see `_tier`); `*_above_<N>k_tokens` rows become the
  whole-request long-context tier, `provider_specific_entry.fast` (Anthropic) or a uniform
  Priority multiplier (OpenAI) the fast multiplier;
* a row with a missing, negative, non-numeric or implausible price is left out: its model
  stays unpriced rather than mispriced.

Every spelling the table does not hold as a key (Bedrock, Vertex, Azure, `gemini/`, dated ids)
reaches its entry through `normalise_model`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from costattr.pricing.table import MILLION, LongContext, ModelPrice, PriceTable, normalise_model

MODES = ("chat", "responses", None)
_ABOVE = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")
# No list price comes near this (the dearest is under $200 per million); a bigger figure is a
# unit mix-up in the source, and pricing with it would be worse than leaving the model unpriced.
_PLAUSIBLE_MAX = Decimal(10_000)
# Anthropic's published multipliers of the base input price (pricing page, prompt caching).
_CACHE_WRITE_5M = Decimal("1.25")
_CACHE_WRITE_1H = Decimal(2)
_CACHE_READ = Decimal("0.1")

FIRST_PARTY = {"anthropic": "anthropic", "openai": "openai", "gemini": "google"}  # LiteLLM provider -> family
# Where a model id comes from when no first-party row has it, best first. Each pattern captures
# the model's own id; Bedrock's `-v1:0` and Vertex's `@date` are dealt with by `_canonical`.
_RESELLERS: list[tuple[str, re.Pattern[str]]] = [
    ("bedrock", re.compile(r"^(?:anthropic|openai)\.(.+)$")),
    ("bedrock", re.compile(r"^global\.(?:anthropic|openai)\.(.+)$")),
    ("bedrock", re.compile(r"^us\.(?:anthropic|openai)\.(.+)$")),
    ("vertex", re.compile(r"^(?:vertex_ai/)?((?:gemini|claude)-.+)$")),
    ("azure", re.compile(r"^azure/([^/]+)$")),
]
_RESELLER_PROVIDERS = {
    "bedrock": ("bedrock", "bedrock_converse"),
    "vertex": ("vertex_ai", "vertex_ai-language-models", "vertex_ai-anthropic_models"),
    "azure": ("azure",),
}
_FAMILIES = (("anthropic", re.compile(r"^claude-")), ("google", re.compile(r"^gemini-")),
             ("openai", re.compile(r"^(?:gpt-|o\d|codex-|chatgpt-|computer-use-)")))
# Models billed by more than text tokens (audio, images, speech, music, embeddings): a price per
# text token would be wrong for them, so they stay unpriced.
_NOT_TEXT = re.compile(r"(?:audio|realtime|tts|transcribe|image|imagen|veo|lyria|embedding|live|robotics)")
# Open-weight models: no list price of their maker's, each host sets its own.
_OPEN_WEIGHTS = re.compile(r"^gpt-oss-")
_DATED = re.compile(r"^(.+?)-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


def catalogue(data: dict[str, Any], exclude: frozenset[str] = frozenset()) -> dict[str, tuple[int, ModelPrice]]:
    """model id -> (rank, price) for every Anthropic, OpenAI and Google text model in a LiteLLM
    file. Rank 0: a first-party row, under its own id (dated ids priced like their undated id
    are dropped: the matcher takes `<id>-<date>` to `<id>`). Higher ranks: the best reseller's
    row (see _RESELLERS) of a model no first-party row prices, under the undated id (clouds
    name every version by date; a model's versions share a price). `exclude`: LiteLLM keys not
    to use at all (known-bad rows)."""
    first: dict[str, tuple[str, ModelPrice]] = {}  # normalised id -> (id, price)
    # normalised undated id -> ((rank, dated?, LiteLLM key): which row wins, undated id, price)
    resold: dict[str, tuple[tuple[int, int, str], str, ModelPrice]] = {}
    for key, entry in data.items():
        if key in exclude or not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        placed = placement(key, entry)
        price = convert_row(entry, placed[2]) if placed is not None else None
        if price is None:
            continue
        rank, model, _ = placed  # type: ignore[misc]
        if rank == 0:
            held = first.get(normalise_model(model))
            if held is None or model < held[0]:
                first[normalise_model(model)] = (model, price)
            continue
        m = _DATED.match(model)
        base = m.group(1) if m else model
        order = (rank, 0 if m is None else 1, key)  # the best reseller, then its undated row
        held_r = resold.get(normalise_model(base))
        if held_r is None or order < held_r[0]:
            resold[normalise_model(base)] = (order, base, price)
    out = _drop_dated_aliases({model: (0, price) for model, price in first.values()})
    covered = PriceTable("", "", {k: p for k, (_, p) in out.items()})
    for (rank, _, _), base, price in resold.values():
        if covered.lookup(base) is None:
            out[base] = (rank, price)
    return out


def placement(key: str, entry: dict[str, Any]) -> tuple[int, str, str] | None:
    """(rank, model id, family) of a row we may use, or None."""
    provider = entry.get("litellm_provider")
    if provider in FIRST_PARTY and not key.startswith("ft:"):
        model = key.removeprefix("gemini/") if provider == "gemini" else key
        if "/" in model:
            return None
        family = FIRST_PARTY[provider]  # type: ignore[index]
        return (0, model, family) if not _NOT_TEXT.search(model) else None
    for rank, (reseller, pattern) in enumerate(_RESELLERS, start=1):
        m = pattern.match(key)
        if m is None or provider not in _RESELLER_PROVIDERS[reseller]:
            continue
        model = _canonical(m.group(1))
        family = next((f for f, name in _FAMILIES if name.match(model)), None)
        if family is None or "/" in model or _NOT_TEXT.search(model) or _OPEN_WEIGHTS.match(model):
            return None
        return rank, model, family
    return None


def _canonical(model: str) -> str:
    """A reseller's id as the provider spells it: Bedrock's `-v1:0` and Vertex's `@20250929`
    (or `@default`) dropped or turned into the date suffix."""
    model = re.sub(r"-v\d+(?::\d+)?$", "", model)
    model, _, version = model.partition("@")
    return f"{model}-{version}" if re.fullmatch(r"\d{8}", version) else model


def _drop_dated_aliases(models: dict[str, tuple[int, ModelPrice]]) -> dict[str, tuple[int, ModelPrice]]:
    """Without the dated ids that are priced like their undated id: the matcher takes
    `<id>-<date>` to `<id>` anyway, so every name keeps its price with fewer keys."""
    out = dict(models)
    for key, (_, price) in models.items():
        m = _DATED.match(key)
        if m and m.group(1) in models and models[m.group(1)][1] == price:
            del out[key]
    return out


def convert_row(entry: dict[str, Any], family: str) -> ModelPrice | None:
    """One LiteLLM row as a ModelPrice under `family`'s billing rules, or None when its stated
    rates cannot be trusted (a row we cannot trust is left out, so its model stays unpriced)."""
    try:
        base = _tier(entry, "", family, None)
        if base is None:
            return None
        return ModelPrice(**base, long_context=_long_context(entry, family, base), fast_multiplier=_fast(entry, family))
    except (ArithmeticError, TypeError, ValueError):  # ValidationError is a ValueError
        return None


def _tier(entry: dict[str, Any], suffix: str, family: str, base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The five rates of one tier (`suffix` "" or "_above_200k_tokens"), missing ones derived.

    Base tier, Anthropic: writes 1.25x (5m) / 2x (1h) input, reads 0.1x. OpenAI and Google: the
    longer-retention write is LiteLLM's `_above_12hr` rate (OpenAI's 12-hour write); a model
    that lists no write rate (every Gemini) charges none, so a written token costs what an
    input token does;
    a model that lists one but no longer-retention rate leaves that rate unknown (a request
    needing it is unpriced); a cached token with no discounted rate is billed as input.
    Upper tier: cache rates scale with input, as both providers bill them ("multipliers stack").
    """
    inp, out = _rate(entry, "input_cost_per_token" + suffix), _rate(entry, "output_cost_per_token" + suffix)
    if inp is None or out is None or (inp == 0 and out == 0):
        return None
    anthropic = family == "anthropic"
    write_5m = _rate(entry, "cache_creation_input_token_cost" + suffix)
    write_1h = _rate(entry, ("cache_creation_input_token_cost_above_1hr" if anthropic
                             else "cache_creation_input_token_cost_above_12hr") + suffix)
    if family == "google":
        # Gemini bills creating a cache as input plus storage per hour (not modelled); the
        # `cache_creation_*` figures some Vertex rows carry are below input, i.e. not that.
        write_5m = write_1h = None
    read = _rate(entry, "cache_read_input_token_cost" + suffix)
    if base is not None:
        scale = inp / base["input"] if base["input"] else Decimal(1)
        derived_5m, derived_read = base["cache_write_5m"] * scale, base["cache_read"] * scale
        derived_1h = base["cache_write_1h"] * scale if base["cache_write_1h"] is not None else None
    elif anthropic:
        derived_5m, derived_1h, derived_read = inp * _CACHE_WRITE_5M, inp * _CACHE_WRITE_1H, inp * _CACHE_READ
    else:
        derived_5m, derived_1h, derived_read = inp, (inp if write_5m is None else None), inp
    return {
        "input": inp,
        "output": out,
        "cache_write_5m": _first(write_5m, derived_5m),
        "cache_write_1h": _first(write_1h, derived_1h),
        "cache_read": _first(read, derived_read),
    }


def _long_context(entry: dict[str, Any], family: str, base: dict[str, Any]) -> LongContext | None:
    thresholds = sorted(int(m.group(1)) for k in entry if (m := _ABOVE.match(k)))
    if not thresholds:
        return None
    upper = _tier(entry, f"_above_{thresholds[0]}k_tokens", family, base)
    return LongContext(threshold=thresholds[0] * 1000, **upper) if upper is not None else None


def _fast(entry: dict[str, Any], family: str) -> Decimal | None:
    """Anthropic's fast mode (`provider_specific_entry.fast`), or OpenAI's Priority processing
    when it is one exact multiple of every standard rate (what Codex's fast mode bills)."""
    if family == "openai":
        return _priority_multiplier(entry)
    specific = entry.get("provider_specific_entry")
    value = specific.get("fast") if isinstance(specific, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    multiplier = Decimal(str(value))
    return multiplier if multiplier.is_finite() and multiplier > 1 else None


def _priority_multiplier(entry: dict[str, Any]) -> Decimal | None:
    ratios = set()
    for name in ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost"):
        standard, priority = _rate(entry, name), _rate(entry, name + "_priority")
        if standard and priority is not None:
            ratios.add(priority / standard)
    if len(ratios) != 1:
        return None
    (ratio,) = ratios
    # 1.666... (gpt-4o-mini) is a rounded rate, not a multiplier: only an exact one is used
    return ratio.normalize() if ratio > 1 and ratio == ratio.quantize(Decimal("0.01")) else None


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
    """Fetched prices win where they exist, except over a fallback entry that carries an
    `override` (a provider page that LiteLLM contradicts, see scripts/build_prices.py). A
    fetched row missing the fast multiplier or the long-context tier the fallback entry for the
    same model has keeps it (leaving it out would under-bill fast or long requests several
    times over), and fallback models the download does not cover stay priced."""
    merged = {}
    for key, price in fetched.items():
        known = fallback.lookup(key)
        if known is not None and known[1].override:
            price = known[1]
        elif known is not None:
            price = price.model_copy(update={
                "fast_multiplier": price.fast_multiplier or known[1].fast_multiplier,
                "long_context": price.long_context or known[1].long_context,
            })
        merged[key] = price
    covered = PriceTable("", "", merged)
    merged.update({k: p for k, p in fallback.models.items() if covered.lookup(k) is None})
    return merged
