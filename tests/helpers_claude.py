"""Minimal Claude Code transcript lines for hook/report tests (real line shapes)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

_counter = itertools.count(1)


def claude_line(session: str, cwd: str, branch: str, ts: str, *, model: str = "claude-sonnet-4-5-20250929",
                inp: int = 10, out: int = 100, cw: int = 1000, cr: int = 5000) -> str:
    n = next(_counter)
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": session,
        "version": "2.1.0", "gitBranch": branch, "type": "assistant", "uuid": f"u-{n}", "timestamp": ts,
        "requestId": f"req_{n:08d}",
        "message": {"id": f"msg_{n:08d}", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "ok"}],
                    "usage": {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": cw,
                              "cache_read_input_tokens": cr,
                              "cache_creation": {"ephemeral_5m_input_tokens": cw, "ephemeral_1h_input_tokens": 0}}},
    }) + "\n"


def append_claude(projects: Path, session: str, lines: list[str]) -> Path:
    path = projects / "-repo" / f"{session}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.writelines(lines)
    return path
