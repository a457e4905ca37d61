"""Claude Code transcripts: `projects/**/*.jsonl`, one line per content block.

Only assistant lines carry spend. Every content block of one response repeats the response's
usage, so a response is counted once, by (message.id, requestId), keeping its most complete copy.
Subagent files and the `progress` lines that replay subagent messages fold into the parent
session and dedupe against each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from costattr import paths
from costattr.sources.base import FileParse, as_count, clean_text, iter_complete_lines, loads_line

NEEDLES = (b'"usage"',)
MAX_RECORDED_COST = 10_000.0  # USD for one request: anything above is corruption, not a bill
IGNORED_NAMES = {"journal.jsonl"}


def normalise_ts(value: Any) -> str | None:
    """ISO-8601 in UTC with a Z, or None when it is not a timestamp."""
    if not isinstance(value, str) or len(value) < 19 or value[10] != "T":
        return None
    if value.endswith("Z") and len(value) <= 30:
        try:
            datetime.fromisoformat(value[:-1])
        except ValueError:
            return None
        return value
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_from_path(path: Path) -> str | None:
    """The parent session a subagent file belongs to, from its location; None for other files.

    Everything under `<session>/subagents/` (workflows included) is that session's spend. Other
    files say it in their lines: a session file's own lines carry its id, a resumed copy keeps
    the id of the session it copied, and a pre-2.1.2 flat `agent-*.jsonl` carries its parent's.
    """
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "subagents":
            return parts[i - 1]
    return None


def recorded_cost(value: Any) -> str | None:
    """costUSD as old Claude Code wrote it, exact (through repr), or None when it is not a price."""
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= MAX_RECORDED_COST:
        return None
    return repr(float(value))


class ClaudeSource:
    name = "claude"

    def roots(self) -> list[Path]:
        return paths.claude_project_dirs()

    def discover(self) -> Iterator[Path]:
        for root in self.roots():
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*.jsonl")):
                if path.name in IGNORED_NAMES or ".orphaned" in path.name or "tool-results" in path.parts:
                    continue
                yield path

    def parse(self, path: Path, data: bytes, base_offset: int, state: FileParse) -> FileParse:
        owner = session_from_path(path)
        fallback = path.stem
        spath = str(path)
        for start, line in iter_complete_lines(data, NEEDLES):
            try:
                obj = loads_line(line)
            except ValueError:
                state.skip("malformed JSON", base_offset + start, spath)
                continue
            reason = self._fold_line(obj, state, owner, fallback, spath, base_offset + start)
            if reason:
                state.skip(reason, base_offset + start, spath)
        return state

    @staticmethod
    def _fold_line(
        obj: Any, state: FileParse, owner: str | None, fallback: str, spath: str, offset: int
    ) -> str | None:
        """Fold one parsed line; return why it was skipped, or None when it was fine."""
        if not isinstance(obj, dict):
            return "not a JSON object"
        envelope = obj
        kind = obj.get("type")
        replayed_agent: str | None = None
        if kind == "progress":
            data = obj.get("data")
            inner = data.get("message") if isinstance(data, dict) else None
            if not isinstance(inner, dict) or inner.get("type") != "assistant":
                return None  # hook/tool progress without a replayed message: bookkeeping
            # A subagent's message replayed in the parent file: subagent spend, the same request
            # as the line in the subagent's own file (dedup keeps one).
            agent = data.get("agentId")  # type: ignore[union-attr]
            replayed_agent = agent if isinstance(agent, str) and agent else ""
            obj = inner
        elif kind not in ("assistant", None):
            return None  # user lines (toolUseResult.usage is a summary, never spend), system, ...
        message = obj.get("message")
        if not isinstance(message, dict):
            return None if kind is None else "assistant line without a message"
        if kind is None and message.get("role") != "assistant":
            return None
        usage = message.get("usage")
        if not isinstance(usage, dict):
            return "assistant line without usage" if "usage" in message else None
        model = message.get("model")
        if model == "<synthetic>" or obj.get("isApiErrorMessage") is True:
            return None  # produced locally: not a model, not spend
        if model is not None and not isinstance(model, str):
            return "model is not a string"

        inp = as_count(usage.get("input_tokens"))
        out = as_count(usage.get("output_tokens"))
        cw_total = as_count(usage.get("cache_creation_input_tokens"))
        cr = as_count(usage.get("cache_read_input_tokens"))
        if inp is None or out is None or cw_total is None or cr is None:
            return "implausible token counts"
        cw5, cw1 = cw_total, 0
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            e5 = as_count(split.get("ephemeral_5m_input_tokens"))
            e1 = as_count(split.get("ephemeral_1h_input_tokens"))
            if e5 is None or e1 is None:
                return "implausible token counts"
            if e5 + e1:
                cw5, cw1 = e5, e1

        ts = normalise_ts(obj.get("timestamp"))
        if ts is None:
            return "missing or invalid timestamp"
        line_session = envelope.get("sessionId")
        session = owner or (line_session if isinstance(line_session, str) and line_session else fallback)

        msg_id = message.get("id")
        request_id = obj.get("requestId")
        if isinstance(msg_id, str) and msg_id:
            key = f"c:{msg_id}|{request_id}" if isinstance(request_id, str) and request_id else f"c:{msg_id}"
        else:
            uuid = obj.get("uuid")
            key = f"c:u:{uuid}" if isinstance(uuid, str) and uuid else f"c:f:{spath}:{offset}"

        recorded = recorded_cost(obj.get("costUSD"))
        speed = usage.get("speed")
        branch = obj.get("gitBranch", envelope.get("gitBranch"))
        cwd = obj.get("cwd") or envelope.get("cwd")
        agent = obj.get("agentId") or envelope.get("agentId") or replayed_agent
        state.keep(
            (
                key,
                ts,
                clean_text(model) if model else "",
                clean_text(cwd),
                clean_text(branch) or None,
                replayed_agent is not None or obj.get("isSidechain") is True or envelope.get("isSidechain") is True,
                clean_text(agent) or None,
                speed if speed == "fast" else None,
                recorded,
                clean_text(session),
                offset,
                inp,
                out,
                cw5,
                cw1,
                cr,
                0,
            )
        )
        return None
