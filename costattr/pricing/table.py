"""The dated price table and the one function that prices a request.

Prices are Decimal USD per million tokens. A model matches a table entry exactly or after
normalising provider spellings (Bedrock, Vertex, Azure, `gemini/`, `anthropic/`, `.` vs `-`, `[1m]`) plus an optional
date suffix, never across versions: `claude-opus-4-9` is not `claude-opus-4`. No match means the
request is unpriced, reported as such, never $0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from costattr.models import Tokens

MILLION = Decimal(1_000_000)
EMBEDDED = Path(__file__).with_name("prices.json")

_PROVIDER_PREFIX = re.compile(
    r"^(?:(?:openrouter/)?(?:anthropic|openai|azure|bedrock|vertex_ai|gemini|google)/)?"
    r"(?:(?:us|eu|apac|au|jp|global)\.)?(?:anthropic\.|openai\.)?"
)
_BEDROCK_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")
_CONTEXT_SUFFIX = re.compile(r"\[[0-9]+[km]\]$")
_VERTEX_DEFAULT = re.compile(r"@default$")  # Vertex's "the current version" marker
# What may follow a table key: nothing, a release date, or "-latest". A bare number would be a
# different version (claude-opus-4 + "-9"), a word a different model (gpt-5-codex + "-mini").
_ALLOWED_TAIL = re.compile(r"^(?:-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)?$")


class Rates(BaseModel):
    """One tier of a model's prices. `cache_write_1h` is None where the provider publishes no
    such rate: a request that needs it is unpriced rather than priced by guess."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal | None = None
    cache_read: Decimal

    @field_validator("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
    @classmethod
    def _non_negative(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and v < 0:
            raise ValueError("a price cannot be negative")
        return v


class LongContext(Rates):
    """Rates for a request whose prompt (input + cache writes + cache reads) exceeds `threshold`:
    the provider then bills the WHOLE request, output included, at these rates."""

    threshold: int = Field(default=200_000, gt=0)


class ModelPrice(Rates):
    long_context: LongContext | None = None
    fast_multiplier: Decimal | None = Field(default=None, gt=0)  # `usage.speed == "fast"`
    # Why this entry is not LiteLLM's figure (a provider page it contradicts or lacks): such an
    # entry survives `costattr pricing update` (see pricing.litellm.complete_from).
    override: str | None = None


class PriceFile(BaseModel):
    """The on-disk format: embedded in the package, or fetched by `costattr pricing update`."""

    model_config = ConfigDict(extra="ignore")
    date: str
    source: str = ""
    models: dict[str, ModelPrice] = Field(min_length=1)


def normalise_model(name: str) -> str:
    name = name.strip().lower()
    name = _CONTEXT_SUFFIX.sub("", name)
    name = _PROVIDER_PREFIX.sub("", name)
    name = _BEDROCK_SUFFIX.sub("", name)
    name = _VERTEX_DEFAULT.sub("", name)
    return name.replace("@", "-").replace(".", "-").replace("_", "-")


def rates_for(price: ModelPrice, tokens: Tokens) -> Rates:
    """The tier one request is billed at: the threshold applies to the request's whole prompt."""
    lc = price.long_context
    return lc if lc is not None and tokens.prompt_total > lc.threshold else price


def request_cost(rates: Rates, tokens: Tokens) -> Decimal | None:
    if tokens.cache_write_1h and rates.cache_write_1h is None:
        return None  # a rate the provider does not publish: unpriced beats a guess
    return (
        tokens.input * rates.input
        + tokens.output * rates.output
        + tokens.cache_write_5m * rates.cache_write_5m
        + tokens.cache_write_1h * (rates.cache_write_1h or 0)
        + tokens.cache_read * rates.cache_read
    ) / MILLION


@dataclass(frozen=True)
class PriceTable:
    date: str
    source: str
    models: dict[str, ModelPrice]
    origin: str = "embedded"
    _matches: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_file(cls, data: PriceFile, origin: str) -> PriceTable:
        return cls(data.date, data.source, dict(data.models), origin)

    def lookup(self, model: str) -> tuple[str, ModelPrice] | None:
        if model not in self._matches:
            self._matches[model] = self._match(model)
        key = self._matches[model]
        return (key, self.models[key]) if key is not None else None

    def _match(self, model: str) -> str | None:
        if model in self.models:
            return model
        wanted = normalise_model(model)
        candidates = []
        for key in self.models:
            nkey = normalise_model(key)
            if wanted.startswith(nkey) and _ALLOWED_TAIL.match(wanted[len(nkey):]):
                candidates.append((-len(nkey), key))
        # The most specific entry wins (a dated key over its alias); ties resolve the same way
        # on every run, whatever order the file listed them in.
        return min(candidates)[1] if candidates else None

    def cost(self, model: str, tokens: Tokens, speed: str | None = None) -> Decimal | None:
        """List-price cost of one request, or None when the table cannot price it."""
        found = self.lookup(model) if model else None
        if found is None:
            return None
        price = found[1]
        cost = request_cost(rates_for(price, tokens), tokens)
        if cost is not None and speed == "fast" and price.fast_multiplier is not None:
            cost *= price.fast_multiplier
        return cost


def parse_price_file(raw: Any) -> PriceFile:
    return PriceFile.model_validate(raw)
