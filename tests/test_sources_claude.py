"""Claude Code transcripts: every response counted once, in the right session, whatever the
streaming split, the subagent layout, the replays and copies, and the junk around them.

Each test writes its own small transcript with the realistic writers and scans it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from costattr.models import Tokens
from costattr.scan import ScanResult, dedup, scan
from costattr.sources.base import FileParse
from costattr.sources.claude import ClaudeSource
from costattr.testing.transcripts import ClaudeSessionWriter, iso, tokens_by_session

SONNET = "claude-sonnet-4-5-20250929"


@pytest.fixture
def projects(env_dirs: dict[str, Path]) -> Path:
    return env_dirs["claude"] / "projects"


@pytest.fixture
def writer(projects: Path) -> ClaudeSessionWriter:
    return ClaudeSessionWriter(projects, cwd="/home/dev/src/app", seed=7)


def claude_scan() -> ScanResult:
    return scan(["claude"], use_cache=False)


def only_event(result: ScanResult):  # type: ignore[no-untyped-def]
    assert len(result.events) == 1, [e.key for e in result.events]
    return result.events[0]


# -- rule 1: one response, many lines -------------------------------------------------------------


def test_streamed_response_counts_once_with_its_final_output(writer: ClaudeSessionWriter) -> None:
    writer.response(output=260, cache_read=15_000, cache_write_5m=1_331, blocks=3, placeholder_output=True)
    ev = only_event(claude_scan())
    assert ev.tokens == Tokens(input=3, output=260, cache_write_5m=1_331, cache_read=15_000)


def test_largest_usage_wins_even_when_it_is_not_the_last_line(writer: ClaudeSessionWriter) -> None:
    writer.response(outputs=[4, 310, 9], cache_read=9_000)
    assert only_event(claude_scan()).tokens.output == 310


def test_identical_usage_on_every_line_counts_once(writer: ClaudeSessionWriter) -> None:
    writer.response(output=79, blocks=2, placeholder_output=False)  # v2.1.218 writes final usage on all
    assert only_event(claude_scan()).tokens.output == 79


def test_missing_request_id_still_counts_each_response_once(writer: ClaudeSessionWriter) -> None:
    writer.response(request_id=None, output=50, blocks=3)
    writer.response(request_id=None, output=60, blocks=2)
    result = claude_scan()
    assert sorted(e.tokens.output for e in result.events) == [50, 60]


def test_cache_writes_are_split_into_5m_and_1h(writer: ClaudeSessionWriter) -> None:
    writer.response(cache_write_5m=100, cache_write_1h=2_000, blocks=1)
    writer.response(cache_write_5m=700, blocks=1, legacy=True)  # no breakdown: all at the 5m rate
    got = sorted((e.tokens.cache_write_5m, e.tokens.cache_write_1h) for e in claude_scan().events)
    assert got == [(100, 2_000), (700, 0)]


def test_fast_mode_and_recorded_cost_are_carried(writer: ClaudeSessionWriter) -> None:
    writer.response("claude-opus-4-6", speed="fast", blocks=1)
    writer.response(blocks=1, legacy=True, cost_usd=0.1234)
    by_model = {e.speed: e for e in claude_scan().events}
    assert by_model["fast"].model == "claude-opus-4-6"
    assert by_model[None].recorded_cost == "0.1234"  # the old costUSD, exactly


# -- rule 1: copies across files -------------------------------------------------------------------


def test_subagent_file_and_its_progress_replay_count_once_in_the_parent(writer: ClaudeSessionWriter) -> None:
    writer.response(output=100, cache_read=10_000)
    sub = writer.subagent()
    sub_resp = sub.response("claude-haiku-4-5-20251001", output=450, cache_read=3_000, blocks=3)
    writer.progress_replay(sub_resp, sub.agent_id)  # every line replayed in the parent file
    result = claude_scan()
    assert {e.session_id for e in result.events} == {writer.session_id}
    assert sorted(e.tokens.output for e in result.events) == [100, 450]
    sub_event = next(e for e in result.events if e.tokens.output == 450)
    assert sub_event.is_sidechain and sub_event.agent_id == sub.agent_id


def test_partial_progress_replay_does_not_beat_the_complete_subagent_copy(writer: ClaudeSessionWriter) -> None:
    sub = writer.subagent()
    sub_resp = sub.response(output=450, blocks=3, placeholder_output=True)  # outputs 1, 1, 450
    writer.progress_replay(sub_resp, sub.agent_id, lines=1)  # only the placeholder block
    assert only_event(claude_scan()).tokens.output == 450


def test_progress_replay_alone_is_counted(writer: ClaudeSessionWriter, projects: Path) -> None:
    """The subagent file may be gone (retention): its replay in the parent is still real spend."""
    sub = writer.subagent()
    resp = sub.response(output=321, blocks=1)
    writer.progress_replay(resp, sub.agent_id)
    sub.close()
    sub.path.unlink()
    ev = only_event(claude_scan())
    assert (ev.session_id, ev.tokens.output, ev.is_sidechain) == (writer.session_id, 321, True)


@pytest.mark.parametrize("new_id", ["00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-8fff-ffffffffffff"])
def test_resumed_session_copy_counts_once_in_the_original_session(writer: ClaudeSessionWriter, new_id: str) -> None:
    """Whichever id sorts first: the copied history belongs to the session that made it."""
    writer.response(output=200, cache_read=5_000)
    writer.response(output=300, cache_read=6_000)
    resumed = writer.resume_copy(new_id)  # a new file that starts with a verbatim copy
    resumed.response(output=40, cache_read=7_000)
    spend = tokens_by_session(claude_scan().events)
    assert spend[writer.session_id].output == 500
    assert spend[resumed.session_id].output == 40


def test_btw_sidechain_replay_keeps_the_parent_copy(writer: ClaudeSessionWriter) -> None:
    original = writer.response(output=260, cache_read=15_000)
    writer.btw_replay(original, cache_read=99_999)  # same message.id, new requestId, bigger numbers
    ev = only_event(claude_scan())
    assert not ev.is_sidechain
    assert ev.tokens.cache_read == 15_000


def test_dedup_picks_the_same_copies_in_any_reading_order(writer: ClaudeSessionWriter) -> None:
    first = writer.response(output=260, cache_read=15_000)
    writer.btw_replay(first, cache_read=50_000)
    sub = writer.subagent()
    resp = sub.response(output=90, blocks=3)
    writer.progress_replay(resp, sub.agent_id, lines=2)
    writer.resume_copy().response(output=5)
    source = ClaudeSource()
    records = []
    for path in source.discover():
        records += list(source.parse(path, path.read_bytes(), 0, FileParse()).records.values())
    expected = sorted(dedup(records))
    rng = random.Random(3)
    for _ in range(20):
        rng.shuffle(records)
        assert sorted(dedup(records)) == expected


# -- rule 2: what is and is not spend --------------------------------------------------------------


@pytest.mark.parametrize("flat", [False, True], ids=["subagents-dir", "flat-agent-file"])
def test_subagent_spend_folds_into_the_parent_session(writer: ClaudeSessionWriter, flat: bool) -> None:
    sub = writer.subagent(flat=flat)
    assert sub.path.name.startswith("agent-")
    assert (sub.path.parent.name == "subagents") is not flat
    sub.response(output=123)
    writer.response(output=7)
    result = claude_scan()
    assert {e.session_id for e in result.events} == {writer.session_id}
    assert sorted(e.tokens.output for e in result.events) == [7, 123]


def test_inline_sidechain_lines_are_spend(writer: ClaudeSessionWriter) -> None:
    writer.subagent(inline=True).response(output=55)  # 1.0.x: sidechain lines in the session file
    ev = only_event(claude_scan())
    assert ev.is_sidechain and ev.session_id == writer.session_id


def test_nested_workflow_files_belong_to_their_session(writer: ClaudeSessionWriter) -> None:
    path = writer.project_dir / writer.session_id / "subagents" / "workflows" / "wf_1" / "agent-a1.jsonl"
    ClaudeSessionWriter(writer.projects_dir, "other-id-in-lines", writer.cwd, path=path).response(output=9)
    assert only_event(claude_scan()).session_id == writer.session_id


def test_task_result_usage_summary_is_not_spend(writer: ClaudeSessionWriter) -> None:
    writer.user_tool_result(content="done", with_task_usage_summary=True)
    result = claude_scan()
    assert result.events == [] and result.stats.skipped_lines == 0


def test_synthetic_and_api_error_lines_are_neither_models_nor_spend(writer: ClaudeSessionWriter) -> None:
    writer.synthetic()
    writer.synthetic("API Error: overloaded", model=SONNET, output=12, input=40)  # isApiErrorMessage
    writer.response(output=10, blocks=1)
    ev = only_event(claude_scan())
    assert ev.model == SONNET and ev.tokens.output == 10


# -- rule 4: damaged input is skipped, counted, never fatal ---------------------------------------


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ((b'"input_tokens":7771', b'"input_tokens":"abc"'), "implausible token counts"),
        ((b'"input_tokens":7771', b'"input_tokens":-5'), "implausible token counts"),
        ((b'"input_tokens":7771', b'"input_tokens":5000000000'), "implausible token counts"),
        ((b'"input_tokens":7771', b'"input_tokens":true'), "implausible token counts"),
        ((b'"timestamp":"', b'"timestamp":"garbage'), "missing or invalid timestamp"),
        ((b'"model":"claude', b'"model":["claude'), "malformed JSON"),
    ],
)
def test_wrong_types_are_skipped_and_counted(writer: ClaudeSessionWriter, edit: tuple[bytes, bytes],
                                              reason: str) -> None:
    writer.response(input=7771, blocks=1, edit=edit)
    writer.response(output=11, blocks=1)
    result = claude_scan()
    assert only_event(result).tokens.output == 11
    assert result.stats.skipped_lines == 1
    assert result.stats.skipped_reasons == {reason: 1}


def test_null_counts_are_zero_not_a_lost_line(writer: ClaudeSessionWriter) -> None:
    writer.response(output=7774, cache_read=4_000, blocks=1, edit=(b'"output_tokens":7774', b'"output_tokens":null'))
    result = claude_scan()
    assert only_event(result).tokens == Tokens(input=3, output=0, cache_read=4_000)
    assert result.stats.skipped_lines == 0


def test_malformed_and_glued_lines_are_skipped_and_counted(writer: ClaudeSessionWriter) -> None:
    writer.response(output=1, blocks=1)
    writer.raw(b'{"type":"assistant","message":{"usage":{"input_tokens":12,"outp\n')
    writer.raw(b'{"type":"pr-link","sessionId":"x","prNu{"type":"assistant","message":{"usage":{}}}\n')
    writer.raw(b'["usage", 1]\n')
    writer.response(output=2, blocks=1)
    result = claude_scan()
    assert sorted(e.tokens.output for e in result.events) == [1, 2]
    assert result.stats.skipped_lines == 3
    assert any(writer.path.name in w for w in result.stats.skipped_where)


def test_invalid_utf8_inside_a_line_does_not_cost_its_usage(writer: ClaudeSessionWriter) -> None:
    writer.response(output=42, blocks=1, text="MARK", edit=(b"MARK", b"caf\xc3 \xff\xfe"))
    writer.raw(b'{"type":"user","message":{"content":"\xff\xfe"}}\n')
    result = claude_scan()
    assert only_event(result).tokens.output == 42
    assert result.stats.skipped_lines == 0


def test_lone_surrogate_escapes_are_read_and_cleaned(projects: Path) -> None:
    w = ClaudeSessionWriter(projects, cwd="/home/dev/caf\udcb2", seed=1)
    w.response(output=8, blocks=2, text="binary \udcb2\ud83d cut")
    assert b"\\udcb2" in w.path.read_bytes()
    ev = only_event(claude_scan())
    assert ev.tokens.output == 8
    assert ev.cwd == "/home/dev/caf\ufffd"
    ev.cwd.encode("utf-8")  # printable, storable


def test_a_5mb_line_is_read(writer: ClaudeSessionWriter) -> None:
    writer.response(output=99, blocks=2, tool_input_bytes=5_300_000)
    writer.user_tool_result(content="x" * 5_300_000)
    assert writer.path.stat().st_size > 10_000_000
    assert only_event(claude_scan()).tokens.output == 99


def test_random_binary_file_is_survived_and_counted(projects: Path) -> None:
    junk = projects / "-junk" / "0b1c2d3e-aaaa-4bbb-8ccc-0123456789ab.jsonl"
    junk.parent.mkdir(parents=True)
    data = bytearray(random.Random(5).randbytes(50_000))
    data[100:100] = b'\n\x00"usage"\xfe\n'
    junk.write_bytes(bytes(data) + b"tail without newline")
    result = claude_scan()
    assert result.events == []
    assert result.stats.skipped_lines == 2  # the usage-bearing junk line, and the torn tail
    assert result.stats.skipped_reasons.get("malformed JSON") == 1


def test_torn_last_line_is_skipped_and_counted(writer: ClaudeSessionWriter) -> None:
    writer.response(output=5, blocks=1)
    writer.response(output=6, blocks=1, torn=True)
    result = claude_scan()
    assert only_event(result).tokens.output == 5
    assert result.stats.skipped_lines == 1


# -- where transcripts are looked for --------------------------------------------------------------


def test_claude_config_dir_is_a_comma_list_of_config_or_projects_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, other = tmp_path / "cfg", tmp_path / "other"
    a = ClaudeSessionWriter(config_dir / "projects", seed=1)
    a.response(output=1)
    b = ClaudeSessionWriter(other / "projects", seed=2)
    b.response(output=2)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f" {config_dir} , {other / 'projects'},{tmp_path / 'missing'}")
    result = claude_scan()
    assert sorted(e.tokens.output for e in result.events) == [1, 2]
    assert result.looked_in["claude"] == [config_dir / "projects", other / "projects",
                                          tmp_path / "missing" / "projects"]


def test_side_files_are_not_transcripts(writer: ClaudeSessionWriter) -> None:
    writer.response(output=3, blocks=1)
    sid = writer.session_id
    for name in ("journal.jsonl", f"{sid}.orphaned-1-ab.jsonl", f"{sid}.jsonl.superseded-1"):
        (writer.project_dir / name).write_bytes(writer.path.read_bytes().replace(b"req_", b"req_x"))
    tool_results = writer.project_dir / writer.session_id / "tool-results"
    tool_results.mkdir(parents=True)
    (tool_results / "toolu_1.jsonl").write_bytes(writer.path.read_bytes().replace(b"msg_", b"msg_x"))
    assert only_event(claude_scan()).tokens.output == 3


def test_timestamps_with_an_offset_become_utc(writer: ClaudeSessionWriter) -> None:
    r = writer.response(output=1, blocks=1, edit=(b'Z","userType"', b'+02:00","userType"'))
    written = datetime.fromisoformat(r.lines[0]["timestamp"][:-1]).replace(tzinfo=UTC)  # now read as +02:00
    assert only_event(claude_scan()).ts == iso(written - timedelta(hours=2))
