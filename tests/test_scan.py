"""The scan engine: the parse cache and cursors never change a figure, only how much is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from costattr import scan as scan_mod
from costattr.scan import ScanCache, ScanResult, scan
from costattr.sources.base import iter_complete_lines
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter, tokens_by_session


@pytest.fixture
def world(env_dirs: dict[str, Path]) -> tuple[ClaudeSessionWriter, CodexRolloutWriter]:
    """One Claude session (with a subagent) and one Codex rollout, a few requests each."""
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/home/dev/src/app", seed=1)
    for out in (100, 200):
        r = w.response(output=out, cache_read=10_000)
        w.user_tool_result(r.tool_use_id, "ok\n" * 200)
    sub = w.subagent()
    w.progress_replay(sub.response(output=300), sub.agent_id)
    c = CodexRolloutWriter(env_dirs["codex"], cwd="/home/dev/src/app", seed=2)
    c.turn()
    c.token_count(output=400)
    return w, c


def totals(result: ScanResult) -> dict[str, object]:
    return {k: v.as_dict() for k, v in tokens_by_session(result.events).items()}


def cold() -> ScanResult:
    return scan(use_cache=False)


def test_second_run_reads_nothing(world: object) -> None:
    first = scan()
    assert first.stats.bytes_read > 0 and first.stats.cached_files == 0
    second = scan()
    assert second.stats.bytes_read == 0
    assert second.stats.cached_files == second.stats.files == first.stats.files
    assert totals(second) == totals(first) == totals(cold())


def test_appended_lines_are_read_incrementally_and_match_a_cold_scan(
    world: tuple[ClaudeSessionWriter, CodexRolloutWriter]
) -> None:
    w, c = world
    scan()
    sizes = {p: p.stat().st_size for p in (w.path, c.path)}
    w.response(output=500)
    c.token_count(output=600)
    c.reemit()
    appended = sum(p.stat().st_size - n for p, n in sizes.items())
    warm = scan()
    assert warm.stats.bytes_read == appended
    assert totals(warm) == totals(cold())
    assert sorted(e.tokens.output for e in warm.events) == [100, 200, 300, 400, 500, 600]


def test_a_torn_last_line_is_not_consumed_and_counts_once_when_complete(env_dirs: dict[str, Path]) -> None:
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", seed=3)
    w.response(output=10, blocks=1)
    w.close()
    line = w.path.read_bytes()
    whole = (line.replace(b"req_", b"req_X").replace(b"msg_", b"msg_X")
             .replace(b'"output_tokens":10', b'"output_tokens":77'))
    with w.path.open("ab") as f:
        f.write(whole[:150])  # a writer caught mid-line
    torn = scan()
    assert [e.tokens.output for e in torn.events] == [10]
    assert torn.stats.skipped_lines == 1
    assert scan().stats.skipped_lines == 1  # still torn: still counted, still not consumed
    with w.path.open("ab") as f:
        f.write(whole[150:])
    done = scan()
    assert sorted(e.tokens.output for e in done.events) == [10, 77]
    assert done.stats.skipped_lines == 0
    assert done.stats.bytes_read == len(whole)  # the torn part was re-read, nothing more
    assert totals(done) == totals(cold())


def test_a_corrupt_cache_is_moved_aside_and_rebuilt(world: object, env_dirs: dict[str, Path]) -> None:
    expected = totals(cold())
    cache_path = ScanCache().path
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_bytes(os.urandom(8192))
    result = scan()
    assert totals(result) == expected
    assert any("moved to" in w for w in result.stats.skipped_where)
    assert [p.name for p in cache_path.parent.iterdir() if ".corrupt-" in p.name]
    again = scan()
    assert again.stats.bytes_read == 0 and totals(again) == expected


def test_unreadable_cache_rows_are_read_again(world: object) -> None:
    expected = totals(scan())
    conn = ScanCache().open()
    conn.execute("UPDATE files SET state = x'00ff13'")
    conn.close()
    result = scan()
    assert totals(result) == expected
    assert result.stats.bytes_read > 0


def test_a_file_rewritten_in_place_is_read_again_from_the_start(
    world: tuple[ClaudeSessionWriter, CodexRolloutWriter]
) -> None:
    w, _ = world
    scan()
    lines = w.path.read_bytes().splitlines(keepends=True)
    # Same inode, longer: a rewrite (a compaction dropped the tool output) then new lines. A
    # cursor that took it for an append would read from the middle of a line.
    rewritten = [ln.replace(b'"output_tokens":200', b'"output_tokens":222') for ln in lines
                 if b"toolUseResult" not in ln and b'"content":"ok' not in ln]
    w.path.write_bytes(b"".join(rewritten) + b"".join(lines[-3:]) * 2)
    result = scan()
    assert totals(result) == totals(cold())
    assert 222 in [e.tokens.output for e in result.events]
    assert result.stats.skipped_lines == 0


def test_a_truncated_file_is_read_again(world: tuple[ClaudeSessionWriter, CodexRolloutWriter]) -> None:
    w, _ = world
    scan()
    lines = w.path.read_bytes().splitlines(keepends=True)
    w.path.write_bytes(b"".join(lines[:3]))
    assert totals(scan()) == totals(cold())


def test_deleted_files_drop_out_of_results_and_cache(world: tuple[ClaudeSessionWriter, CodexRolloutWriter]) -> None:
    _, c = world
    scan()
    c.path.unlink()
    result = scan()
    assert all(e.tool == "claude" for e in result.events)
    assert str(c.path) not in ScanCache().fingerprints()


def test_a_file_that_vanishes_mid_scan_is_not_fatal(
    world: tuple[ClaudeSessionWriter, CodexRolloutWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, c = world
    real = scan_mod.discover

    def discover_then_delete(tools):  # type: ignore[no-untyped-def]
        found = real(tools)
        if c.path.exists():
            c.path.unlink()  # Claude Code's cleanup, between listing and reading
        return found

    monkeypatch.setattr(scan_mod, "discover", discover_then_delete)
    monkeypatch.setattr(scan_mod, "PARALLEL_MIN_BYTES", 0)
    for workers in (1, 2):
        result = scan(use_cache=False, workers=workers)
        assert sorted(e.tokens.output for e in result.events) == [100, 200, 300]


def test_parallel_and_serial_scans_agree(world: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_mod, "PARALLEL_MIN_BYTES", 0)
    serial = scan(use_cache=False, workers=1)
    parallel = scan(workers=2)
    assert sorted(e.key for e in parallel.events) == sorted(e.key for e in serial.events)
    assert totals(parallel) == totals(serial)


def test_without_a_writable_home_the_scan_works_uncached(
    world: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COSTATTR_HOME", str(blocker / "home"))  # cannot be created
    assert totals(scan()) == totals(cold())


def test_missing_roots_give_an_empty_result_and_say_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "nope"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "nada"))
    result = scan()
    assert result.events == [] and result.files == []
    assert result.looked_in == {"claude": [tmp_path / "nope" / "projects"],
                                "codex": [tmp_path / "nada" / "sessions", tmp_path / "nada" / "archived_sessions"]}


def test_a_file_name_that_is_not_utf8_is_scanned_and_cached(env_dirs: dict[str, Path]) -> None:
    projects = env_dirs["claude"] / "projects"
    odd = Path(os.fsdecode(os.fsencode(projects / "-proj") + b"/caf\xe9.jsonl"))
    ClaudeSessionWriter(projects, "s1", path=odd, seed=1).response(output=5)
    assert [e.tokens.output for e in scan().events] == [5]
    assert scan().stats.bytes_read == 0


def test_cwd_filter_keeps_only_matching_sessions(world: object, env_dirs: dict[str, Path]) -> None:
    ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd="/elsewhere", seed=9).response(output=1)
    scan()
    only = scan(cwd_filter=lambda cwd: cwd.startswith("/elsewhere"))
    assert [e.tokens.output for e in only.events] == [1]


def test_each_line_is_yielded_once_however_often_it_mentions_a_needle() -> None:
    first, third = b'{"usage":1,"x":"usage","usage":2}', b'{"a":"usage","b":"token_count"}'
    data = first + b"\nplain\n" + third + b'\n"usage" torn'
    for needles in ((b'"usage"',), (b'"token_count"', b'"usage"', b'"a"')):
        assert list(iter_complete_lines(data, needles)) == [(0, first), (len(first) + 7, third)]
