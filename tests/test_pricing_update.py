"""`costattr pricing update` against a real HTTP server on 127.0.0.1 serving LiteLLM-format files.

A good download replaces the stored table; every kind of bad one (HTTP error, timeout, invalid
JSON, nothing usable) raises a CostattrError with a hint and leaves the previous table in force.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from costattr.cli import cli, main
from costattr.errors import CostattrError
from costattr.models import Tokens
from costattr.pricing import embedded_table, load_table, stored_table_path
from costattr.pricing.table import parse_price_file
from costattr.pricing.update import build_price_file, convert_entry, dump_price_file, update_table

D = Decimal

# A small file in LiteLLM's format: first-party rows we keep, provider rows and non-chat rows we
# drop, and rows whose prices cannot be trusted.
LITELLM: dict[str, Any] = {
    "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                    "litellm_provider": "one of https://docs.litellm.ai/docs/providers", "mode": "one of: chat, ..."},
    "claude-sonnet-4-5-20250929": {
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
        "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
        "litellm_provider": "anthropic", "mode": "chat", "max_input_tokens": 1000000,
    },
    "claude-opus-4-6": {
        "input_cost_per_token": 5e-06, "output_cost_per_token": 2.5e-05,
        "cache_creation_input_token_cost": 6.25e-06, "cache_creation_input_token_cost_above_1hr": 1e-05,
        "cache_read_input_token_cost": 5e-07, "provider_specific_entry": {"fast": 6},
        "litellm_provider": "anthropic", "mode": "chat",
    },
    "claude-haiku-4-5": {"input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06,
                         "litellm_provider": "anthropic", "mode": "chat"},
    "gpt-7-codex-mini": {"input_cost_per_token": 2.5e-07, "output_cost_per_token": 2e-06,
                           "cache_read_input_token_cost": 2.5e-08, "litellm_provider": "openai", "mode": "responses"},
    "gpt-5.4": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 2.5e-07, "input_cost_per_token_above_272k_tokens": 5e-06,
                "output_cost_per_token_above_272k_tokens": 2.25e-05, "litellm_provider": "openai", "mode": "chat"},
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                    "litellm_provider": "openai", "mode": "chat"},
    # surcharged or differently billed copies of the same models: not first-party list prices
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0": {
        "input_cost_per_token": 3.3e-06, "output_cost_per_token": 1.65e-05,
        "litellm_provider": "bedrock_converse", "mode": "chat"},
    "vertex_ai/claude-sonnet-4-5@20250929": {"input_cost_per_token": 3.3e-06, "output_cost_per_token": 1.65e-05,
                                             "litellm_provider": "vertex_ai-anthropic_models", "mode": "chat"},
    "azure/gpt-5": {"input_cost_per_token": 1.375e-06, "output_cost_per_token": 1.1e-05,
                    "litellm_provider": "azure", "mode": "chat"},
    "text-embedding-3-small": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0.0,
                               "litellm_provider": "openai", "mode": "embedding"},
    # untrustworthy rows
    "claude-garbled": {"input_cost_per_token": "free", "output_cost_per_token": 1e-05,
                       "litellm_provider": "anthropic", "mode": "chat"},
    "gpt-absurd": {"input_cost_per_token": 5.0, "output_cost_per_token": 10.0,
                   "litellm_provider": "openai", "mode": "chat"},
    "gpt-free": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                 "litellm_provider": "openai", "mode": "chat"},
}
KEPT = {"claude-sonnet-4-5-20250929", "claude-opus-4-6", "claude-haiku-4-5", "gpt-7-codex-mini", "gpt-5.4",
        "gpt-4o-mini"}

ROUTES: dict[str, tuple[int, bytes, float]] = {
    "/prices.json": (200, json.dumps(LITELLM).encode(), 0),
    "/error": (500, b"Internal Server Error", 0),
    "/missing": (404, b"Not Found", 0),
    "/invalid": (200, b'{"claude-sonnet-4-5": {"input_cost_per_token": 3e-06,', 0),
    "/empty": (200, b"{}", 0),
    "/unusable": (200, json.dumps({k: LITELLM[k] for k in (
        "sample_spec", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "azure/gpt-5", "text-embedding-3-small",
        "claude-garbled", "gpt-absurd", "gpt-free")}).encode(), 0),
    "/list": (200, b"[1, 2, 3]", 0),
    "/slow": (200, json.dumps(LITELLM).encode(), 2.0),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, body, delay = ROUTES.get(self.path, (404, b"Not Found", 0))
        time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (the timeout test): nothing to tell it

    def log_message(self, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # The timeout test's client leaves before /slow answers; the broken pipe surfaces when the
        # handler's stream is flushed, seconds later, and socketserver would print it into
        # whatever test captures stderr then.
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def today() -> str:
    return datetime.now(UTC).date().isoformat()


# ---------------------------------------------------------------------------------------------
# A good download


def test_update_stores_the_table_and_load_table_uses_it(server: str) -> None:
    table = update_table(f"{server}/prices.json")
    path = stored_table_path()
    assert path.is_file() and table.origin == str(path)
    active = load_table()
    assert (active.origin, active.date) == (str(path), today())
    assert KEPT <= set(active.models)
    assert f"{server}/prices.json" in active.source
    # a model the embedded table does not know is now priced
    assert embedded_table().lookup("gpt-7-codex-mini") is None
    assert active.cost("gpt-7-codex-mini", Tokens(input=1_000_000, cache_read=1_000_000)) == D("0.275")


def test_only_first_party_chat_models_with_sound_prices_are_kept(server: str) -> None:
    models = update_table(f"{server}/prices.json").models
    dropped = set(LITELLM) - KEPT
    assert not dropped & set(models)


def test_per_token_floats_become_exact_per_million_decimals(server: str) -> None:
    sonnet = update_table(f"{server}/prices.json").models["claude-sonnet-4-5-20250929"]
    assert (sonnet.input, sonnet.output, sonnet.cache_write_5m, sonnet.cache_read) == (D(3), D(15), D("3.75"), D("0.3"))
    assert all(isinstance(v, Decimal) for v in (sonnet.input, sonnet.cache_read))
    # and they are written as plain decimals, never floats or exponents
    stored = stored_table_path().read_text()
    assert '"input": "3"' in stored and '"cache_read": "0.3"' in stored
    assert not re.search(r'"[0-9.]+[eE][-+]?[0-9]+"', stored)


def test_missing_cache_rates_are_derived_from_the_billing_rules(server: str) -> None:
    models = update_table(f"{server}/prices.json").models
    haiku = models["claude-haiku-4-5"]  # Anthropic, no cache fields: 1.25x / 2x / 0.1x input
    assert (haiku.cache_write_5m, haiku.cache_write_1h, haiku.cache_read) == (D("1.25"), D(2), D("0.1"))
    sonnet = models["claude-sonnet-4-5-20250929"]  # 1h = 2x input, in both tiers
    assert sonnet.cache_write_1h == D(6)
    assert sonnet.long_context is not None and sonnet.long_context.cache_write_1h == D(12)
    assert models["claude-opus-4-6"].cache_write_1h == D(10)  # stated, so taken as stated
    codex = models["gpt-7-codex-mini"]  # OpenAI: cached rate as stated; no write rate, so writes bill as input
    assert (codex.cache_read, codex.cache_write_5m, codex.cache_write_1h) == (D("0.025"), D("0.25"), D("0.25"))
    assert models["gpt-4o-mini"].cache_read == D("0.15")  # no cached rate listed: billed as input


def test_long_context_tiers_and_fast_multiplier_come_through(server: str) -> None:
    table = update_table(f"{server}/prices.json")
    sonnet = table.models["claude-sonnet-4-5-20250929"].long_context
    assert sonnet is not None
    assert (sonnet.threshold, sonnet.input, sonnet.output, sonnet.cache_write_5m, sonnet.cache_read) == \
        (200_000, D(6), D("22.5"), D("7.5"), D("0.6"))
    gpt = table.models["gpt-5.4"].long_context
    assert gpt is not None
    assert (gpt.threshold, gpt.input, gpt.cache_read) == (272_000, D(5), D("0.5"))  # cached rate scales too
    assert table.models["claude-opus-4-6"].fast_multiplier == D(6)
    # the row lacks a fast multiplier the embedded entry for the model has: kept, not lost
    assert table.models["gpt-5.4"].fast_multiplier == embedded_table().models["gpt-5.4"].fast_multiplier
    # and whole-request long-context pricing still applies to the fetched rates
    assert table.cost("claude-sonnet-4-5-20250929", Tokens(input=150_000, cache_read=150_000)) == D("0.99")


def test_embedded_models_the_download_does_not_cover_stay_priced(server: str) -> None:
    table = update_table(f"{server}/prices.json")
    assert table.lookup("claude-haiku-5-5") is not None
    assert table.lookup("claude-sonnet-4-5-20250929")[0] == "claude-sonnet-4-5-20250929"  # type: ignore[index]
    assert "from the embedded table" in table.source


def test_the_stored_file_round_trips() -> None:
    price_file = build_price_file(LITELLM, source="test", today="2026-11-24", fallback=embedded_table())
    assert parse_price_file(orjson.loads(dump_price_file(price_file))) == price_file


@pytest.mark.parametrize(("value", "per_million"), [
    (3e-06, "3"), (3.75e-06, "3.75"), (1.25e-07, "0.125"), (5e-09, "0.005"), (2.25e-05, "22.5"), ("3e-06", "3"),
])
def test_conversion_is_exact(value: Any, per_million: str) -> None:
    price = convert_entry("m", {"input_cost_per_token": value, "output_cost_per_token": value,
                                "litellm_provider": "openai", "mode": "chat"})
    assert price is not None and price.input == D(per_million)


@pytest.mark.parametrize("entry", [
    {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06},
    {"input_cost_per_token": True, "output_cost_per_token": 1e-06},
    {"input_cost_per_token": 1e-06},
    {"input_cost_per_token": float("nan"), "output_cost_per_token": 1e-06},
    {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "cache_read_input_token_cost": [1]},
    {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "input_cost_per_token_above_200k_tokens": 99.0},
])
def test_rows_with_untrustworthy_prices_are_left_out(entry: dict[str, Any]) -> None:
    assert convert_entry("claude-x", {**entry, "litellm_provider": "anthropic", "mode": "chat"}) is None


# ---------------------------------------------------------------------------------------------
# Bad downloads never replace the good table


BAD = {
    "/error": "HTTP 500",
    "/missing": "HTTP 404",
    "/invalid": "not valid JSON",
    "/empty": "no usable",
    "/unusable": "no usable",
    "/list": "not a LiteLLM price file",
}


@pytest.mark.parametrize("route", sorted(BAD))
def test_a_bad_download_keeps_the_previous_table(server: str, route: str) -> None:
    update_table(f"{server}/prices.json")
    before = stored_table_path().read_bytes()
    with pytest.raises(CostattrError, match=BAD[route]) as err:
        update_table(f"{server}{route}")
    assert err.value.hint and "unchanged" in err.value.hint
    assert stored_table_path().read_bytes() == before
    assert load_table().origin == str(stored_table_path())


def test_a_timeout_keeps_the_previous_table(server: str) -> None:
    update_table(f"{server}/prices.json")
    before = stored_table_path().read_bytes()
    started = time.monotonic()
    with pytest.raises(CostattrError, match="timed out") as err:
        update_table(f"{server}/slow", timeout=0.3)
    assert time.monotonic() - started < 1.9  # gave up at the timeout, did not wait for the server
    assert err.value.hint and "unchanged" in err.value.hint
    assert stored_table_path().read_bytes() == before


@pytest.mark.parametrize("url", ["not a url", "file:///etc/hostname"])
def test_a_url_httpx_cannot_fetch_is_an_explained_error(url: str) -> None:
    with pytest.raises(CostattrError, match="cannot fetch") as err:
        update_table(url)
    assert err.value.hint
    assert not stored_table_path().exists()


def test_an_unreachable_server_leaves_the_embedded_table_in_force() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CostattrError, match="cannot fetch") as err:
        update_table(f"http://127.0.0.1:{port}/prices.json", timeout=2)
    assert err.value.hint
    assert not stored_table_path().exists()
    assert load_table().origin == "embedded"


# ---------------------------------------------------------------------------------------------
# The command


def test_pricing_update_command_prints_a_summary(server: str) -> None:
    result = CliRunner().invoke(cli, ["pricing", "update", "--url", f"{server}/prices.json"])
    assert result.exit_code == 0, result.output
    n = len(load_table().models)
    assert result.output.strip() == \
        f"Price table updated: {n} models, dated {today()}, stored in {stored_table_path()}"
    shown = CliRunner().invoke(cli, ["pricing", "show"]).output
    assert f"Price table dated {today()} (stored update {stored_table_path()})" in shown


def test_pricing_update_failure_exits_1_with_a_hint(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pricing", "update", "--url", f"{server}/error"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "hint:" in err
    assert not stored_table_path().exists()
