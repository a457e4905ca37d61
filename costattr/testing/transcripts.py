"""Write realistic Claude Code and Codex transcript lines, for tests, the demo and the corpus.

The shapes copy the real lines in the reference examples (envelope fields, key order of v2.1.x,
message.id/requestId, usage with the cache_creation split, progress replays, Codex
session_meta/turn_context/token_count with total and last usage). Everything random comes from
one seeded `random.Random`, so a writer with the same seed writes the same bytes.

Writers append to their file as they go (flushed after each call unless `autoflush=False`), so a
test can scan, append more, and scan again.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from costattr.models import Tokens

DEFAULT_CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
DEFAULT_CODEX_MODEL = "gpt-5.1-codex"
DEFAULT_START = datetime(2026, 10, 1, 9, 0, 0, tzinfo=UTC)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9]")


def project_dir_name(cwd: str) -> str:
    """Claude Code's own encoding of a cwd into a projects/ directory name (lossy)."""
    return _NOT_ALNUM.sub("-", cwd)


def dumps(obj: Any) -> bytes:
    """Compact JSON as the tools write it. Strings holding lone surrogates (binary tool output
    cut mid-character) come out as `\\udcb2` escapes, as in real Claude Code transcripts."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def iso(dt: datetime) -> str:
    """JS toISOString(): UTC, milliseconds, Z."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Ids:
    """Identifiers in the formats the tools write, drawn from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def b58(self, n: int) -> str:
        return "".join(self.rng.choices(_B58, k=n))

    def message_id(self) -> str:
        return "msg_01" + self.b58(22)

    def request_id(self) -> str:
        return "req_011C" + self.b58(20)

    def tool_use_id(self) -> str:
        return "toolu_01" + self.b58(22)

    def agent_id(self) -> str:
        return f"a{self.rng.getrandbits(64):016x}"


class _Clock:
    """Transcript time: moves forward a little with every line, like a live session."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.now = start
        self.rng = rng

    def tick(self, lo_ms: int = 3, hi_ms: int = 900) -> str:
        self.now += timedelta(milliseconds=self.rng.randint(lo_ms, hi_ms))
        return iso(self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class _LineFile:
    """An append-only JSONL file that counts what it wrote."""

    def __init__(self, path: Path, autoflush: bool) -> None:
        self.path = path
        self.autoflush = autoflush
        self.bytes_written = 0
        self._fh: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        self._fh.write(data)
        self.bytes_written += len(data)

    def line(self, obj: dict[str, Any], edit: tuple[bytes, bytes] | None = None, torn: bool = False) -> dict[str, Any]:
        """Write one JSON line. `edit` replaces bytes in it (fault injection: wrong types, invalid
        UTF-8); `torn` writes only its first half, without a newline (a writer caught mid-line)."""
        data = dumps(obj)
        if edit is not None:
            data = data.replace(*edit)
        self.write(data[: len(data) // 2] if torn else data + b"\n")
        return obj

    def flush(self) -> None:
        if self._fh is not None and self.autoflush:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ---------------------------------------------------------------------------------------------
# Claude Code


@dataclass
class Response:
    """One API response as written: several lines sharing message.id and requestId."""

    message_id: str
    request_id: str | None
    model: str
    tokens: Tokens  # what a correct reader counts for it (input excludes cache; max output)
    speed: str | None = None
    tool_use_id: str | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)


class ClaudeSessionWriter:
    """One Claude Code transcript file: a session, or a subagent file of one.

    `session_id` is the session the lines carry (a subagent's lines carry its parent's).
    """

    def __init__(
        self,
        projects_dir: Path,
        session_id: str | None = None,
        cwd: str = "/home/dev/src/app",
        *,
        branch: str | None = "main",
        version: str = "2.1.173",
        start: datetime = DEFAULT_START,
        seed: int = 0,
        rng: random.Random | None = None,
        path: Path | None = None,
        agent_id: str | None = None,
        autoflush: bool = True,
    ) -> None:
        self.rng = rng or random.Random(seed)
        self.ids = Ids(self.rng)
        self.projects_dir = Path(projects_dir)
        self.session_id = session_id or self.ids.uuid()
        self.cwd = cwd
        self.branch = branch
        self.version = version
        self.agent_id = agent_id
        self.clock = _Clock(start, self.rng)
        self.file = _LineFile(path or self.project_dir / f"{self.session_id}.jsonl", autoflush)
        self.last_uuid: str | None = None
        self.owns_file = True

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def project_dir(self) -> Path:
        return self.projects_dir / project_dir_name(self.cwd)

    @property
    def bytes_written(self) -> int:
        return self.file.bytes_written

    # -- the envelope every conversation line carries ----------------------------------------

    def _envelope(self, kind: str, body: dict[str, Any], branch: str | None = None, **extra: Any) -> dict[str, Any]:
        line_uuid = self.ids.uuid()
        obj: dict[str, Any] = {"parentUuid": self.last_uuid, "isSidechain": self.agent_id is not None}
        if self.agent_id is not None:
            obj["agentId"] = self.agent_id
        obj.update(body)
        obj.update(type=kind, uuid=line_uuid, timestamp=self.clock.tick(), userType="external", entrypoint="cli",
                   cwd=self.cwd, sessionId=self.session_id, version=self.version,
                   gitBranch=(branch if branch is not None else self.branch) or "")
        obj.update(extra)
        self.last_uuid = line_uuid
        return obj

    def _done(self, value: Any) -> Any:
        self.file.flush()
        return value

    # -- conversation lines ------------------------------------------------------------------

    def user_prompt(self, text: str = "Fix the failing test in tests/test_refresh.py") -> dict[str, Any]:
        line = self.file.line(self._envelope("user", {"message": {"role": "user", "content": text}}))
        return self._done(line)

    def response(
        self,
        model: str = DEFAULT_CLAUDE_MODEL,
        *,
        input: int = 3,  # noqa: A002 - the transcript's own field name
        output: int = 120,
        cache_write_5m: int = 0,
        cache_write_1h: int = 0,
        cache_read: int = 0,
        blocks: int = 3,
        placeholder_output: bool = True,
        outputs: list[int] | None = None,
        branch: str | None = None,
        speed: str | None = None,
        request_id: str | bool | None = True,
        message_id: str | None = None,
        content: list[dict[str, Any]] | None = None,
        cost_usd: float | None = None,
        legacy: bool = False,
        tool_input_bytes: int = 0,
        text: str | None = None,
        edit: tuple[bytes, bytes] | None = None,
        torn: bool = False,
        iterations: list[dict[str, Any]] | None = None,
    ) -> Response:
        """Write one API response as Claude Code does: one line per content block.

        Every line repeats the usage; with `placeholder_output` the early lines carry output 1
        (older versions), the last the real count. `outputs` sets each line's count explicitly
        (e.g. the largest not last). `request_id=None` writes lines without a requestId.
        `text` sets the text blocks; `edit`/`torn` inject faults (see `_LineFile.line`; `torn`
        tears the last line); `iterations` replaces usage.iterations (see `usage_iteration`).
        """
        msg_id = message_id or self.ids.message_id()
        req_id = self.ids.request_id() if request_id is True else (request_id or None)
        blocks_ = content or self._blocks(blocks, tool_input_bytes, text)
        if outputs is None:
            outputs = [1] * (len(blocks_) - 1) + [output] if placeholder_output else [output] * len(blocks_)
        tool_use = next((b["id"] for b in blocks_ if b.get("type") == "tool_use"), None)
        resp = Response(msg_id, req_id, model, Tokens(input, max(outputs), cache_write_5m, cache_write_1h, cache_read),
                        speed, tool_use)
        for i, (block, out) in enumerate(zip(blocks_, outputs, strict=True)):
            last = i == len(blocks_) - 1
            usage = self._usage(input, out, cache_write_5m, cache_write_1h, cache_read, speed, legacy)
            if iterations is not None:
                usage["iterations"] = iterations
            message = {"model": model, "id": msg_id, "type": "message", "role": "assistant", "content": [block],
                       "stop_reason": ("tool_use" if tool_use else "end_turn") if last else None,
                       "stop_sequence": None, "usage": usage}
            if legacy:
                line = self._legacy_line(message, req_id, cost_usd)
            else:
                body: dict[str, Any] = {"message": message}
                if req_id is not None:
                    body["requestId"] = req_id
                line = self._envelope("assistant", body, branch)
            resp.lines.append(self.file.line(line, edit, torn and last))
        return self._done(resp)

    def _legacy_line(self, message: dict[str, Any], req_id: str | None, cost_usd: float | None) -> dict[str, Any]:
        """The pre-1.0.9 shape: costUSD at the top level, no cache split."""
        line_uuid = self.ids.uuid()
        obj: dict[str, Any] = {"parentUuid": self.last_uuid, "isSidechain": False, "userType": "external",
                               "cwd": self.cwd, "sessionId": self.session_id, "version": "1.0.8",
                               "gitBranch": self.branch or "", "message": message, "type": "assistant",
                               "uuid": line_uuid, "timestamp": self.clock.tick()}
        if req_id is not None:
            obj["requestId"] = req_id
        if cost_usd is not None:
            obj["costUSD"] = cost_usd
        self.last_uuid = line_uuid
        return obj

    @staticmethod
    def _usage(inp: int, out: int, cw5: int, cw1: int, cr: int, speed: str | None, legacy: bool) -> dict[str, Any]:
        if legacy:
            return {"input_tokens": inp, "cache_creation_input_tokens": cw5 + cw1, "cache_read_input_tokens": cr,
                    "output_tokens": out}
        return {"input_tokens": inp, "cache_creation_input_tokens": cw5 + cw1, "cache_read_input_tokens": cr,
                "output_tokens": out, "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                "service_tier": "standard",
                "cache_creation": {"ephemeral_1h_input_tokens": cw1, "ephemeral_5m_input_tokens": cw5},
                "inference_geo": "", "iterations": [], "speed": speed or "standard"}

    def _blocks(self, n: int, tool_input_bytes: int, text: str | None = None) -> list[dict[str, Any]]:
        """thinking -> text -> tool_use, as many as asked (the last is a tool call when n > 1)."""
        out: list[dict[str, Any]] = []
        for i in range(n):
            if i == n - 1 and n > 1:
                payload = "x" * tool_input_bytes if tool_input_bytes else "pytest -q tests/test_refresh.py"
                out.append({"type": "tool_use", "id": self.ids.tool_use_id(), "name": "Bash",
                            "input": {"command": payload, "description": "Run the tests"}})
            elif i == 0 and n > 2:
                out.append({"type": "thinking", "thinking": "", "signature": "Eq" + self.ids.b58(120)})
            else:
                out.append({"type": "text", "text": text or "Let me look at the failing test first."})
        return out

    def user_tool_result(
        self,
        tool_use_id: str | None = None,
        content: str = "1 failed, 12 passed in 0.41s",
        *,
        tool_use_result: Any = None,
        with_task_usage_summary: bool = False,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """The user line that returns a tool's output; Task/Agent results carry a usage summary."""
        body: dict[str, Any] = {"message": {"role": "user", "content": [
            {"tool_use_id": tool_use_id or self.ids.tool_use_id(), "type": "tool_result", "content": content}]}}
        if with_task_usage_summary:
            body["toolUseResult"] = {
                "status": "completed", "agentId": agent_id or self.ids.agent_id(), "content": [{"type": "text",
                "text": content}], "totalDurationMs": 93410, "totalTokens": 31877, "totalToolUseCount": 6,
                "usage": {"input_tokens": 2, "cache_creation_input_tokens": 740, "cache_read_input_tokens": 30912,
                          "output_tokens": 223, "service_tier": "standard"}}
        elif tool_use_result is not None:
            body["toolUseResult"] = tool_use_result
        return self._done(self.file.line(self._envelope("user", body)))

    def synthetic(self, text: str = "You've hit your limit · resets 8pm (Asia/Tokyo)", *,
                  model: str = "<synthetic>", output: int = 0, input: int = 0) -> dict[str, Any]:  # noqa: A002
        """A locally produced assistant line (rate limit, API error): not a model, not spend."""
        message = {"id": self.ids.uuid(), "container": None, "model": model, "role": "assistant",
                   "stop_reason": "stop_sequence", "stop_sequence": "", "type": "message",
                   "usage": {"input_tokens": input, "output_tokens": output, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0},
                   "content": [{"type": "text", "text": text}]}
        line = self._envelope("assistant", {"message": message}, error="rate_limit", isApiErrorMessage=True)
        return self._done(self.file.line(line))

    def bookkeeping(self) -> None:
        """The non-usage lines a real session is full of (snapshots, queue, hooks, durations)."""
        msg = self.ids.uuid()
        now = iso(self.clock.now)
        self.file.line({"type": "file-history-snapshot", "messageId": msg, "snapshot": {
            "messageId": msg, "trackedFileBackups": {}, "timestamp": now}, "isSnapshotUpdate": False})
        self.file.line({"type": "queue-operation", "operation": "enqueue", "timestamp": now,
                        "sessionId": self.session_id, "content": "continue"})
        self.file.line(self._envelope("system", {"subtype": "turn_duration", "durationMs": self.rng.randint(900, 90000),
                                                 "isMeta": False}))
        self._done(None)

    # -- session-level records (Claude Code 2026) ---------------------------------------------

    def cost_state(self, total_usd: float, model_usage: dict[str, dict[str, Any]] | None = None,
                   *, unknown: bool = False) -> dict[str, Any]:
        """A `cost-state` snapshot (no timestamp; re-written as the session goes on), in the
        shape third-party captures show (mikhail-tokarev/greenbelt PR #11)."""
        line = {"type": "cost-state", "sessionId": self.session_id, "totalCostUSD": total_usd,
                "totalAPIDuration": 7914, "totalAPIDurationWithoutRetries": 7896, "totalToolDuration": 20106,
                "totalLinesAdded": 0, "totalLinesRemoved": 0, "totalDuration": 50401, "startTime": 1789398960924,
                "modelUsage": model_usage or {}, "hasUnknownModelCost": unknown}
        return self._done(self.file.line(line))

    def pr_link(self, number: int, repository: str = "acme/app", *, url: str | None = None,
                ts: str | None = None) -> dict[str, Any]:
        """A `pr-link` record (re-emitted on resume and compaction)."""
        line = {"type": "pr-link", "sessionId": self.session_id, "prNumber": number,
                "prUrl": url or f"https://github.com/{repository}/pull/{number}", "prRepository": repository,
                "timestamp": ts or self.clock.tick()}
        return self._done(self.file.line(line))

    def worktree_state(self, branch: str | None, path: str | None = None, *, original: str = "main",
                       flat: bool = False) -> dict[str, Any]:
        """A `worktree-state` record: entering a worktree on `branch` (None: leaving it). By
        default the fields sit in a `worktreeSession` object; `flat` puts them at the top."""
        ws = None if branch is None else {
            "originalCwd": self.cwd, "worktreePath": path, "worktreeName": branch.rsplit("/", 1)[-1],
            "worktreeBranch": branch, "originalBranch": original, "sessionId": self.session_id}
        line: dict[str, Any] = {"type": "worktree-state", "sessionId": self.session_id}
        if flat:
            line.update(ws or {"worktreeBranch": None})
        else:
            line["worktreeSession"] = ws
        return self._done(self.file.line(line))

    def raw(self, data: bytes) -> None:
        """Append bytes as they are: corrupt lines, torn tails, binary junk."""
        self.file.write(data)
        self.file.flush()

    # -- subagents, replays and copies -------------------------------------------------------

    def subagent(self, agent_id: str | None = None, *, flat: bool = False, inline: bool = False) -> ClaudeSessionWriter:
        """A subagent transcript: `<session>/subagents/agent-<id>.jsonl` (2.1.2+); with `flat`
        the older `agent-<id>.jsonl` next to the session file; with `inline` sidechain lines in
        the session file itself (1.0.x). Its lines carry the parent's sessionId, isSidechain and
        agentId."""
        aid = agent_id or self.ids.agent_id()
        path = (self.project_dir / f"agent-{aid}.jsonl" if flat
                else self.project_dir / self.session_id / "subagents" / f"agent-{aid}.jsonl")
        sub = ClaudeSessionWriter(self.projects_dir, self.session_id, self.cwd, branch=self.branch,
                                  version=self.version, start=self.clock.now, rng=self.rng, path=path, agent_id=aid,
                                  autoflush=self.file.autoflush)
        if inline:
            sub.file = self.file  # one handle: lines interleave whole, in order
            sub.owns_file = False
        return sub

    def progress_replay(self, response: Response, agent_id: str | None = None,
                        parent_tool_use_id: str | None = None, *, lines: int | None = None) -> list[dict[str, Any]]:
        """Parent-file `progress` lines replaying a subagent's response (same ids and usage);
        `lines` replays only the first few (e.g. just the placeholder block)."""
        written = []
        for inner in response.lines[:lines]:
            data = {"type": "agent_progress", "agentId": agent_id or inner.get("agentId") or self.ids.agent_id(),
                    "prompt": "", "message": {"type": "assistant", "message": inner["message"],
                                              "requestId": inner.get("requestId"), "uuid": inner["uuid"],
                                              "timestamp": inner["timestamp"]}}
            line = self._envelope("progress", {"data": data, "toolUseID": "agent_msg_" + self.ids.b58(24),
                                               "parentToolUseID": parent_tool_use_id or self.ids.tool_use_id()})
            line["isSidechain"] = False  # the progress line itself is the parent's
            written.append(self.file.line(line))
        return self._done(written)

    def btw_replay(self, response: Response, *, cache_read: int | None = None) -> ClaudeSessionWriter:
        """A `/btw` side question: a sidechain file under subagents/ replaying a parent response
        with the same message.id, a new requestId and (typically) a larger cache read."""
        side = self.subagent(f"aside_question-{self.ids.b58(8)}")
        new_req = self.ids.request_id()
        for line in response.lines:
            copy = orjson.loads(orjson.dumps(line))
            copy.update(isSidechain=True, agentId=side.agent_id, requestId=new_req, uuid=side.ids.uuid(),
                        timestamp=side.clock.tick())
            if cache_read is not None:
                copy["message"]["usage"]["cache_read_input_tokens"] = cache_read
            side.file.line(copy)
        side.file.flush()
        return side

    def resume_copy(self, new_session_id: str | None = None) -> ClaudeSessionWriter:
        """`claude --resume` in many versions: a new session file that starts with a verbatim copy
        of the old one (original uuids, timestamps, ids and sessionId), then continues."""
        self.file.close()
        new = ClaudeSessionWriter(self.projects_dir, new_session_id or self.ids.uuid(), self.cwd, branch=self.branch,
                                  version=self.version, start=self.clock.now, rng=self.rng,
                                  autoflush=self.file.autoflush)
        if self.path.exists():
            new.file.write(self.path.read_bytes())
            new.file.flush()
        new.last_uuid = self.last_uuid
        return new

    def close(self) -> None:
        if self.owns_file:
            self.file.close()


# ---------------------------------------------------------------------------------------------
# Codex


def usage_iteration(kind: str = "message", *, input: int = 0, output: int = 0,  # noqa: A002
                    cache_write_5m: int = 0, cache_read: int = 0) -> dict[str, Any]:
    """One entry of a Claude `usage.iterations[]` (2.1.x): `message`, or `compaction`."""
    return {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write_5m,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_write_5m, "ephemeral_1h_input_tokens": 0},
            "type": kind}


def codex_usage(inp: int, cached: int, out: int, reasoning: int, written: int | None = None) -> dict[str, int]:
    """Codex's TokenUsage: input includes cached (and, from 0.145, cache-written) tokens, output
    includes reasoning. `written` None: a build that does not report cache writes at all."""
    usage = {"input_tokens": inp, "cached_input_tokens": cached}
    if written is not None:
        usage["cache_write_input_tokens"] = written
    usage.update(output_tokens=out, reasoning_output_tokens=reasoning, total_tokens=inp + out)
    return usage


_RATE_LIMITS = {"primary": {"used_percent": 4.0, "window_minutes": 300, "resets_at": 1792000000},
                "secondary": {"used_percent": 21.0, "window_minutes": 10080, "resets_at": 1792400000},
                "credits": None, "plan_type": None}


class CodexRolloutWriter:
    """One Codex rollout file: `sessions/YYYY/MM/DD/rollout-<local time>-<id>.jsonl`."""

    def __init__(
        self,
        codex_home: Path,
        session_id: str | None = None,
        cwd: str = "/home/dev/src/app",
        branch: str | None = "main",
        *,
        start: datetime = DEFAULT_START,
        seed: int = 0,
        rng: random.Random | None = None,
        cli_version: str = "0.63.0",
        instructions_bytes: int = 0,
        autoflush: bool = True,
        forked_from: CodexRolloutWriter | None = None,
        write_meta: bool = True,
    ) -> None:
        self.rng = rng or random.Random(seed)
        self.ids = Ids(self.rng)
        self.codex_home = Path(codex_home)
        self.session_id = session_id or self.ids.uuid()
        self.cwd = cwd
        self.branch = branch
        self.cli_version = cli_version
        self.clock = _Clock(start, self.rng)
        self.total = [0, 0, 0, 0]  # cumulative input (incl. cached), cached, output (incl. reasoning), reasoning
        self.last: list[int] | None = None
        self.written_total: int | None = None  # cumulative cache_write_input_tokens, once a build reports them
        self.last_written: int | None = None
        self.model: str | None = None
        stamp = start.strftime("%Y-%m-%dT%H-%M-%S")
        self.file = _LineFile(self.codex_home / "sessions" / start.strftime("%Y/%m/%d")
                              / f"rollout-{stamp}-{self.session_id}.jsonl", autoflush)
        if write_meta:
            self.meta = self._session_meta(instructions_bytes, forked_from)
            self.file.line(self.meta)
            self.file.flush()

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def bytes_written(self) -> int:
        return self.file.bytes_written

    def _line(self, kind: str, payload: dict[str, Any], ts: str | None = None) -> dict[str, Any]:
        return self.file.line({"timestamp": ts or self.clock.tick(), "type": kind, "payload": payload})

    def _session_meta(self, instructions_bytes: int, forked_from: CodexRolloutWriter | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.session_id, "timestamp": iso(self.clock.now), "cwd": self.cwd,
                                   "originator": "codex_cli_rs", "cli_version": self.cli_version,
                                   "instructions": None, "source": "cli", "model_provider": "openai"}
        if instructions_bytes:
            payload["base_instructions"] = {"text": "You are Codex, a coding agent. " * (instructions_bytes // 31)}
        if forked_from is not None:
            payload["forked_from_id"] = forked_from.session_id
        git: dict[str, Any] = {"commit_hash": f"{self.rng.getrandbits(160):040x}",
                               "repository_url": "git@github.com:acme/app.git"}
        if self.branch:
            git["branch"] = self.branch
        payload["git"] = git
        return {"timestamp": iso(self.clock.now), "type": "session_meta", "payload": payload}

    def turn(self, model: str = DEFAULT_CODEX_MODEL, prompt: str = "Why does test_expiry fail on CI?",
             *, cwd: str | None = None) -> None:
        """A user prompt and the turn_context that names the model for what follows."""
        self.model = model
        self._line("response_item", {"type": "message", "role": "user",
                                     "content": [{"type": "input_text", "text": prompt}]})
        self._line("event_msg", {"type": "user_message", "message": prompt, "images": []})
        self._line("turn_context", {"cwd": cwd or self.cwd, "approval_policy": "on-request",
                                    "sandbox_policy": {"type": "workspace-write", "network_access": False},
                                    "model": model, "effort": "medium", "summary": "auto"})
        self.file.flush()

    def token_count(self, input: int = 12000, cached: int = 9000, output: int = 300, reasoning: int = 120,  # noqa: A002
                    *, with_last: bool = True, cache_write: int | None = None) -> Tokens:
        """One API call: the cumulative total advances; `with_last=False` omits last_token_usage
        (early Codex builds), so readers must diff totals; `cache_write` reports
        cache_write_input_tokens (0.145+), a part of `input`. Returns what a reader should count."""
        last = [input, min(cached, input), output, reasoning]
        self.total = [t + d for t, d in zip(self.total, last, strict=True)]
        self.last = last
        if cache_write is not None:
            self.written_total = (self.written_total or 0) + cache_write
        self.last_written = cache_write
        self._write_token_count(with_last)
        written = cache_write or 0
        return Tokens(input=last[0] - last[1] - written, output=last[2], cache_write_5m=written, cache_read=last[1],
                      reasoning=last[3])

    def _write_token_count(self, with_last: bool = True) -> None:
        info: dict[str, Any] = {"total_token_usage": codex_usage(*self.total, self.written_total)}
        if with_last and self.last is not None:
            info["last_token_usage"] = codex_usage(*self.last, self.last_written)
        info["model_context_window"] = 272000
        self._line("event_msg", {"type": "token_count", "info": info, "rate_limits": _RATE_LIMITS})
        self.file.flush()

    def usage_record(self, response_id: str = "resp_1") -> None:
        """codex-cli 0.153's `token_usage_record` item: the last response's usage again, next to
        its token_count. Not spend of its own."""
        usage = codex_usage(*(self.last or [0, 0, 0, 0]), self.last_written)
        self._line("token_usage_record", {"thread_id": self.session_id, "turn_id": self.ids.uuid(),
                                          "response_id": response_id, "usage": usage})
        self.file.flush()

    def thread_settings(self, model: str) -> None:
        """Newer builds' `thread_settings_applied` event, which names the model outside turn_context."""
        self._line("event_msg", {"type": "thread_settings_applied", "thread_id": self.session_id,
                                 "thread_settings": {"model": model, "model_provider_id": "openai",
                                                     "approval_policy": "never", "cwd": self.cwd}})
        self.file.flush()

    def reemit(self) -> None:
        """Codex re-sends the last token_count unchanged (a rate-limit refresh): no new spend."""
        self._write_token_count(True)

    def rate_limit_only(self) -> None:
        """`info: null`: rate limits only, no request."""
        self._line("event_msg", {"type": "token_count", "info": None, "rate_limits": _RATE_LIMITS})
        self.file.flush()

    def tool_call(self, output: str = "1 failed in 0.41s\n", command: str = "pytest -q") -> None:
        """A shell call and its output: where most of a rollout's bytes are."""
        call_id = "call_" + self.ids.b58(24)
        self._line("response_item", {"type": "reasoning", "summary": [{"type": "summary_text",
                   "text": "**Inspecting the failing test**"}], "content": None,
                   "encrypted_content": "gAAAAA" + self.ids.b58(200)})
        self._line("response_item", {"type": "function_call", "name": "shell_command",
                   "arguments": orjson.dumps({"command": command, "workdir": self.cwd}).decode(), "call_id": call_id})
        self._line("response_item", {"type": "function_call_output", "call_id": call_id, "output": output})
        self.file.flush()

    def agent_message(self, text: str = "`test_expiry` mixes naive local time with a UTC token.") -> None:
        self._line("event_msg", {"type": "agent_message", "message": text})
        self._line("response_item", {"type": "message", "role": "assistant",
                                     "content": [{"type": "output_text", "text": text}]})
        self.file.flush()

    def raw(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()

    def fork(self, session_id: str | None = None, *, branch: str | None = None) -> CodexRolloutWriter:
        """A forked thread: its own session_meta (forked_from_id), the parent's session_meta, then
        the parent's whole history replayed with timestamps rewritten to the fork's second.
        The fork's totals continue from the parent's."""
        self.file.close()
        start = self.clock.now + timedelta(seconds=30)
        child = CodexRolloutWriter(self.codex_home, session_id or self.ids.uuid(), self.cwd,
                                   self.branch if branch is None else branch, start=start, rng=self.rng,
                                   cli_version=self.cli_version, autoflush=self.file.autoflush, forked_from=self)
        replay_ts = iso(start)
        for raw in self.path.read_bytes().splitlines():
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            obj["timestamp"] = replay_ts
            child.file.line(obj)
        child.total, child.last, child.model = list(self.total), self.last, self.model
        child.written_total, child.last_written = self.written_total, self.last_written
        child.file.flush()
        return child

    def archive_copy(self) -> Path:
        """A copy of this rollout under archived_sessions/ (the same thread, seen twice)."""
        self.file.close()
        target = self.codex_home / "archived_sessions" / self.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, target)
        return target

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------------------------------------
# Reading results back (tests)


def tokens_by_session(events: Any) -> dict[str, Tokens]:
    """Summed tokens per session of scanned events: what most reader tests compare."""
    out: dict[str, Tokens] = {}
    for ev in events:
        out.setdefault(ev.session_id, Tokens()).add(ev.tokens)
    return out
