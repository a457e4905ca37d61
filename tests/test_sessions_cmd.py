"""`costattr sessions`: the JSON contract of DESIGN.md, the 80-column table, and honest notes."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from costattr.cli import cli
from costattr.testing.corpus import list_price
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter

TOKEN_KEYS = {"input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "reasoning"}
SESSION_KEYS = {"session_id", "tool", "cwd", "first_ts", "last_ts", "requests", "models", "tokens", "cost_usd",
                "unpriced_requests", "branches"}
SONNET = "claude-sonnet-4-5-20250929"


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["sessions", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def run_json() -> dict[str, Any]:
    return orjson.loads(run("--format", "json").stdout)  # type: ignore[no-any-return]


@pytest.fixture
def two_sessions(env_dirs: dict[str, Path]) -> tuple[ClaudeSessionWriter, CodexRolloutWriter]:
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/home/dev/src/a-rather-long-project-name",
                            branch="feature/PROJ-142-token-refresh", seed=1)
    w.response(SONNET, output=300, cache_read=40_000, cache_write_1h=2_000)
    w.subagent().response("claude-haiku-4-5-20251001", output=100, cache_read=8_000)
    w.response(SONNET, output=50, cache_read=42_000, branch="main")
    c = CodexRolloutWriter(env_dirs["codex"], cwd="/home/dev/src/api", branch="main", seed=2)
    c.turn("gpt-5.1-codex")
    c.token_count(input=20_000, cached=15_000, output=500, reasoning=120)
    return w, c


def test_json_contract(two_sessions: tuple[ClaudeSessionWriter, CodexRolloutWriter]) -> None:
    data = run_json()
    assert {"sessions", "totals", "skipped_lines"} <= data.keys()
    assert isinstance(data["skipped_lines"], int)
    assert {"tokens", "cost_usd", "sessions"} <= data["totals"].keys()
    assert set(data["totals"]["tokens"]) == TOKEN_KEYS
    assert data["totals"]["sessions"] == len(data["sessions"]) == 2
    for s in data["sessions"]:
        assert SESSION_KEYS <= s.keys()
        assert set(s["tokens"]) == TOKEN_KEYS
        assert s["tool"] in ("claude", "codex")
        assert s["first_ts"].endswith("Z") and s["last_ts"].endswith("Z") and s["first_ts"] <= s["last_ts"]
        assert isinstance(s["cost_usd"], float) and isinstance(s["requests"], int)
        for branch in s["branches"].values():
            assert set(branch) >= {"tokens", "cost_usd"} and set(branch["tokens"]) == TOKEN_KEYS


def test_figures_fold_subagents_and_split_branches(
    two_sessions: tuple[ClaudeSessionWriter, CodexRolloutWriter]
) -> None:
    w, c = two_sessions
    by_id = {s["session_id"]: s for s in run_json()["sessions"]}
    claude = by_id[w.session_id]
    assert claude["requests"] == 3  # the subagent's request is in its parent session
    assert claude["models"] == [SONNET, "claude-haiku-4-5-20251001"]
    assert claude["cwd"] == "/home/dev/src/a-rather-long-project-name"
    assert set(claude["branches"]) == {"feature/PROJ-142-token-refresh", "main"}
    assert claude["branches"]["main"]["tokens"]["output"] == 50
    codex = by_id[c.session_id]
    assert codex["tokens"] == {"input": 5_000, "output": 500, "cache_write_5m": 0, "cache_write_1h": 0,
                               "cache_read": 15_000, "reasoning": 120}


def test_unknown_model_is_unpriced_never_zero(env_dirs: dict[str, Path]) -> None:
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=4)
    known = w.response(SONNET, output=200, cache_read=10_000)
    w.response("acme-coder-1", output=5_000, cache_read=90_000)
    [s] = run_json()["sessions"]
    assert (s["requests"], s["unpriced_requests"]) == (2, 1)
    expected = list_price(SONNET, known.tokens)
    assert expected is not None
    assert Decimal(str(s["cost_usd"])) == expected.quantize(Decimal("1e-10"))  # only the priced request


def test_table_fits_80_columns_without_colour(two_sessions: object) -> None:
    out = run().stdout
    assert out.strip()
    assert "\x1b[" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert re.search(r"Total", out)


def test_table_shows_every_cost_cell_whole(two_sessions: object, env_dirs: dict[str, Path]) -> None:
    ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=8).response("acme-coder-1", output=10)
    rows = run().stdout.splitlines()
    assert rows[0].rstrip().endswith("Cost")
    cells = [r for r in rows if re.match(r"^[0-9a-f]{8} ", r)]
    assert len(cells) == 3
    assert all(re.search(r"\$[\d,]+\.\d{2,4}( \+\d+\?)?\s*$", r) for r in cells), cells
    assert any(r.rstrip().endswith("+1?") for r in cells)


def test_missing_roots_say_where_they_looked_and_exit_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "no-claude"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "no-codex"))
    result = run("--format", "json")
    data = orjson.loads(result.stdout)
    assert data["sessions"] == [] and data["totals"]["sessions"] == 0 and data["skipped_lines"] == 0
    assert "No transcripts found" in result.stderr
    assert str(tmp_path / "no-claude" / "projects") in result.stderr
    assert str(tmp_path / "no-codex" / "sessions") in result.stderr
    assert "No sessions found" in run().stdout


def test_skipped_lines_are_counted_and_explained(env_dirs: dict[str, Path]) -> None:
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=5)
    w.response(output=10, blocks=1)
    w.raw(b'{"type":"assistant","message":{"usage":{"input_tokens":\n')
    w.response(output=11, blocks=1, torn=True)
    result = run("--format", "json")
    assert orjson.loads(result.stdout)["skipped_lines"] == 2
    assert "Skipped 2 unreadable line(s)" in result.stderr
    verbose = CliRunner().invoke(cli, ["-v", "sessions", "--format", "json"])
    assert w.path.name in verbose.stderr  # -v says where


# -- unpriced requests are named; Claude Code's own session total --------------------------------


def test_unpriced_requests_are_named_in_json_and_on_stderr(env_dirs: dict[str, Path]) -> None:
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=31)
    w.response(SONNET, output=10)
    w.response("acme-coder-1", output=20)
    w.response("acme-coder-1", output=30)
    c = CodexRolloutWriter(env_dirs["codex"], seed=32)  # no turn_context: no model recorded
    c.token_count(output=40)
    result = run("--format", "json")
    data = orjson.loads(result.stdout)
    by_tool = {s["tool"]: s for s in data["sessions"]}
    assert by_tool["claude"]["unpriced_models"] == {"acme-coder-1": 2}
    assert by_tool["codex"]["unpriced_models"] == {"(no model recorded)": 1}
    assert data["totals"]["unpriced_models"] == {"(no model recorded)": 1, "acme-coder-1": 2}
    assert data["totals"]["unpriced_requests"] == 3
    assert ("+? 3 requests of unknown models are not priced: acme-coder-1 (2), (no model recorded) (1)"
            in result.stderr)


def test_a_model_name_cannot_write_control_characters_to_the_terminal(env_dirs: dict[str, Path]) -> None:
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=33)
    w.response("evil\x1b[2Jmodel", output=10)
    stderr = run("--format", "json").stderr
    assert "\x1b" not in stderr and "evil\\x1b[2Jmodel (1)" in stderr


@pytest.fixture
def recorded_session(env_dirs: dict[str, Path]) -> ClaudeSessionWriter:
    """A session whose lines price at a known figure, and whose cost-state says more."""
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/home/dev/src/app", branch="main", seed=34)
    w.response(SONNET, input=1_000, output=1_000, blocks=1)  # 0.003 + 0.015 = 0.018
    w.response(SONNET, input=2_000, output=1_000, blocks=1, branch="feature/x")  # 0.006 + 0.015 = 0.021
    w.cost_state(0.03)
    w.cost_state(0.0523)  # the latest (largest) snapshot: includes an auxiliary Haiku call
    return w


def test_the_recorded_session_total_is_the_cost_and_the_residual_its_own_field(
    recorded_session: ClaudeSessionWriter,
) -> None:
    data = run_json()
    [s] = data["sessions"]
    assert s["cost_usd"] == 0.0523 and s["cost_source"] == "authoritative"
    assert s["residual_usd"] == 0.0133  # 0.0523 - (0.018 + 0.021): within the session, on no line
    # branches stay per line: the residual is on none of them
    assert {b: v["cost_usd"] for b, v in s["branches"].items()} == {"main": 0.018, "feature/x": 0.021}
    assert (data["totals"]["cost_usd"], data["totals"]["residual_usd"]) == (0.0523, 0.0133)


def test_the_residual_is_a_row_of_the_table(recorded_session: ClaudeSessionWriter) -> None:
    out = run().stdout
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(recorded_session.session_id[:8]))
    assert lines[row].rstrip().endswith("$0.05")  # no ~: Claude Code's own figure
    assert "↳ residual" in lines[row + 1] and lines[row + 1].rstrip().endswith("+$0.01")
    assert "within session, not attributable to a line" in " ".join(out.split())
    assert max(len(line) for line in lines) <= 80


def test_calculate_mode_ignores_the_recorded_total(recorded_session: ClaudeSessionWriter) -> None:
    [s] = orjson.loads(run("--format", "json", "--cost-mode", "calculate").stdout)["sessions"]
    assert (s["cost_usd"], s["cost_source"], s["residual_usd"]) == (0.039, "estimated", None)
    assert "residual" not in run("--cost-mode", "calculate").stdout


def test_a_session_cut_by_the_date_range_has_no_recorded_total(env_dirs: dict[str, Path]) -> None:
    from datetime import UTC, datetime

    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=35, start=datetime(2026, 10, 1, 23, 59, tzinfo=UTC))
    w.response(SONNET, input=1_000, output=1_000, blocks=1)
    w.clock.advance(120)  # the next request is on the next day
    w.response(SONNET, input=1_000, output=1_000, blocks=1)
    w.cost_state(0.05)
    [day] = orjson.loads(run("--format", "json", "--since", "2026-10-02", "--tz", "UTC").stdout)["sessions"]
    assert (day["cost_usd"], day["cost_source"], day["requests"]) == (0.018, "estimated", 1)
    [whole] = orjson.loads(run("--format", "json", "--since", "2026-10-01", "--tz", "UTC").stdout)["sessions"]
    assert (whole["cost_usd"], whole["cost_source"]) == (0.05, "authoritative")
