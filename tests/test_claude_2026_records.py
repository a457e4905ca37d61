"""Claude Code's 2026 records (more-formats.md §10): `cost-state` snapshots, `pr-link` records,
compaction iterations in `usage.iterations[]`, and `worktree-state`.

Each test writes a small transcript with the realistic writer and reads it with the real scan."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from costattr.models import PrLink, SessionCost, Tokens
from costattr.scan import ScanResult, scan
from costattr.testing.transcripts import ClaudeSessionWriter, usage_iteration

HAIKU = "claude-haiku-4-5-20251001"


@pytest.fixture
def writer(env_dirs: dict[str, Path]) -> ClaudeSessionWriter:
    return ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/home/dev/src/app", branch="main", seed=14)


def cold() -> ScanResult:
    return scan(["claude"], use_cache=False)


# -- cost-state ----------------------------------------------------------------------------------


def test_the_largest_cost_state_snapshot_is_the_session_cost(writer: ClaudeSessionWriter) -> None:
    writer.response(output=10)
    writer.cost_state(0.0118, {HAIKU: {"inputTokens": 12, "outputTokens": 40, "costUSD": 0.0118}})
    writer.response(output=20)
    writer.cost_state(0.0319, {HAIKU: {"inputTokens": 368, "outputTokens": 516, "thinkingTokens": 426,
                                       "cacheReadInputTokens": 106786, "cacheCreationInputTokens": 9149,
                                       "webSearchRequests": 0, "costUSD": 0.0319}})
    writer.cost_state(0.0205)  # an older snapshot re-written after a resume: not the latest figure
    for result in (scan(), scan(), cold()):  # parsed, from the cache, and cold
        assert result.session_costs == {writer.session_id: SessionCost(
            writer.session_id, Decimal("0.0319"), {HAIKU: Decimal("0.0319")}, False,
            {"inputTokens": 368, "outputTokens": 516, "thinkingTokens": 426, "cacheReadInputTokens": 106786,
             "cacheCreationInputTokens": 9149})}


def test_cost_states_are_per_session_and_a_subagent_file_adds_none(writer: ClaudeSessionWriter,
                                                                    env_dirs: dict[str, Path]) -> None:
    writer.response(output=10)
    writer.subagent().response(HAIKU, output=5)
    writer.cost_state(1.25, unknown=True)
    other = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/home/dev/src/other", seed=15)
    other.response(output=30)
    other.cost_state(0.5)
    costs = cold().session_costs
    assert {sid: (c.cost, c.has_unknown_model_cost) for sid, c in costs.items()} == {
        writer.session_id: (Decimal("1.25"), True), other.session_id: (Decimal("0.5"), False)}


def test_a_cost_state_that_is_not_a_price_is_skipped_and_counted(writer: ClaudeSessionWriter) -> None:
    writer.response(output=10)
    writer.cost_state(float("inf"))  # not a finite price (the writer puts null)
    writer.file.line({"type": "cost-state", "sessionId": writer.session_id, "totalCostUSD": "0.5"})
    writer.file.line({"type": "cost-state", "sessionId": writer.session_id, "totalCostUSD": -1})
    writer.file.flush()
    result = cold()
    assert result.session_costs == {}
    assert result.stats.skipped_lines == 3
    assert [e.tokens.output for e in result.events] == [10]


def test_the_cwd_filter_keeps_only_the_costs_of_sessions_it_keeps(writer: ClaudeSessionWriter,
                                                                   env_dirs: dict[str, Path]) -> None:
    writer.response(output=10)
    writer.cost_state(0.25)
    other = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/elsewhere", seed=16)
    other.response(output=30)
    other.cost_state(0.5)
    kept = scan(["claude"], cwd_filter=lambda cwd: cwd.startswith("/home/dev/src/app"))
    assert list(kept.session_costs) == [writer.session_id]


# -- pr-link -------------------------------------------------------------------------------------


def test_pr_links_are_deduplicated_per_session_earliest_first(writer: ClaudeSessionWriter) -> None:
    writer.response(output=10)
    writer.pr_link(142, ts="2026-10-01T09:30:00.000Z")
    writer.pr_link(142, ts="2026-10-01T11:00:00.000Z")  # re-emitted on resume
    writer.pr_link(142, ts="2026-10-01T09:10:00.000Z")  # ... and an earlier copy written later
    writer.file.line({"type": "pr-link", "sessionId": writer.session_id, "prNumber": 7,
                      "prUrl": "https://github.com/acme/lib/pull/7", "prRepository": "acme/lib",
                      "timestamp": "2026-10-01T10:00:00.000Z", "gitBranch": "feature/x", "cwd": "/home/dev/src/lib"})
    writer.file.flush()
    resumed = writer.resume_copy()  # a verbatim copy of the file, then its own re-emitted link
    resumed.pr_link(142, ts="2026-10-02T08:00:00.000Z")
    for result in (scan(), scan(), cold()):
        assert result.pr_links == [
            PrLink(writer.session_id, 142, "https://github.com/acme/app/pull/142", "acme/app",
                   "2026-10-01T09:10:00.000Z"),
            PrLink(writer.session_id, 7, "https://github.com/acme/lib/pull/7", "acme/lib",
                   "2026-10-01T10:00:00.000Z", "feature/x", "/home/dev/src/lib"),
            PrLink(resumed.session_id, 142, "https://github.com/acme/app/pull/142", "acme/app",
                   "2026-10-02T08:00:00.000Z"),
        ]


def test_a_pr_link_without_a_url_is_skipped_and_counted(writer: ClaudeSessionWriter) -> None:
    writer.response(output=10)
    writer.file.line({"type": "pr-link", "sessionId": writer.session_id, "prNumber": 3})
    writer.file.flush()
    result = cold()
    assert result.pr_links == [] and result.stats.skipped_reasons == {"pr-link without a prUrl": 1}


# -- usage.iterations[] ----------------------------------------------------------------------------


def test_compaction_iterations_are_added_to_the_top_level_usage(writer: ClaudeSessionWriter) -> None:
    writer.response(input=2, output=900, cache_read=80_000, iterations=[
        usage_iteration("compaction", input=150_000, output=3_000),
        usage_iteration("message", input=2, output=900, cache_read=80_000),
    ], blocks=1)
    [ev] = cold().events
    assert ev.tokens == Tokens(input=150_002, output=3_900, cache_read=80_000)


def test_message_iterations_are_already_in_the_top_level_usage(writer: ClaudeSessionWriter) -> None:
    writer.response(input=2, output=900, cache_write_5m=3_356, cache_read=91_209, iterations=[
        usage_iteration("message", input=2, output=900, cache_write_5m=3_356, cache_read=91_209)], blocks=1)
    writer.response(input=5, output=10, iterations=[], blocks=1)
    assert sorted((e.tokens.input, e.tokens.output) for e in cold().events) == [(2, 900), (5, 10)]


def test_a_top_level_that_already_includes_the_compaction_is_not_added_twice(writer: ClaudeSessionWriter) -> None:
    writer.response(input=150_002, output=3_900, iterations=[
        usage_iteration("compaction", input=150_000, output=3_000),
        usage_iteration("message", input=2, output=900)], blocks=1)
    [ev] = cold().events
    assert (ev.tokens.input, ev.tokens.output) == (150_002, 3_900)


def test_a_malformed_iteration_makes_the_line_implausible(writer: ClaudeSessionWriter) -> None:
    writer.response(output=10, iterations=[{"type": "compaction", "input_tokens": -5, "output_tokens": 1,
                                            "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}],
                    blocks=1)
    result = cold()
    assert result.events == [] and result.stats.skipped_reasons == {"implausible token counts": 1}


# -- worktree-state --------------------------------------------------------------------------------


def test_worktree_branch_wins_over_the_lines_git_branch_inside_the_worktree(writer: ClaudeSessionWriter) -> None:
    writer.response(output=1)  # before the worktree: main
    wt = "/home/dev/src/app/.claude/worktrees/fix-expiry"
    writer.worktree_state("worktree-fix-expiry", wt)
    writer.cwd = wt  # Claude Code moves into the worktree; gitBranch still says "main" (#53278)
    writer.response(output=2)
    writer.cwd = "/home/dev/src/app"  # a line outside the worktree keeps its own branch
    writer.response(output=3, branch="develop")
    writer.cwd = wt
    writer.worktree_state(None)  # ExitWorktree
    writer.response(output=4)
    got = sorted((e.tokens.output, e.git_branch) for e in cold().events)
    assert got == [(1, "main"), (2, "worktree-fix-expiry"), (3, "develop"), (4, "main")]


def test_a_worktree_state_without_a_path_applies_to_the_rest_of_the_session(writer: ClaudeSessionWriter) -> None:
    writer.worktree_state("feature/PROJ-9", flat=True)
    writer.response(output=5)
    assert [e.git_branch for e in scan().events] == ["feature/PROJ-9"]
    writer.response(output=6)  # appended later: the cursor's parser state still knows the worktree
    assert sorted((e.tokens.output, e.git_branch) for e in scan().events) == [(5, "feature/PROJ-9"),
                                                                            (6, "feature/PROJ-9")]
