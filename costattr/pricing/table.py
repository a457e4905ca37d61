"""The dated price table and the one function that prices a request.

Prices are Decimal USD per million tokens. A model matches a table entry exactly or after
normalising provider spellings (Bedrock, Vertex, `anthropic/`, `.` vs `-`) plus an optional date
suffix, never across versions: `claude-opus-4-9` is not `claude-opus-4`. No match means the
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
    r"^(?:(?:openrouter/)?(?:anthropic|openai|azure|bedrock|vertex_ai)/)?"
    r"(?:(?:us|eu|apac|au|jp|global)\.)?(?:anthropic\.)?"
)
_BEDROCK_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")
_CONTEXT_SUFFIX = re.compile(r"\[[0-9]+[km]\]$")
# What may follow a table key: nothing, a release date, or "-latest". A bare number would be a
# different version (claude-opus-4 + "-9"), a word a different model (gpt-5 + "-mini").
_ALLOWED_TAIL = re.compile(r"^(?:-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)?$")


class Rates(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal

    @field_validator("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
    @classmethod
    def _non_negative(cls, v: Decimal) -> Decimal:
        if v < 0:
            raise ValueError("a price cannot be negative")
        return v


class LongContext(Rates):
    threshold: int = 200_000


class ModelPrice(Rates):
    long_context: LongContext | None = None
    fast_multiplier: Decimal | None = None


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
    return name.replace("@", "-").replace(".", "-").replace("_", "-")


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
        best: str | None = None
        for key in self.models:
            nkey = normalise_model(key)
            if wanted.startswith(nkey) and _ALLOWED_TAIL.match(wanted[len(nkey):]):
                if best is None or len(key) > len(best):
                    best = key
        return best

    def cost(self, model: str, tokens: Tokens, speed: str | None = None) -> Decimal | None:
        """List-price cost of one request, or None when the model is not in the table."""
        found = self.lookup(model) if model else None
        if found is None:
            return None
        price = found[1]
        rates: Rates = price
        lc = price.long_context
        if lc is not None and tokens.prompt_total > lc.threshold:
            rates = lc  # the provider bills the whole request at the long-context rate
        cost = (
            tokens.input * rates.input
            + tokens.output * rates.output
            + tokens.cache_write_5m * rates.cache_write_5m
            + tokens.cache_write_1h * rates.cache_write_1h
            + tokens.cache_read * rates.cache_read
        ) / MILLION
        if speed == "fast" and price.fast_multiplier is not None:
            cost *= price.fast_multiplier
        return cost


def parse_price_file(raw: Any) -> PriceFile:
    return PriceFile.model_validate(raw)
