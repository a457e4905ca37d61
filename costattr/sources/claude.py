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
from costattr.sources.base import (
    MAX_TOKENS_CUMULATIVE,
    MAX_TOKENS_PER_REQUEST,
    FileParse,
    as_count,
    clean_text,
    discover_under,
    iter_complete_lines,
    loads_line,
)

# `-state"` finds cost-state and worktree-state records (neither has a "usage" key).
NEEDLES = (b'"usage"', b'-state"', b'"pr-link"')
MAX_RECORDED_COST = 10_000.0  # USD for one request: anything above is corruption, not a bill
MAX_SESSION_COST = 1_000_000.0  # USD for a whole session (cost-state): above it is corruption
IGNORED_NAMES = {"journal.jsonl"}


def normalise_ts(value: Any) -> str | None:
    """ISO-8601 in UTC with a Z, or None when it is not a timestamp."""
    if not isinstance(value, str) or len(value) < 19 or value[10] != "T":
        return None
    if value[-1] == "Z" and len(value) <= 30:
        try:
            naive = datetime.fromisoformat(value[:-1]).tzinfo is None
        except ValueError:
            return None
        return value if naive else None  # "...+02:00Z" is not a timestamp
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


def _is_transcript(name: str) -> bool:
    """`*.jsonl`, without Claude Code's side files (`journal.jsonl`, `<uuid>.orphaned-*.jsonl`)."""
    return name.endswith(".jsonl") and name not in IGNORED_NAMES and ".orphaned" not in name


def recorded_cost(value: Any, limit: float = MAX_RECORDED_COST) -> str | None:
    """costUSD as old Claude Code wrote it, exact (through repr), or None when it is not a price."""
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= limit:
        return None
    return repr(float(value))


class ClaudeSource:
    name = "claude"

    def roots(self) -> list[Path]:
        return paths.claude_project_dirs()

    def discover(self) -> Iterator[Path]:
        return discover_under(self.roots(), _is_transcript, frozenset({"tool-results"}))

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
        if type(obj) is not dict:
            return "not a JSON object"
        envelope = obj
        kind = obj.get("type")
        if kind in _SESSION_RECORDS:
            line_session = obj.get("sessionId")
            session = clean_text(owner or (line_session if type(line_session) is str and line_session else fallback))
            return _SESSION_RECORDS[kind](obj, state, session)
        replayed_agent: str | None = None
        if kind == "progress":
            data = obj.get("data")
            inner = data.get("message") if type(data) is dict else None
            if type(inner) is not dict or inner.get("type") != "assistant":
                return None  # hook/tool progress without a replayed message: bookkeeping
            # A subagent's message replayed in the parent file: subagent spend, the same request
            # as the line in the subagent's own file (dedup keeps one).
            agent = data.get("agentId")  # type: ignore[union-attr]
            replayed_agent = agent if type(agent) is str else ""
            obj = inner
        elif kind != "assistant" and kind is not None:
            return None  # user lines (toolUseResult.usage is a summary, never spend), system, ...
        message = obj.get("message")
        if type(message) is not dict:
            return None if kind is None else "assistant line without a message"
        if kind is None and message.get("role") != "assistant":
            return None
        usage = message.get("usage")
        if type(usage) is not dict:
            return "assistant line without usage" if "usage" in message else None
        model = message.get("model")
        if model == "<synthetic>" or obj.get("isApiErrorMessage") is True:
            return None  # produced locally: not a model, not spend
        if model is not None and type(model) is not str:
            return "model is not a string"
        tokens = _claude_tokens(usage)
        if tokens is None:
            return "implausible token counts"
        ts = normalise_ts(obj.get("timestamp"))
        if ts is None:
            return "missing or invalid timestamp"
        line_session = envelope.get("sessionId")
        session = clean_text(owner or (line_session if type(line_session) is str and line_session else fallback))
        get = obj.get
        cwd = clean_text(get("cwd") or envelope.get("cwd"))
        branch = clean_text(get("gitBranch", envelope.get("gitBranch"))) or None
        worktree = state.parser_state.get("worktrees", {}).get(session)
        if worktree is not None and _inside(cwd, worktree[0]):
            branch = worktree[1]  # the line's gitBranch is the branch the worktree was made from
        state.keep(
            (
                _request_key(message.get("id"), get("requestId"), get("uuid"), spath, offset),
                ts,
                clean_text(model) if model else "",
                cwd,
                branch,
                replayed_agent is not None or get("isSidechain") is True or envelope.get("isSidechain") is True,
                clean_text(get("agentId") or envelope.get("agentId") or replayed_agent) or None,
                "fast" if usage.get("speed") == "fast" else None,
                recorded_cost(get("costUSD")),
                session,
                offset,
                *tokens,
            )
        )
        return None


def _claude_tokens(usage: dict[str, Any]) -> tuple[int, int, int, int, int, int] | None:
    """(input, output, cache_write_5m, cache_write_1h, cache_read, reasoning), None if implausible.

    `usage.iterations[]` (2.1.x) lists the calls one response took; a `compaction` iteration's
    tokens are not in the top-level figures (Anthropic's compaction docs, as quoted in
    pydantic-ai #5065 and litellm PR #27065), so they are added, unless the top level already
    equals the sum of every iteration (then a writer included them)."""
    top = _usage_counts(usage)
    if top is None:
        return None
    iterations = usage.get("iterations")
    if type(iterations) is list and iterations:
        every = [0, 0, 0, 0, 0]
        compaction = [0, 0, 0, 0, 0]
        for item in iterations:
            counts = _usage_counts(item) if type(item) is dict else None
            if counts is None:
                return None
            every = [a + b for a, b in zip(every, counts, strict=True)]
            if item.get("type") == "compaction":
                compaction = [a + b for a, b in zip(compaction, counts, strict=True)]
        if any(compaction) and list(top) != every:
            top = tuple(a + b for a, b in zip(top, compaction, strict=True))  # type: ignore[assignment]
    if sum(top) > MAX_TOKENS_PER_REQUEST:
        return None  # each field may look plausible while the request as a whole is not
    inp, out, cw5, cw1, cr = top
    return inp, out, cw5, cw1, cr, 0


def _usage_counts(usage: dict[str, Any]) -> tuple[int, int, int, int, int] | None:
    """(input, output, cache_write_5m, cache_write_1h, cache_read) of one usage object.

    The cache-write total is split by the `cache_creation` breakdown when it has one (1h writes
    cost more); otherwise all of it is 5-minute writes."""
    get = usage.get
    inp = as_count(get("input_tokens"))
    out = as_count(get("output_tokens"))
    cw5 = as_count(get("cache_creation_input_tokens"))
    cr = as_count(get("cache_read_input_tokens"))
    if inp is None or out is None or cw5 is None or cr is None:
        return None
    cw1 = 0
    split = get("cache_creation")
    if type(split) is dict:
        e5 = as_count(split.get("ephemeral_5m_input_tokens"))
        e1 = as_count(split.get("ephemeral_1h_input_tokens"))
        if e5 is None or e1 is None:
            return None
        if e5 + e1:
            cw5, cw1 = e5, e1
    return inp, out, cw5, cw1, cr


# -- session-level records: cost-state, pr-link, worktree-state -----------------------------------


def _fold_cost_state(obj: dict[str, Any], state: FileParse, session: str) -> str | None:
    """Claude Code's own cumulative priced snapshot of the session (re-written many times; the
    largest is the latest). It includes auxiliary calls that never appear as assistant lines."""
    total = recorded_cost(obj.get("totalCostUSD"), MAX_SESSION_COST)
    if total is None:
        return "cost-state without a plausible totalCostUSD"
    models: dict[str, str] = {}
    counts: dict[str, int] = {}
    usage = obj.get("modelUsage")
    for model, mu in (usage.items() if type(usage) is dict else ()):
        if type(mu) is not dict:
            continue
        cost = recorded_cost(mu.get("costUSD"), MAX_SESSION_COST)
        if cost is not None:
            models[clean_text(model)] = cost
        for name in _COST_STATE_COUNTS:
            n = as_count(mu.get(name), MAX_TOKENS_CUMULATIVE)
            if n:
                counts[name] = counts.get(name, 0) + n
    state.fact("cost", session, [total, models, obj.get("hasUnknownModelCost") is True, counts])
    return None


# The token counts of a cost-state's modelUsage, summed over models (their meaning is not
# confirmed by Claude Code's docs: kept as recorded, for comparison, never priced).
_COST_STATE_COUNTS = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens",
                      "thinkingTokens", "webSearchRequests")


def _fold_pr_link(obj: dict[str, Any], state: FileParse, session: str) -> str | None:
    """A PR the session created or touched. Re-emitted on every resume and compaction: one per
    (session, prUrl), the earliest."""
    url = obj.get("prUrl")
    if type(url) is not str or not url:
        return "pr-link without a prUrl"
    number = obj.get("prNumber")
    repo = obj.get("prRepository")
    state.fact("pr", f"{session} {clean_text(url)}", [
        normalise_ts(obj.get("timestamp")) or "", session, number if type(number) is int and number > 0 else None,
        clean_text(url), clean_text(repo) or None, clean_text(obj.get("gitBranch")) or None,
        clean_text(obj.get("cwd")) or None,
    ])
    return None


def _fold_worktree_state(obj: dict[str, Any], state: FileParse, session: str) -> str | None:
    """Entering (or leaving) a worktree: from here on this session's lines inside it are on
    `worktreeBranch`, whatever their gitBranch says (anthropics/claude-code #53278).

    The record is read in two shapes: the fields at the top level, or inside a `worktreeSession`
    object (null there = the session left the worktree)."""
    ws = obj.get("worktreeSession", obj)
    worktrees = state.parser_state.setdefault("worktrees", {})
    branch = ws.get("worktreeBranch") if type(ws) is dict else None
    if type(branch) is not str or not branch:
        worktrees.pop(session, None)  # left the worktree, or a record that names no branch
        return None
    path = ws.get("worktreePath")  # type: ignore[union-attr]
    worktrees[session] = [clean_text(path) if type(path) is str and path else None, clean_text(branch)]
    return None


_SESSION_RECORDS = {"cost-state": _fold_cost_state, "pr-link": _fold_pr_link, "worktree-state": _fold_worktree_state}


def _inside(cwd: str, root: str | None) -> bool:
    """Whether a line ran in the worktree (any line, when the record gave no path)."""
    if root is None:
        return True
    root = root.rstrip("/")
    return cwd == root or cwd.startswith(root + "/")


def _request_key(msg_id: Any, request_id: Any, uuid: Any, spath: str, offset: int) -> str:
    """(message.id, requestId), message.id alone when the requestId is missing; a line without
    a message id cannot be matched to any copy: its uuid, or its place in the file."""
    if type(msg_id) is str and msg_id:
        key = f"c:{msg_id}|{request_id}" if type(request_id) is str and request_id else f"c:{msg_id}"
    else:
        key = f"c:u:{uuid}" if type(uuid) is str and uuid else f"c:f:{spath}:{offset}"
    return clean_text(key)  # the cache stores keys as UTF-8: no lone surrogates
