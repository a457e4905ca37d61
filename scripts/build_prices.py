"""Regenerate the embedded price table, costattr/pricing/prices.json, from LiteLLM's price file.

    pip download litellm --no-deps -d /tmp/litellm
    python scripts/build_prices.py /tmp/litellm/litellm-*.whl            # rewrite prices.json
    python scripts/build_prices.py /tmp/litellm/litellm-*.whl --check    # exit 1 when it is stale
    python scripts/build_prices.py model_prices_and_context_window.json --source-version main

The input is `model_prices_and_context_window_backup.json`, read from inside the `litellm`
wheel (or given as a file). It is an input of this script only: costattr never imports litellm.
costattr.pricing.litellm turns its rows into entries (the same conversion `costattr pricing
update` applies to a fetched file); this script adds what LiteLLM gets wrong or lacks,
from the provider pages that `../shared/reference/pricing-facts.md` and docs/pricing.md cite
(OVERRIDES and EXCLUDED below, each with its reason), and writes the table dated, one model per
line, so a regeneration reads as a diff of prices.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # build the table of this checkout, whichever costattr is installed

from costattr.pricing.litellm import catalogue  # noqa: E402
from costattr.pricing.table import EMBEDDED, ModelPrice, PriceFile, parse_price_file  # noqa: E402

MEMBER = "litellm/model_prices_and_context_window_backup.json"

# LiteLLM rows not to use at all.
EXCLUDED = {
    # Claude 3.7 Sonnet was released on 2025-02-19: a 20240620 id (3.5 Sonnet's date) at $3.60 is
    # a GovCloud price copied under the wrong id. It would otherwise price claude-3-7-sonnet.
    "anthropic.claude-3-7-sonnet-20240620-v1:0": "wrong id and a GovCloud rate",
}

# Entries (or fields of entries) where the provider's own page, as pricing-facts.md and
# docs/pricing.md record it, says something LiteLLM does not. Each becomes an entry with an
# `override` reason, which `costattr pricing update` keeps over a fetched row.
OVERRIDES: dict[str, tuple[dict[str, Any], str]] = {
    "claude-opus-4-6": ({"fast_multiplier": "6"},
                        "fast mode 6x: pricing-facts.md, platform.claude.com build-with-claude/fast-mode; "
                        "LiteLLM has no fast entry for it"),
    "claude-opus-4-7": ({"fast_multiplier": "6"},
                        "fast mode 6x (ccusage's override table, docs/pricing.md; fast mode for 4.7 ended "
                        "2026-07-24, older transcripts still carry it); LiteLLM has no fast entry"),
    "claude-sonnet-4-5": ({"long_context": {"threshold": 200000, "input": "6", "output": "22.50",
                                            "cache_write_5m": "7.50", "cache_write_1h": "12", "cache_read": "0.60"}},
                          "whole-request tier above 200k prompt tokens (1M window): pricing-facts.md, Claude "
                          "pricing page long-context table; LiteLLM dropped the tier"),
    "claude-3-haiku": ({"cache_write_5m": "0.30", "cache_write_1h": "0.50", "cache_read": "0.03"},
                       "Claude Haiku 3's cache rates are not the usual multipliers: $0.30 write, $0.03 hit "
                       "(Claude pricing page, Haiku 3 row); LiteLLM (Vertex row) lists none"),
    "gpt-6.2-sol": ({"input": "2", "output": "10", "cache_write_5m": "2.50", "cache_write_1h": "5",
                     "cache_read": "0.10", "fast_multiplier": "2",
                     "long_context": {"threshold": 272000, "input": "4", "output": "15", "cache_write_5m": "5",
                                      "cache_write_1h": "10", "cache_read": "0.20"}},
                    "developers.openai.com/api/docs/models/gpt-6.2-sol (docs/pricing.md); not in LiteLLM"),
}


def load_litellm(path: Path) -> tuple[dict[str, Any], str]:
    """The price file and a name for where it came from (the wheel's version when it is one)."""
    if path.suffix == ".whl":
        m = re.match(r"litellm-([^-]+)-", path.name)
        with zipfile.ZipFile(path) as wheel:
            data = orjson.loads(wheel.read(MEMBER))
        return data, f"litellm {m.group(1) if m else path.name} (PyPI wheel)"
    return orjson.loads(path.read_bytes()), path.name


def build(data: dict[str, Any], origin: str, date: str) -> PriceFile:
    found = catalogue(data, exclude=frozenset(EXCLUDED))
    models: dict[str, ModelPrice] = {key: price for key, (_, price) in found.items()}
    for key, (fields, why) in OVERRIDES.items():
        base = models[key].model_dump(mode="python", exclude_none=True) if key in models else {}
        try:
            models[key] = ModelPrice.model_validate({**base, **fields, "override": why})
        except ValueError as e:  # a correction of a row the file no longer has
            raise SystemExit(f"override of {key}: {origin} has no row for it to correct") from e
    source = (f"LiteLLM model_prices_and_context_window_backup.json from {origin}, converted by "
              f"scripts/build_prices.py on {date}; {len(OVERRIDES)} entries corrected from provider pages "
              f"(see each entry's override)")
    return PriceFile(date=date, source=source, models=dict(sorted(models.items())))


def render(price_file: PriceFile) -> bytes:
    """The table as JSON, one model per line; Decimals as plain strings ("30", never "3E+1")."""
    models = [f"    {_json(key)}: {_json(_plain(price))}" for key, price in price_file.models.items()]
    lines = ["{", f'  "date": {_json(price_file.date)},', f'  "source": {_json(price_file.source)},',
             '  "models": {', ",\n".join(models), "  }", "}", ""]
    return "\n".join(lines).encode()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, ModelPrice):
        value = value.model_dump(mode="python", exclude_none=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return format(value.normalize(), "f") if isinstance(value, Decimal) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("litellm", type=Path, help="the litellm wheel, or model_prices_and_context_window*.json")
    parser.add_argument("--date", default=datetime.now(UTC).date().isoformat(),
                        help="the table's date (default: today)")
    parser.add_argument("--source-version", help="where the JSON came from, when it is not a wheel")
    parser.add_argument("--out", type=Path, default=EMBEDDED, help=f"default: {EMBEDDED.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true",
                        help="compare with --out instead of writing it (its date and source aside)")
    args = parser.parse_args(argv)
    data, origin = load_litellm(args.litellm)
    if args.source_version:
        origin = args.source_version
    if args.check:
        current = parse_price_file(orjson.loads(args.out.read_bytes()))
        fresh = build(data, origin, current.date)
        if render(fresh) != args.out.read_bytes():
            print(f"{args.out} is not what {args.litellm.name} gives: run scripts/build_prices.py", file=sys.stderr)
            return 1
        return 0
    price_file = build(data, origin, args.date)
    args.out.write_bytes(render(price_file))
    print(f"wrote {args.out}: {len(price_file.models)} models, dated {price_file.date}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
