"""The price table: matching, the billing rules (long context, cache TTLs, fast mode, Codex cached
input), cost modes, and `costattr pricing show`."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from costattr.cli import cli
from costattr.models import Tokens, UsageEvent
from costattr.pricing import embedded_table, load_table, price_events, stored_table_path
from costattr.pricing.table import ModelPrice, PriceTable

D = Decimal


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return embedded_table()


def event(model: str, tokens: Tokens, recorded: str | None = None, speed: str | None = None) -> UsageEvent:
    return UsageEvent(tool="claude", session_id="s", key=f"k-{model}", ts="2026-11-01T00:00:00Z", model=model,
                      cwd="/w", git_branch="main", tokens=tokens, speed=speed, recorded_cost=recorded)


# ---------------------------------------------------------------------------------------------
# Matching


@pytest.mark.parametrize(("name", "entry"), [
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("Claude-Sonnet-4-5", "claude-sonnet-4-5"),
    # Anthropic API via other providers' spellings
    ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("openrouter/anthropic/claude-opus-4.6", "claude-opus-4-6"),
    ("claude-opus-4.6", "claude-opus-4-6"),
    ("claude-opus-4.7-20260416", "claude-opus-4-7"),
    # Bedrock: regional and global inference profiles, bare model ids, LiteLLM's bedrock/ prefix
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
    ("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
    ("jp.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
    ("anthropic.claude-opus-4-6-v1:0", "claude-opus-4-6"),
    ("anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
    ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    # Vertex
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ("claude-opus-4-1@20250805", "claude-opus-4-1"),
    ("vertex_ai/claude-haiku-4-5@20251001", "claude-haiku-4-5"),
    # the 1M-context marker Claude Code puts on model ids
    ("claude-sonnet-4-5[1m]", "claude-sonnet-4-5"),
    ("claude-opus-4-6[1m]", "claude-opus-4-6"),
    ("claude-sonnet-4-5-20250929[1m]", "claude-sonnet-4-5"),
    # newer generations resolve to their own entries, not an older prefix
    ("claude-opus-5-5", "claude-opus-5-5"),
    ("claude-opus-5", "claude-opus-5"),
    ("claude-fable-5-1", "claude-fable-5-1"),
    ("claude-sonnet-5-5[1m]", "claude-sonnet-5-5"),
    # OpenAI
    ("gpt-5", "gpt-5"),
    ("gpt-5-2025-08-07", "gpt-5"),
    ("gpt-5.1", "gpt-5.1"),
    ("gpt-5.1-2025-11-13", "gpt-5.1"),
    ("gpt-5.1-codex", "gpt-5.1-codex"),
    ("openai/gpt-5.1-codex", "gpt-5.1-codex"),
    ("azure/gpt-5", "gpt-5"),
    ("openrouter/openai/gpt-5-codex", "gpt-5-codex"),
    ("gpt-5.2-2025-12-11", "gpt-5.2"),
    ("gpt-6.1-sol-2026-09-29", "gpt-6.1-sol"),
    ("gpt-5.1-codex-max", "gpt-5.1-codex-max"),  # its own entry, even where the price is the same
    ("azure/gpt-5.6-luna-2026-07-09", "gpt-5.6-luna"),
    ("us.openai.gpt-6-luna-v1:0", "gpt-6-luna"),
    # Google: the Gemini API, Vertex and OpenRouter spellings
    ("gemini-2.5-pro", "gemini-2.5-pro"),
    ("gemini/gemini-2.5-pro", "gemini-2.5-pro"),
    ("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro"),
    ("google/gemini-2.5-flash", "gemini-2.5-flash"),
    # retired Claude models priced from Bedrock and Vertex rows
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("claude-3-sonnet-20240229", "claude-3-sonnet"),
    ("vertex_ai/claude-3-haiku@20240307", "claude-3-haiku"),
    ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
])
def test_model_names_resolve_to_their_entry(table: PriceTable, name: str, entry: str) -> None:
    found = table.lookup(name)
    assert found is not None, name
    assert found[0] == entry


@pytest.mark.parametrize("name", [
    "claude-opus-4-9",  # a later Opus 4.x is not Opus 4
    "claude-opus-4-9-20270101",
    "claude-opus-5-1",  # nor is Opus 5.1 Opus 5
    "claude-fable-5-2",
    "claude-sonnet-4-7",
    "claude-haiku-4",
    "claude-opus-4-6-fast",
    "gpt-5-codex-mini",  # a smaller sibling is a different price, and this one has none
    "gpt-5.7",
    "gpt-6",
    "gpt-6.3-sol",
    "gemini-2.5-pro-ultra",
    "<synthetic>",
    "",
    "mistral-large",
])
def test_other_versions_and_unknown_models_are_unpriced(table: PriceTable, name: str) -> None:
    assert table.lookup(name) is None
    assert table.cost(name, Tokens(input=1000, output=1000)) is None


@pytest.mark.parametrize(("name", "sibling"), [
    ("gpt-5.1-codex-mini", "gpt-5.1-codex"),
    ("gpt-5-pro", "gpt-5"),
    ("gpt-5.4-pro", "gpt-5.4"),
    ("gpt-6-luna", "gpt-6-sol"),
    ("gemini-2.5-flash-lite", "gemini-2.5-flash"),
])
def test_a_sibling_resolves_to_its_own_entry_never_the_shorter_name(table: PriceTable, name: str, sibling: str) -> None:
    found = table.lookup(name)
    assert found is not None and found[0] == name
    assert found[1] != table.models[sibling]


def test_a_version_never_falls_back_to_an_older_entry(table: PriceTable) -> None:
    # Each of these has its own entry; a prefix match would have priced them as the older model.
    assert table.lookup("claude-sonnet-4-5-20250929")[0] == "claude-sonnet-4-5"  # type: ignore[index]
    assert table.lookup("gpt-5.1-codex")[0] == "gpt-5.1-codex"  # type: ignore[index]
    assert table.lookup("claude-opus-4-1")[0] == "claude-opus-4-1"  # type: ignore[index]


def test_the_most_specific_key_wins_whatever_the_file_order() -> None:
    a = ModelPrice(input=D(1), output=D(1), cache_write_5m=D(0), cache_read=D(0))
    b = ModelPrice(input=D(2), output=D(2), cache_write_5m=D(0), cache_read=D(0))
    for models in ({"claude-x-1": a, "claude-x-1-20250101": b}, {"claude-x-1-20250101": b, "claude-x-1": a}):
        t = PriceTable("d", "s", models)
        assert t.lookup("claude-x-1-20250101@") is None  # a stray character is not a date
        assert t.lookup("us.anthropic.claude-x-1-20250101-v1:0")[0] == "claude-x-1-20250101"  # type: ignore[index]
        assert t.lookup("claude-x-1-20990101")[0] == "claude-x-1"  # type: ignore[index]
    tie = {"claude-x-1": a, "anthropic/claude-x-1": b}
    assert PriceTable("d", "s", tie).lookup("claude-x-1-20250101") == \
        PriceTable("d", "s", dict(reversed(tie.items()))).lookup("claude-x-1-20250101")


# ---------------------------------------------------------------------------------------------
# Billing rules


def test_plain_request_cost(table: PriceTable) -> None:
    tokens = Tokens(input=1_000, output=2_000, cache_write_5m=3_000, cache_read=4_000)
    # 1000*3 + 2000*15 + 3000*3.75 + 4000*0.30, per million
    assert table.cost("claude-sonnet-4-5", tokens) == D("0.04545")


def test_one_hour_cache_writes_cost_twice_input(table: PriceTable) -> None:
    assert table.cost("claude-sonnet-4-5", Tokens(cache_write_1h=100_000)) == D("0.6")
    assert table.cost("claude-sonnet-4-5", Tokens(cache_write_5m=100_000)) == D("0.375")
    assert table.cost("claude-opus-4-6", Tokens(cache_write_1h=1_000_000)) == D(10)
    assert table.cost("claude-haiku-4-5", Tokens(cache_write_1h=1_000_000)) == D(2)


def test_anthropic_entries_follow_the_cache_multipliers(table: PriceTable) -> None:
    # Writes are 1.25x (5m) and 2x (1h) input on every Claude model and tier; a typo in the table
    # would break this. Reads vary (0.1x, or less on the newest models) and are checked per model.
    for key, price in table.models.items():
        if not key.startswith("claude-") or key == "claude-3-haiku":  # Haiku 3 had its own (0.30 / 0.03)
            continue
        for tier in filter(None, (price, price.long_context)):
            assert tier.cache_write_5m == tier.input * D("1.25"), key
            assert tier.cache_write_1h == tier.input * 2, key
            assert tier.cache_read <= tier.input * D("0.1"), key


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4"])
def test_long_context_prices_the_whole_request_above_200k(table: PriceTable, model: str) -> None:
    at_threshold = Tokens(input=100_000, cache_read=100_000, output=1_000)  # prompt = 200,000
    above = Tokens(input=100_001, cache_read=100_000, output=1_000)  # prompt = 200,001
    assert table.cost(model, at_threshold) == D("0.345")  # 100000*3 + 1000*15 + 100000*0.30
    # every token of the request, output included, at 6 / 22.50 / 0.60
    assert table.cost(model, above) == D("0.682506")


def test_long_context_threshold_counts_cache_writes_and_reads(table: PriceTable) -> None:
    tokens = Tokens(input=1, cache_write_5m=150_000, cache_write_1h=50_000)
    assert table.cost("claude-sonnet-4-5", tokens) == D("1.725006")  # 1*6 + 150000*7.50 + 50000*12


def test_long_context_is_per_request_not_per_token_type(table: PriceTable) -> None:
    # ccusage applies 200k to each token type, so 150k input + 150k cache read would get no
    # premium there (0.495). Anthropic bills the whole 300k-token request at the higher rates.
    tokens = Tokens(input=150_000, cache_read=150_000)
    assert table.cost("claude-sonnet-4-5", tokens) == D("0.99")


def test_models_without_a_tier_are_flat_across_the_window(table: PriceTable) -> None:
    assert table.cost("claude-sonnet-4-6", Tokens(input=900_000)) == D("2.7")
    assert table.cost("claude-opus-4-6", Tokens(input=900_000)) == D("4.5")


def test_haiku_5_5_prompt_tier_starts_above_100k(table: PriceTable) -> None:
    assert table.cost("claude-haiku-5-5", Tokens(input=100_000, output=1_000)) == D("0.0105")
    assert table.cost("claude-haiku-5-5", Tokens(input=100_001, output=1_000)) == D("0.0525005")


def test_openai_long_context_above_272k(table: PriceTable) -> None:
    below = Tokens(input=100_000, cache_read=172_000, output=1_000)
    above = Tokens(input=100_000, cache_read=172_001, output=1_000)
    assert table.cost("gpt-5.4", below) == D("0.308")  # 100000*2.5 + 172000*0.25 + 1000*15
    assert table.cost("gpt-5.4", above) == D("0.6085005")  # 100000*5 + 172001*0.5 + 1000*22.5


def test_fast_mode_multiplies_the_request(table: PriceTable) -> None:
    tokens = Tokens(input=1_000, output=1_000, cache_read=10_000)
    standard = table.cost("claude-opus-4-6", tokens)
    assert standard == D("0.035")
    assert table.cost("claude-opus-4-6", tokens, speed="fast") == D("0.21")  # 6x
    assert table.cost("claude-opus-4-6", tokens, speed="standard") == standard
    assert table.cost("claude-opus-4-8", tokens, speed="fast") == D("0.07")  # 2x
    # a model with no fast mode is billed at its standard rate
    assert table.cost("claude-sonnet-4-5", tokens, speed="fast") == table.cost("claude-sonnet-4-5", tokens)


def test_fast_mode_applies_on_top_of_the_long_context_tier(table: PriceTable) -> None:
    tokens = Tokens(input=300_000)
    assert table.cost("gpt-5.4", tokens, speed="fast") == D(3)  # 300000*5 x2


def test_codex_cached_input_is_priced_at_the_cached_rate_without_write_charge(table: PriceTable) -> None:
    # A Codex token_count: input_tokens 12659 of which cached 11648, output 187 (64 reasoning).
    tokens = Tokens(input=12_659 - 11_648, cache_read=11_648, output=187, reasoning=64)
    # 1011*1.25 + 11648*0.125 + 187*10, per million; reasoning is already inside output
    assert table.cost("gpt-5.1-codex", tokens) == D("0.00458975")
    # no write surcharge before GPT-5.6: a token Codex reports as written costs what input does
    assert table.cost("gpt-5.1-codex", Tokens(cache_write_5m=1_000_000)) == table.cost(
        "gpt-5.1-codex", Tokens(input=1_000_000)) == D("1.25")


def test_a_rate_the_provider_does_not_publish_leaves_the_request_unpriced(table: PriceTable) -> None:
    assert table.cost("gpt-6-sol", Tokens(input=100_000, cache_write_5m=100_000)) == D("0.45")
    assert table.cost("gpt-6-sol", Tokens(cache_write_1h=100_000)) == D("0.5")  # the 12-hour write, listed
    # a write rate with no longer-retention rate listed: a request that needs it is not guessed
    assert table.cost("gpt-daybreak-blue-latest", Tokens(input=1_000, cache_write_1h=1)) is None


def test_money_is_decimal(table: PriceTable) -> None:
    cost = table.cost("claude-haiku-4-5", Tokens(input=1, output=1))
    assert isinstance(cost, Decimal)
    assert cost == D("0.000006")


# ---------------------------------------------------------------------------------------------
# price_events: modes and discount

SONNET = Tokens(input=1_000, output=1_000)  # 0.018 at list price


def test_auto_mode_recorded_cost_wins_and_is_authoritative(table: PriceTable) -> None:
    recorded, computed = event("claude-sonnet-4-5", SONNET, recorded="0.12"), event("claude-sonnet-4-5", SONNET)
    price_events([recorded, computed], table, "auto")
    assert (recorded.cost, recorded.cost_source) == (D("0.12"), "authoritative")
    assert (computed.cost, computed.cost_source) == (D("0.018"), "estimated")


def test_auto_mode_recorded_cost_prices_even_an_unknown_model(table: PriceTable) -> None:
    ev = event("claude-instant-1", SONNET, recorded="0.5")
    price_events([ev], table, "auto")
    assert (ev.cost, ev.cost_source) == (D("0.5"), "authoritative")


def test_a_garbled_recorded_cost_falls_back_to_the_tokens(table: PriceTable) -> None:
    evs = [event("claude-sonnet-4-5", SONNET, recorded=bad) for bad in ("n/a", "NaN", "-1")]
    price_events(evs, table, "auto")
    assert [(e.cost, e.cost_source) for e in evs] == [(D("0.018"), "estimated")] * 3


def test_calculate_mode_ignores_recorded_costs(table: PriceTable) -> None:
    ev = event("claude-sonnet-4-5", SONNET, recorded="0.12")
    price_events([ev], table, "calculate")
    assert (ev.cost, ev.cost_source) == (D("0.018"), "estimated")


def test_display_mode_shows_only_recorded_costs(table: PriceTable) -> None:
    recorded, other = event("claude-sonnet-4-5", SONNET, recorded="0.12"), event("claude-sonnet-4-5", SONNET)
    price_events([recorded, other], table, "display")
    assert (recorded.cost, recorded.cost_source) == (D("0.12"), "authoritative")
    assert other.cost is None and not other.priced


def test_unknown_model_stays_unpriced_never_zero(table: PriceTable) -> None:
    evs = [event("claude-opus-4-9", SONNET), event("<synthetic>", SONNET), event("", SONNET)]
    price_events(evs, table, "auto", discount=D("0.5"))
    assert [e.cost for e in evs] == [None, None, None]
    assert not any(e.priced for e in evs)


def test_fast_speed_on_the_event_is_billed(table: PriceTable) -> None:
    ev = event("claude-opus-4-6", Tokens(input=1_000, output=1_000), speed="fast")
    price_events([ev], table, "calculate")
    assert ev.cost == D("0.18")


def test_discount_scales_estimates_but_not_recorded_costs(table: PriceTable) -> None:
    estimated, recorded = event("claude-sonnet-4-5", SONNET), event("claude-sonnet-4-5", SONNET, recorded="0.12")
    price_events([estimated, recorded], table, "auto", discount=D("0.25"))
    assert estimated.cost == D("0.0135")
    assert recorded.cost == D("0.12")


@pytest.mark.parametrize("bad", [D("-0.1"), D("1.5")])
def test_discount_outside_zero_to_one_is_refused(table: PriceTable, bad: Decimal) -> None:
    with pytest.raises(ValueError, match="discount"):
        price_events([event("claude-sonnet-4-5", SONNET)], table, "auto", discount=bad)


# ---------------------------------------------------------------------------------------------
# Which table is in force


def test_embedded_table_is_dated_and_in_force_without_an_update() -> None:
    t = load_table()
    assert t.origin == "embedded"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", t.date)


def _store(text: str) -> Path:
    path = stored_table_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_valid_stored_table_is_used() -> None:
    path = _store(json.dumps({"date": "2026-12-01", "models": {
        "claude-test-1": {"input": "1", "output": "2", "cache_write_5m": "1.25", "cache_read": "0.1"}}}))
    t = load_table()
    assert (t.date, t.origin) == ("2026-12-01", str(path))
    assert t.cost("claude-test-1", Tokens(output=1_000_000)) == D(2)


@pytest.mark.parametrize("text", ["{", "[]", '{"date": "x", "models": {}}',
                                  '{"date": "x", "models": {"m": {"input": "-1", "output": "1", '
                                  '"cache_write_5m": "0", "cache_read": "0"}}}'])
def test_a_damaged_stored_table_never_stands_in(text: str) -> None:
    _store(text)
    assert load_table().origin == "embedded"


# ---------------------------------------------------------------------------------------------
# costattr pricing show


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["pricing", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_show_prints_the_dated_table_within_80_columns() -> None:
    out = run("show")
    assert f"Price table dated {embedded_table().date} (embedded in costattr)" in out
    assert "claude-sonnet-4-5" in out and "gpt-5.1-codex" in out and "prompt>200k" in out
    assert "\x1b[" not in out  # NO_COLOR
    assert max(len(line) for line in out.splitlines()) <= 80


def test_show_model_says_which_entry_a_name_resolves_to() -> None:
    out = run("show", "--model", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert "us.anthropic.claude-sonnet-4-5-20250929-v1:0 resolves to claude-sonnet-4-5" in out
    assert "22.50" in out  # its long-context tier
    assert "claude-opus" not in out


def test_show_model_says_unpriced() -> None:
    out = run("show", "--model", "claude-opus-4-9[1m]")
    assert "claude-opus-4-9[1m]: unpriced" in out


def test_show_json() -> None:
    data = json.loads(run("show", "--format", "json"))
    assert data["origin"] == "embedded" and data["date"] == embedded_table().date
    sonnet = data["models"]["claude-sonnet-4-5"]
    assert (sonnet["input"], sonnet["cache_write_1h"], sonnet["long_context"]["threshold"]) == (3.0, 6.0, 200_000)
    assert data["models"]["claude-opus-4-6"]["fast_multiplier"] == 6.0
    one = json.loads(run("show", "--format", "json", "--model", "claude-opus-4-6[1m]"))
    assert (one["match"], list(one["models"])) == ("claude-opus-4-6", ["claude-opus-4-6"])
    none = json.loads(run("show", "--format", "json", "--model", "gpt-9"))
    assert (none["match"], none["models"]) == (None, {})


def test_show_names_a_stored_table_by_its_path() -> None:
    path = _store(json.dumps({"date": "2026-12-01", "source": "test", "models": {
        "gpt-5": {"input": "1.25", "output": "10", "cache_write_5m": "0", "cache_read": "0.125"}}}))
    out = run("show")
    assert f"Price table dated 2026-12-01 (stored update {path})" in out


def test_every_command_has_help_with_an_example() -> None:
    for args in (["pricing"], ["pricing", "show"], ["pricing", "update"]):
        out = CliRunner().invoke(cli, [*args, "--help"]).output
        assert "Example:" in out, args
