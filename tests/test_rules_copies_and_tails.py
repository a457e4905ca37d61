"""Two rules the real transcripts showed (happy-cli's `duplicate-assistant-response` capture,
Claude Code 1.0.51): a response written a second time without its requestId counts once, and a
complete last line without a trailing newline counts without being consumed by the cursor.

Each test writes its own small transcript, in the shape of the real lines, and reads it with the
real scan engine (with its parse cache) or the real `costattr sessions`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from costattr.cli import cli
from costattr.scan import ScanResult, scan
from costattr.testing.transcripts import CodexRolloutWriter

SESSION = "b91d4412-e6c4-4e51-bb1b-585bcd78aca4"
OPUS = "claude-opus-4-20250514"


def assistant(msg_id: str, request_id: str | None, ts: str, *, out: int = 5, cw: int = 16_114, cr: int = 0,
              parent: str | None = "a42c6511", session: str = SESSION) -> dict[str, Any]:
    """An assistant line as Claude Code 1.0.51 wrote it (no cache_creation split)."""
    line: dict[str, Any] = {
        "parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": "/home/dev/app",
        "sessionId": session, "version": "1.0.51", "gitBranch": "main",
        "message": {"id": msg_id, "type": "message", "role": "assistant", "model": OPUS,
                    "content": [{"type": "text", "text": "lol"}], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 4, "cache_creation_input_tokens": cw, "cache_read_input_tokens": cr,
                              "output_tokens": out, "service_tier": "standard"}},
        "type": "assistant", "uuid": f"u-{msg_id}-{ts}", "timestamp": ts,
    }
    if request_id is not None:
        line["requestId"] = request_id
    return line


def write(path: Path, lines: list[dict[str, Any]], *, newline_at_end: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\n".join(orjson.dumps(line) for line in lines)
    path.write_bytes(data + (b"\n" if newline_at_end else b""))
    return path


def outputs(result: ScanResult) -> list[int]:
    return sorted(e.tokens.output for e in result.events)


def sessions_json() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["sessions", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# -- a response written twice, once without its requestId ----------------------------------------


def test_a_copy_without_request_id_counts_once_with_its_keyed_copy(env_dirs: dict[str, Path]) -> None:
    write(env_dirs["claude"] / "projects" / "-home-dev-app" / f"{SESSION}.jsonl", [
        assistant("msg_01R62", "req_011CRHHU", "2025-07-19T23:58:34.585Z"),
        assistant("msg_01R62", None, "2025-07-19T23:58:41.579Z", parent=None),  # the rewrite, 7 s later
        assistant("msg_01KWe", "req_011CRHHV", "2025-07-19T23:58:44.112Z", out=6, cw=2_528, cr=13_594),
    ])
    (s,) = sessions_json()["sessions"]
    assert s["requests"] == 2
    assert s["tokens"] == {"input": 8, "output": 11, "cache_write_5m": 18_642, "cache_write_1h": 0,
                           "cache_read": 13_594, "reasoning": 0}
    # the keyed copy's key survives: a ledger that recorded it first sees the same request
    assert sorted(e.key for e in scan().events) == ["c:msg_01KWe|req_011CRHHV", "c:msg_01R62|req_011CRHHU"]


def test_the_fuller_copy_wins_across_files_in_any_order(env_dirs: dict[str, Path]) -> None:
    project = env_dirs["claude"] / "projects" / "-home-dev-app"
    keyed = [assistant("msg_A", "req_A", "2025-07-19T23:58:34.585Z", out=1)]  # a placeholder count
    bare = [assistant("msg_A", None, "2025-07-19T23:58:41.579Z", out=40, parent=None)]
    for first, second in ((keyed, bare), (bare, keyed)):  # file names sort the two both ways
        for p in project.glob("*.jsonl"):
            p.unlink()
        write(project / f"{SESSION}.jsonl", first)
        write(project / "ffffffff-resumed.jsonl", second)
        events = scan(use_cache=False).events
        assert [(e.key, e.tokens.output) for e in events] == [("c:msg_A|req_A", 40)]


def test_copies_without_request_id_and_no_keyed_copy_still_count_once_each(env_dirs: dict[str, Path]) -> None:
    write(env_dirs["claude"] / "projects" / "-home-dev-app" / f"{SESSION}.jsonl", [
        assistant("msg_A", None, "2026-01-01T00:00:00.000Z", out=1),
        assistant("msg_A", None, "2026-01-01T00:00:01.000Z", out=30),
        assistant("msg_B", None, "2026-01-01T00:00:02.000Z", out=7),
    ])
    assert outputs(scan()) == [7, 30]


# -- a complete last line without a trailing newline ---------------------------------------------


def test_a_complete_last_line_without_newline_counts_and_is_not_consumed(env_dirs: dict[str, Path]) -> None:
    path = write(env_dirs["claude"] / "projects" / "-home-dev-app" / f"{SESSION}.jsonl", [
        assistant("msg_A", "req_A", "2026-01-01T00:00:00.000Z", out=10),
        assistant("msg_B", "req_B", "2026-01-01T00:00:05.000Z", out=20),
    ], newline_at_end=False)
    first = scan()
    assert outputs(first) == [10, 20]
    assert first.stats.skipped_lines == 0  # complete JSON: not reported as torn
    warm = scan()  # from the cache, the file untouched
    assert outputs(warm) == [10, 20] and warm.stats.bytes_read == 0

    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\n")  # the writer completes the line: the same request, not a new one
    completed = scan()
    assert outputs(completed) == [10, 20]
    last_line = len(path.read_bytes().splitlines(keepends=True)[-1])
    assert completed.stats.bytes_read == last_line  # the cursor stayed before the last line: it is re-read
    assert completed.stats.bytes_read < size

    with path.open("ab") as f:
        f.write(orjson.dumps(assistant("msg_C", "req_C", "2026-01-01T00:00:09.000Z", out=30)) + b"\n")
    assert outputs(scan()) == [10, 20, 30]
    assert outputs(scan(use_cache=False)) == [10, 20, 30]


def test_an_append_after_a_newline_less_last_line_counts_both(env_dirs: dict[str, Path]) -> None:
    path = write(env_dirs["claude"] / "projects" / "-home-dev-app" / f"{SESSION}.jsonl", [
        assistant("msg_A", "req_A", "2026-01-01T00:00:00.000Z", out=10),
    ], newline_at_end=False)
    assert outputs(scan()) == [10]
    with path.open("ab") as f:  # a writer that starts each record with the newline
        f.write(b"\n" + orjson.dumps(assistant("msg_B", "req_B", "2026-01-01T00:00:05.000Z", out=20)))
    assert outputs(scan()) == [10, 20]
    assert outputs(scan()) == [10, 20]


def test_a_torn_last_line_is_still_not_counted_until_it_is_whole(env_dirs: dict[str, Path]) -> None:
    path = env_dirs["claude"] / "projects" / "-home-dev-app" / f"{SESSION}.jsonl"
    whole = orjson.dumps(assistant("msg_A", "req_A", "2026-01-01T00:00:00.000Z", out=10))
    path.parent.mkdir(parents=True)
    path.write_bytes(whole[:-1])  # everything but the closing brace: not an object yet
    torn = scan()
    assert torn.events == [] and torn.stats.skipped_lines == 1
    with path.open("ab") as f:
        f.write(b"}")
    assert outputs(scan()) == [10]


def test_a_codex_total_on_a_newline_less_last_line_is_counted_once(env_dirs: dict[str, Path]) -> None:
    c = CodexRolloutWriter(env_dirs["codex"], cwd="/home/dev/app", seed=4)
    c.turn("gpt-5.1-codex")
    c.token_count(input=1_000, output=100)
    c.token_count(input=2_000, output=200)
    data = c.path.read_bytes()
    c.path.write_bytes(data[:-1])  # the last token_count without its newline
    assert outputs(scan()) == [100, 200]
    with c.path.open("ab") as f:
        f.write(b"\n")
    c.token_count(input=3_000, output=300)  # the running total moves on from the pending line's
    assert outputs(scan()) == [100, 200, 300]
    assert outputs(scan(use_cache=False)) == [100, 200, 300]
