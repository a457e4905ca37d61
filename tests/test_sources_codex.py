"""Codex rollouts: spend is what `total_token_usage` advanced by, once, whatever Codex re-emits,
replays (forks) or keeps twice (archived copies)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from costattr.models import Tokens
from costattr.scan import ScanResult, scan
from costattr.testing.transcripts import CodexRolloutWriter, dumps, tokens_by_session


@pytest.fixture
def codex_home(env_dirs: dict[str, Path]) -> Path:
    return env_dirs["codex"]


@pytest.fixture
def rollout(codex_home: Path) -> CodexRolloutWriter:
    w = CodexRolloutWriter(codex_home, cwd="/home/dev/src/acme-api", branch="fix/PROJ-150-expiry", seed=11)
    w.turn("gpt-5.1-codex")
    return w


def codex_scan() -> ScanResult:
    return scan(["codex"], use_cache=False)


def test_input_excludes_cached_and_output_includes_reasoning(rollout: CodexRolloutWriter) -> None:
    counted = rollout.token_count(input=12_659, cached=11_648, output=187, reasoning=64)
    [ev] = codex_scan().events
    assert ev.tokens == Tokens(input=1_011, output=187, cache_read=11_648, reasoning=64) == counted


def test_re_emitted_token_count_is_not_counted_again(rollout: CodexRolloutWriter) -> None:
    rollout.token_count(input=10_000, cached=8_000, output=100)
    rollout.reemit()  # same totals, same last_token_usage: a rate-limit refresh
    rollout.reemit()
    rollout.token_count(input=12_000, cached=9_000, output=200)
    result = codex_scan()
    assert sorted(e.tokens.output for e in result.events) == [100, 200]


def test_info_null_is_no_event(rollout: CodexRolloutWriter) -> None:
    rollout.rate_limit_only()
    rollout.token_count(output=42)
    rollout.rate_limit_only()
    result = codex_scan()
    assert [e.tokens.output for e in result.events] == [42]
    assert result.stats.skipped_lines == 0


def test_without_last_token_usage_the_totals_are_diffed(rollout: CodexRolloutWriter) -> None:
    a = rollout.token_count(input=10_000, cached=6_000, output=100, reasoning=10, with_last=False)
    b = rollout.token_count(input=15_000, cached=12_000, output=300, reasoning=50, with_last=False)
    rollout.reemit()
    got = sorted((e.tokens for e in codex_scan().events), key=lambda t: t.output)
    assert got == [a, b]


def test_session_meta_gives_cwd_and_branch_turn_context_the_model(rollout: CodexRolloutWriter) -> None:
    rollout.token_count(output=10)
    rollout.turn("gpt-5-codex")
    rollout.token_count(output=20)
    events = sorted(codex_scan().events, key=lambda e: e.tokens.output)
    assert [e.model for e in events] == ["gpt-5.1-codex", "gpt-5-codex"]
    assert {(e.session_id, e.cwd, e.git_branch, e.tool) for e in events} == {
        (rollout.session_id, "/home/dev/src/acme-api", "fix/PROJ-150-expiry", "codex")}


def test_without_a_turn_context_the_model_is_unknown_not_guessed(codex_home: Path) -> None:
    w = CodexRolloutWriter(codex_home, seed=2)
    w.token_count(output=5)
    [ev] = codex_scan().events
    assert ev.model == ""  # priced as unknown (unpriced), never silently as some gpt-5


def test_fork_replay_is_not_counted_twice(rollout: CodexRolloutWriter) -> None:
    parent_spend = [rollout.token_count(input=10_000, cached=5_000, output=100),
                    rollout.token_count(input=14_000, cached=9_000, output=200)]
    fork = rollout.fork()  # replays the parent's history, re-stamped to the fork's second
    fork.turn()
    fork_spend = fork.token_count(input=20_000, cached=15_000, output=300)
    spend = tokens_by_session(codex_scan().events)
    assert spend[rollout.session_id] == _sum(parent_spend)
    assert spend[fork.session_id] == fork_spend


def test_a_fork_whose_parent_file_is_gone_keeps_the_replayed_spend(rollout: CodexRolloutWriter) -> None:
    replayed = rollout.token_count(output=100)
    fork = rollout.fork()
    own = fork.token_count(output=7)
    rollout.path.unlink()  # the parent was deleted: the replay is the only record of that spend
    assert tokens_by_session(codex_scan().events) == {fork.session_id: _sum([replayed, own])}


def test_fork_of_a_fork_replays_once(rollout: CodexRolloutWriter) -> None:
    a = rollout.token_count(output=100)
    child = rollout.fork()
    b = child.token_count(output=200)
    grandchild = child.fork()
    c = grandchild.token_count(output=300)
    spend = tokens_by_session(codex_scan().events)
    assert spend == {rollout.session_id: a, child.session_id: b, grandchild.session_id: c}


def test_archived_copy_counts_once(rollout: CodexRolloutWriter) -> None:
    spent = rollout.token_count(output=100)
    archived = rollout.archive_copy()
    assert archived.parent.name == "archived_sessions"
    assert tokens_by_session(codex_scan().events) == {rollout.session_id: spent}


def test_unrelated_sessions_with_identical_totals_are_both_spend(codex_home: Path) -> None:
    """Two scripted runs of the same prompt can reach the same totals: not a copy of each other."""
    spent = []
    for seed in (1, 2):
        w = CodexRolloutWriter(codex_home, seed=seed)
        w.turn("gpt-5-codex")
        spent.append((w.session_id, w.token_count(input=10_500, cached=0, output=321, reasoning=64)))
    assert tokens_by_session(codex_scan().events) == dict(spent)


def test_spawned_subagent_thread_folds_into_its_parent(rollout: CodexRolloutWriter, codex_home: Path) -> None:
    own = rollout.token_count(output=100)
    child = CodexRolloutWriter(codex_home, seed=5, write_meta=False)
    meta = {"timestamp": "2026-10-01T09:05:00.000Z", "type": "session_meta", "payload": {
        "id": child.session_id, "cwd": rollout.cwd, "source": {"subagent": {"thread_spawn": {
            "parent_thread_id": rollout.session_id, "depth": 1}}}, "git": {"branch": "fix/PROJ-150-expiry"}}}
    child.raw(orjson.dumps(meta) + b"\n")
    child.turn()
    sub = child.token_count(output=50)
    assert tokens_by_session(codex_scan().events) == {rollout.session_id: _sum([own, sub])}


def test_damaged_token_counts_are_skipped_and_counted(rollout: CodexRolloutWriter) -> None:
    rollout.token_count(output=10)
    rollout.raw(dumps({"timestamp": "2026-10-02T10:00:00.000Z", "type": "event_msg", "payload": {
        "type": "token_count", "info": {"total_token_usage": {"input_tokens": "abc"}}}}) + b"\n")
    rollout.raw(dumps({"timestamp": "2026-10-02T10:00:00.000Z", "type": "event_msg", "payload": {
        "type": "token_count", "info": {"total_token_usage": {"input_tokens": -1, "output_tokens": 1}}}}) + b"\n")
    rollout.raw(b'{"timestamp":"2026-10-02T10:00:01.000Z","type":"event_msg","payload":{"type":"token_count","in\n')
    rollout.raw(dumps({"type": "event_msg", "payload": "token_count"}) + b"\n")
    rollout.token_count(output=20)
    rollout.raw(b'{"timestamp":"2026-10-02T10:00:02.000Z","type":"event_msg","payload":{"type":"token_count"')
    result = codex_scan()
    assert sorted(e.tokens.output for e in result.events) == [10, 20]
    assert result.stats.skipped_lines == 5  # 2 impossible counts, 1 broken, 1 odd payload, 1 torn tail


def test_codex_home_is_a_comma_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    homes = [tmp_path / "a", tmp_path / "b"]
    for i, home in enumerate(homes):
        w = CodexRolloutWriter(home, seed=i)
        w.turn()
        w.token_count(output=i + 1)
    monkeypatch.setenv("CODEX_HOME", ",".join(map(str, homes)))
    assert sorted(e.tokens.output for e in codex_scan().events) == [1, 2]


def _sum(parts: list[Tokens]) -> Tokens:
    total = Tokens()
    for t in parts:
        total.add(t)
    return total


def test_running_totals_beyond_a_billion_are_real(rollout: CodexRolloutWriter) -> None:
    """A long session's cumulative usage passes 10^9; each request is still ordinary."""
    rollout.total = [999_990_000, 900_000_000, 2_000_000, 500_000]  # hours of work already behind it
    spent = [rollout.token_count(input=200_000, cached=190_000, output=900, reasoning=300),
             rollout.token_count(input=210_000, cached=200_000, output=700, reasoning=100, with_last=False)]
    assert tokens_by_session(codex_scan().events) == {rollout.session_id: _sum(spent)}


def test_an_impossible_single_request_is_skipped_and_counted(rollout: CodexRolloutWriter) -> None:
    rollout.token_count(output=10)
    inp, cached, out, reasoning = rollout.total
    jumped = {"input_tokens": inp + 3 * 10**9, "cached_input_tokens": cached, "output_tokens": out,
              "reasoning_output_tokens": reasoning}  # +3 billion in one step, no last_token_usage
    rollout.raw(dumps({"timestamp": "2026-10-01T10:00:00.000Z", "type": "event_msg",
                       "payload": {"type": "token_count", "info": {"total_token_usage": jumped}}}) + b"\n")
    result = codex_scan()
    assert [e.tokens.output for e in result.events] == [10]
    assert result.stats.skipped_reasons == {"implausible token counts": 1}


# -- 2026 builds: thread_settings_applied, cache_write_input_tokens, token_usage_record -------------


def test_the_model_comes_from_thread_settings_when_no_turn_context_names_one(codex_home: Path) -> None:
    w = CodexRolloutWriter(codex_home, seed=21, cli_version="0.153.4")
    w.thread_settings("gpt-5.4")  # newer builds: no turn_context before the first request
    w.token_count(output=10)
    w.turn("gpt-5.1-codex")  # once a turn_context names a model, it is the one
    w.thread_settings("gpt-5.4")
    w.token_count(output=20)
    assert sorted((e.tokens.output, e.model) for e in codex_scan().events) == [(10, "gpt-5.4"), (20, "gpt-5.1-codex")]


def test_without_any_model_announcement_the_request_stays_unpriced(codex_home: Path) -> None:
    w = CodexRolloutWriter(codex_home, seed=22)
    w.token_count(output=10)
    [ev] = codex_scan().events
    assert ev.model == ""


def test_cache_writes_are_carved_out_of_input_and_priced_at_the_write_rate(codex_home: Path) -> None:
    from costattr.pipeline import priced_scan

    w = CodexRolloutWriter(codex_home, seed=23, cli_version="0.145.0")
    w.turn("gpt-5.6-terra")
    # the shape of openai/codex PR #33454's example: 317,792 input of which 280,060 read, 37,687 written
    counted = w.token_count(input=317_792, cached=280_060, cache_write=37_687, output=2_093, reasoning=494)
    w.token_count(input=1_000, cached=0, cache_write=0, output=10, reasoning=0)
    result, table = priced_scan(["codex"])
    first = max(result.events, key=lambda e: e.tokens.output)
    assert first.tokens == counted == Tokens(input=45, output=2_093, cache_write_5m=37_687, cache_read=280_060,
                                             reasoning=494)
    # no double count: the three parts add up to Codex's input_tokens
    assert first.tokens.input + first.tokens.cache_write_5m + first.tokens.cache_read == 317_792
    rates = table.lookup("gpt-5.6-terra")[1]  # type: ignore[index]
    tier = rates.long_context if first.tokens.prompt_total > rates.long_context.threshold else rates  # type: ignore[union-attr]
    expected = (45 * tier.input + 2_093 * tier.output + 37_687 * tier.cache_write_5m
                + 280_060 * tier.cache_read) / 1_000_000
    assert first.cost == expected and tier.cache_write_5m > tier.input


def test_a_build_that_reports_no_cache_writes_keeps_its_keys(codex_home: Path) -> None:
    """The dedup key is the running total without the write count: an archived copy written by
    a build that reports cache writes still collapses onto the original."""
    old = CodexRolloutWriter(codex_home, session_id="019c0000-0000-7000-8000-000000000001", seed=24)
    old.turn("gpt-5.1-codex")
    old.token_count(input=5_000, cached=1_000, output=50)
    new_build = old.path.read_bytes().replace(b'"cached_input_tokens":1000,',
                                              b'"cached_input_tokens":1000,"cache_write_input_tokens":0,')
    archived = codex_home / "archived_sessions" / old.path.name
    archived.parent.mkdir(parents=True)
    archived.write_bytes(new_build)
    assert [e.tokens.output for e in codex_scan().events] == [50]


def test_token_usage_record_repeats_the_usage_and_is_not_counted(codex_home: Path) -> None:
    w = CodexRolloutWriter(codex_home, seed=25, cli_version="0.153.4")
    w.turn("gpt-5.4")
    first = w.token_count(input=3, cached=0, output=3, reasoning=0, cache_write=0)
    w.usage_record("resp_8")
    w.usage_record("resp_8")  # re-written on resume
    second = w.token_count(input=3, cached=0, output=3, reasoning=0, cache_write=0)
    w.usage_record("resp_21")
    result = codex_scan()
    assert tokens_by_session(result.events) == {w.session_id: _sum([first, second])}
    assert result.stats.skipped_lines == 0
