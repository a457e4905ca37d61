"""The embedded price table, as scripts/build_prices.py generates it from LiteLLM's price file:
it round-trips, it is dated and names its source, every rule of the project's pricing facts
(`../shared/reference/pricing-facts.md`, which cites the providers' pages) still holds, and the
script itself does what its docstring says on a small LiteLLM-format file written here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from costattr.cli import cli
from costattr.models import Tokens
from costattr.pricing import embedded_table
from costattr.pricing.table import EMBEDDED, PriceTable, parse_price_file
from costattr.pricing.update import dump_price_file

D = Decimal
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_prices.py"
M = 1_000_000


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return embedded_table()


def run_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=False)


# -- the file ------------------------------------------------------------------------------------


def test_the_embedded_table_round_trips() -> None:
    raw = EMBEDDED.read_bytes()
    parsed = parse_price_file(orjson.loads(raw))
    # through the script's own writer: byte for byte, so a regeneration diff shows prices only
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import build_prices  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert build_prices.render(parsed) == raw
    # and through the format `costattr pricing update` stores
    assert parse_price_file(orjson.loads(dump_price_file(parsed))) == parsed


def test_the_table_is_dated_and_names_its_source(table: PriceTable) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.date)
    assert re.search(r"litellm \d+\.\d+\.\d+ \(PyPI wheel\)", table.source)
    assert "scripts/build_prices.py" in table.source
    corrected = {k: p.override for k, p in table.models.items() if p.override}
    assert corrected and all(len(why) > 20 for why in corrected.values())  # each says why
    out = CliRunner().invoke(cli, ["pricing", "show"]).output
    assert f"Price table dated {table.date} (embedded in costattr), {len(table.models)} models" in out
    assert "Source: LiteLLM model_prices_and_context_window_backup.json from litellm" in " ".join(out.split())


def test_every_provider_family_is_priced(table: PriceTable) -> None:
    keys = set(table.models)
    assert sum(k.startswith("claude-") for k in keys) >= 25
    assert sum(k.startswith(("gpt-", "o1", "o3", "o4")) for k in keys) >= 60
    assert sum(k.startswith("gemini-") for k in keys) >= 25


# -- pricing-facts.md, rule by rule ---------------------------------------------------------------

# (model id prefixes, input, output, 5m write, 1h write, read): the Anthropic table of the facts
ANTHROPIC_FACTS = [
    (["claude-opus-4-6", "claude-opus-4-5"], "5", "25", "6.25", "10", "0.50"),
    (["claude-opus-4-1", "claude-opus-4"], "15", "75", "18.75", "30", "1.50"),
    (["claude-sonnet-4-5", "claude-sonnet-4"], "3", "15", "3.75", "6", "0.30"),
    (["claude-haiku-4-5"], "1", "5", "1.25", "2", "0.10"),
    (["claude-3-5-haiku"], "0.80", "4", "1.00", "1.60", "0.08"),
]
# (model id prefixes, input, cached input, output): the OpenAI (Codex) table
OPENAI_FACTS = [
    (["gpt-5", "gpt-5-codex", "gpt-5.1", "gpt-5.1-codex"], "1.25", "0.125", "10"),
    (["gpt-5-mini"], "0.25", "0.025", "2"),
    (["gpt-5-nano"], "0.05", "0.005", "0.40"),
]


@pytest.mark.parametrize(("models", "inp", "out", "w5", "w1", "read"), ANTHROPIC_FACTS)
def test_anthropic_list_prices(table: PriceTable, models: list[str], inp: str, out: str, w5: str, w1: str,
                               read: str) -> None:
    n = 100_000  # below every long-context threshold
    for model in models:
        for name in (model, f"{model}-20250929"):  # the id and a dated spelling of it
            for field, rate in (("input", inp), ("output", out), ("cache_write_5m", w5), ("cache_write_1h", w1),
                                ("cache_read", read)):
                assert table.cost(name, Tokens(**{field: n})) == D(rate) * n / M, (name, field)


def test_anthropic_cache_multipliers(table: PriceTable) -> None:
    """5-minute writes 1.25x input, 1-hour writes 2x, reads 0.1x (on the models the facts list)."""
    for models, *_ in ANTHROPIC_FACTS:
        for model in models:
            price = table.lookup(model)[1]  # type: ignore[index]
            assert (price.cache_write_5m, price.cache_write_1h, price.cache_read) == (
                price.input * D("1.25"), price.input * 2, price.input * D("0.1")), model


@pytest.mark.parametrize("model", ["claude-sonnet-4-5-20250929", "claude-sonnet-4-20250514"])
def test_long_context_bills_the_whole_request_above_200k(table: PriceTable, model: str) -> None:
    below = Tokens(input=100_000, cache_write_5m=50_000, cache_read=50_000, output=10_000)  # 200,000: standard
    above = Tokens(input=100_000, cache_write_5m=50_000, cache_read=50_001, output=10_000)
    assert table.cost(model, below) == (100_000 * 3 + 50_000 * D("3.75") + 50_000 * D("0.30") + 10_000 * 15) / M
    assert table.cost(model, above) == (
        100_000 * 6 + 50_000 * D("7.50") + 50_001 * D("0.60") + 10_000 * D("22.50")) / M
    assert table.cost(model, Tokens(input=1, cache_write_1h=200_000)) == (6 + 200_000 * 12) / D(M)


def test_fast_mode_is_six_times_on_opus_4_6(table: PriceTable) -> None:
    tokens = Tokens(input=10_000, output=2_000, cache_read=50_000)
    assert table.cost("claude-opus-4-6", tokens, speed="fast") == 6 * table.cost("claude-opus-4-6", tokens)  # type: ignore[operator]


@pytest.mark.parametrize(("spelling", "model"), [
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("apac.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ("vertex_ai/claude-opus-4-6@default", "claude-opus-4-6"),
    ("azure/gpt-5.1-codex", "gpt-5.1-codex"),
])
def test_cloud_spellings_cost_what_the_bare_id_costs(table: PriceTable, spelling: str, model: str) -> None:
    tokens = Tokens(input=12_345, output=678, cache_write_5m=910, cache_read=11_121)
    assert table.cost(spelling, tokens) == table.cost(model, tokens) is not None


def test_costusd_recorded_by_old_claude_code_is_the_cost() -> None:
    from costattr.models import UsageEvent
    from costattr.pricing import price_events

    ev = UsageEvent("claude", "s", "k", "2025-06-01T00:00:00Z", "claude-sonnet-4-20250514", "/w", "main",
                    Tokens(input=1_000), recorded_cost="0.0123")
    price_events([ev], embedded_table(), "auto")
    assert (ev.cost, ev.cost_source) == (D("0.0123"), "authoritative")


@pytest.mark.parametrize(("models", "inp", "cached", "out"), OPENAI_FACTS)
def test_codex_input_minus_cached_at_input_rate_cached_at_cached_rate(
    table: PriceTable, models: list[str], inp: str, cached: str, out: str
) -> None:
    for model in models:
        # a token_count of 100k input of which 80k cached, 5k output of which 2k reasoning
        tokens = Tokens(input=20_000, cache_read=80_000, output=5_000, reasoning=2_000)
        assert table.cost(model, tokens) == (20_000 * D(inp) + 80_000 * D(cached) + 5_000 * D(out)) / M, model
        # no cache-write charge: a written token costs what an input token does
        assert table.cost(model, Tokens(cache_write_5m=M)) == table.cost(model, Tokens(input=M)), model


# -- the script ------------------------------------------------------------------------------------

LITELLM: dict[str, Any] = {
    "sample_spec": {"litellm_provider": "one of https://docs.litellm.ai/docs/providers", "mode": "chat"},
    # first party
    "claude-opus-4-6": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2.5e-05,
                        "cache_creation_input_token_cost": 6.25e-06, "cache_creation_input_token_cost_above_1hr": 1e-05,
                        "cache_read_input_token_cost": 5e-07, "litellm_provider": "anthropic", "mode": "chat"},
    "claude-opus-4-6-20260205": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2.5e-05,
                                 "cache_creation_input_token_cost": 6.25e-06,
                                 "cache_creation_input_token_cost_above_1hr": 1e-05,
                                 "cache_read_input_token_cost": 5e-07, "litellm_provider": "anthropic", "mode": "chat"},
    "claude-sonnet-4-5": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                          "litellm_provider": "anthropic", "mode": "chat"},
    "claude-opus-4-7": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2.5e-05,
                        "litellm_provider": "anthropic", "mode": "chat"},
    "vertex_ai/claude-3-haiku@20240307": {"input_cost_per_token": 2.5e-07, "output_cost_per_token": 1.25e-06,
                                          "litellm_provider": "vertex_ai-anthropic_models", "mode": "chat"},
    "gpt-5.6-terra": {"input_cost_per_token": 2e-06, "output_cost_per_token": 1.2e-05,
                      "cache_creation_input_token_cost": 2.5e-06, "cache_read_input_token_cost": 2e-07,
                      "input_cost_per_token_priority": 4e-06, "output_cost_per_token_priority": 2.4e-05,
                      "cache_read_input_token_cost_priority": 4e-07, "litellm_provider": "openai", "mode": "chat"},
    "gemini/gemini-2.5-pro": {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                              "cache_read_input_token_cost": 1.25e-07, "input_cost_per_token_above_200k_tokens": 2.5e-06,
                              "output_cost_per_token_above_200k_tokens": 1.5e-05,
                              "litellm_provider": "gemini", "mode": "chat"},
    "gpt-4o-audio-preview": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                             "litellm_provider": "openai", "mode": "chat"},
    # only resellers list these: the best reseller's row, under the undated id
    "anthropic.claude-opus-4-20250514-v1:0": {"input_cost_per_token": 1.5e-05, "output_cost_per_token": 7.5e-05,
                                              "litellm_provider": "bedrock_converse", "mode": "chat"},
    "vertex_ai/claude-opus-4@20250514": {"input_cost_per_token": 1.6e-05, "output_cost_per_token": 8e-05,
                                         "litellm_provider": "vertex_ai-anthropic_models", "mode": "chat"},
    "eu.anthropic.claude-3-5-haiku-20241022-v1:0": {"input_cost_per_token": 8.8e-07, "output_cost_per_token": 4.4e-06,
                                                    "litellm_provider": "bedrock", "mode": "chat"},
    "azure/o1-mini": {"input_cost_per_token": 1.1e-06, "output_cost_per_token": 4.4e-06,
                      "litellm_provider": "azure", "mode": "chat"},
    "azure/eu/gpt-5.6-terra": {"input_cost_per_token": 2.2e-06, "output_cost_per_token": 1.32e-05,
                               "litellm_provider": "azure", "mode": "chat"},
    "anthropic.claude-3-7-sonnet-20240620-v1:0": {"input_cost_per_token": 3.6e-06, "output_cost_per_token": 1.8e-05,
                                                  "litellm_provider": "bedrock", "mode": "chat"},
    "anthropic.claude-3-7-sonnet-20250219-v1:0": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                                                  "litellm_provider": "bedrock_converse", "mode": "chat"},
    "openai.gpt-oss-120b-1:0": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                                "litellm_provider": "bedrock_converse", "mode": "chat"},
    "mistral.mistral-large": {"input_cost_per_token": 4e-06, "output_cost_per_token": 1.2e-05,
                              "litellm_provider": "bedrock", "mode": "chat"},
}


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, PriceTable]:
    wheel = tmp_path / "litellm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("litellm/model_prices_and_context_window_backup.json", json.dumps(LITELLM))
    out = tmp_path / "prices.json"
    done = run_script(wheel, "--out", out, "--date", "2026-12-01")
    assert done.returncode == 0, done.stderr
    return wheel, PriceTable.from_file(parse_price_file(orjson.loads(out.read_bytes())), str(out))


def test_the_script_writes_a_dated_table_from_a_wheel(built: tuple[Path, PriceTable]) -> None:
    _, t = built
    assert t.date == "2026-12-01" and "litellm 9.9.9 (PyPI wheel)" in t.source
    assert set(t.models) == {"claude-opus-4-6", "claude-sonnet-4-5", "gpt-5.6-terra", "gemini-2.5-pro",
                             "claude-opus-4", "claude-3-7-sonnet", "o1-mini",
                             "claude-opus-4-7", "claude-3-haiku", "gpt-6.2-sol"}
    assert t.models["claude-3-haiku"].cache_read == D("0.03")  # corrected: Haiku 3 is not 0.1x
    assert t.models["gpt-6.2-sol"].override  # not in LiteLLM at all: from the model's page
    # the dated alias priced like its id is dropped; the spelling still resolves
    assert t.lookup("claude-opus-4-6-20260205")[0] == "claude-opus-4-6"  # type: ignore[index]


def test_the_script_applies_the_provider_pages_over_litellm(built: tuple[Path, PriceTable]) -> None:
    _, t = built
    opus = t.models["claude-opus-4-6"]
    assert opus.fast_multiplier == 6 and opus.override
    sonnet = t.models["claude-sonnet-4-5"]
    assert sonnet.long_context is not None and sonnet.long_context.threshold == 200_000
    assert (sonnet.cache_write_5m, sonnet.cache_write_1h, sonnet.cache_read) == (D("3.75"), D(6), D("0.3"))
    assert t.models["claude-3-7-sonnet"].input == 3  # the excluded row's $3.60 is not used


def test_the_script_takes_resellers_rows_only_for_what_no_first_party_row_prices(
    built: tuple[Path, PriceTable],
) -> None:
    _, t = built
    assert t.models["claude-opus-4"].input == 15  # Bedrock's bare id beats Vertex's $16
    assert t.lookup("claude-3-5-haiku") is None  # only a regional (surcharged) row: left unpriced
    assert t.lookup("gpt-oss-120b") is None and t.lookup("mistral-large") is None
    assert t.models["gpt-5.6-terra"].input == 2  # the first-party row, not Azure EU's
    assert t.lookup("gpt-4o-audio-preview") is None  # billed by audio tokens too


def test_the_script_derives_the_rates_litellm_leaves_out(built: tuple[Path, PriceTable]) -> None:
    _, t = built
    terra = t.models["gpt-5.6-terra"]
    assert (terra.cache_write_5m, terra.cache_write_1h, terra.fast_multiplier) == (D("2.5"), None, D(2))
    gemini = t.models["gemini-2.5-pro"]
    assert (gemini.cache_write_5m, gemini.long_context.threshold) == (D("1.25"), 200_000)  # type: ignore[union-attr]
    assert t.models["o1-mini"].cache_read == D("1.1")  # no cached rate listed: billed as input


def test_check_says_whether_the_table_is_current(built: tuple[Path, PriceTable], tmp_path: Path) -> None:
    wheel, _ = built
    out = tmp_path / "prices.json"
    assert run_script(wheel, "--out", out, "--check").returncode == 0
    out.write_text(out.read_text().replace('"input": "15"', '"input": "14"'))
    stale = run_script(wheel, "--out", out, "--check")
    assert stale.returncode == 1 and "run scripts/build_prices.py" in stale.stderr


def test_a_correction_of_a_row_the_file_lacks_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "model_prices.json"
    src.write_text(json.dumps({k: v for k, v in LITELLM.items() if k != "claude-opus-4-7"}))
    done = run_script(src, "--out", tmp_path / "prices.json")
    assert done.returncode != 0 and "override of claude-opus-4-7" in done.stderr
    assert not (tmp_path / "prices.json").exists()
