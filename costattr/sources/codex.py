"""OpenAI Codex CLI rollouts: `sessions/**/rollout-*.jsonl` and `archived_sessions/`.

Spend comes from `token_count` events. Their `total_token_usage` is cumulative per thread, so an
event counts only when the total advanced (Codex re-emits unchanged events), and the running
total, qualified by the thread it started in, doubles as a global dedup key: a fork replays its
parent's events with the parent's totals (re-stamped to the fork's second), and an archived copy
of a rollout repeats them too; both collapse onto the original, which has the earlier timestamp.
Qualifying by the root thread keeps two unrelated sessions that happen to reach the same totals
(identical scripted runs) apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
from costattr.sources.claude import normalise_ts

# thread_settings_applied (newer builds) names the model too; token_usage_record (0.153+)
# repeats each response's usage and is deliberately not a needle: counting it would double count.
NEEDLES = (b'"session_meta"', b'"turn_context"', b'"token_count"', b'"thread_settings_applied"')
UUID_TAIL = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
UNKNOWN_MODEL = ""  # no model named yet: the request is reported as unpriced, not guessed


Usage = tuple[int, int, int, int, int]  # input incl. cached and written, cached, cache written, output, reasoning


def _usage_tuple(usage: Any, limit: int = MAX_TOKENS_PER_REQUEST) -> Usage | None:
    """(input incl. cached and cache-written, cached, cache-written, output incl. reasoning,
    reasoning), or None if implausible.

    `cache_write_input_tokens` (codex-cli 0.145+; `cache_creation_input_tokens` in some
    writers) is a part of `input_tokens`, like `cached_input_tokens`: it is carved out of the
    uncached input, never added to it. Older rollouts do not report it (absent, not zero)."""
    if type(usage) is not dict:
        return None
    inp = as_count(usage.get("input_tokens"), limit)
    cached = as_count(usage.get("cached_input_tokens", usage.get("cache_read_input_tokens")), limit)
    written = as_count(usage.get("cache_write_input_tokens", usage.get("cache_creation_input_tokens")), limit)
    out = as_count(usage.get("output_tokens"), limit)
    reasoning = as_count(usage.get("reasoning_output_tokens"), limit)
    if inp is None or cached is None or written is None or out is None or reasoning is None:
        return None
    cached = min(cached, inp)
    return inp, cached, min(written, inp - cached), out, reasoning


def _request_usage(last_usage: Any, total: Usage, prev: list[int] | None) -> Usage | None:
    """One request's usage: `last_token_usage` when it is there, else how far the running total
    advanced (early Codex builds); None when that is not a plausible single request."""
    last = _usage_tuple(last_usage) if last_usage is not None else None
    if last is None:
        base = prev or [0, 0, 0, 0, 0]
        inp, cached, written, out, reasoning = (max(0, t - b) for t, b in zip(total, base, strict=True))
        cached = min(cached, inp)
        last = inp, cached, min(written, inp - cached), out, reasoning
    # input includes cached and written tokens and output includes reasoning: input + output is the request
    return last if last[0] + last[3] <= MAX_TOKENS_PER_REQUEST else None


def _is_rollout(name: str) -> bool:
    return name.startswith("rollout-") and name.endswith(".jsonl")


def _parent_thread(payload: dict[str, Any]) -> tuple[str | None, bool]:
    """(thread this one was started from, whether it is a spawned subagent) from a session_meta."""
    forked = payload.get("forked_from_id")
    if isinstance(forked, str) and forked:
        return forked, False
    source = payload.get("source")
    sub = source.get("subagent") if isinstance(source, dict) else None
    spawn = sub.get("thread_spawn") if isinstance(sub, dict) else None
    parent = spawn.get("parent_thread_id") if isinstance(spawn, dict) else None
    return (parent, True) if isinstance(parent, str) and parent else (None, False)


def _fold_meta(payload: dict[str, Any], st: dict[str, Any]) -> None:
    """The first session_meta is canonical: id, cwd, branch. A fork or spawned thread starts from
    its parent's history: its totals are keyed by the root thread so the replay dedupes, and a
    spawned subagent's spend folds into the parent's session. The parent's own session_meta,
    replayed before any token_count, extends the chain (a fork of a fork)."""
    sid = payload.get("id")
    parent, spawned = _parent_thread(payload)
    if not st["meta_seen"]:
        st["meta_seen"] = True
        if isinstance(sid, str) and sid:
            st["session"] = st["lineage"] = clean_text(sid)
        st["cwd"] = clean_text(payload.get("cwd"))
        git = payload.get("git")
        if isinstance(git, dict):
            st["branch"] = clean_text(git.get("branch")) or None
        if parent:
            st["lineage"] = clean_text(parent)
            if spawned:
                st["session"] = st["lineage"]
    elif not st["counted"] and parent and sid == st["lineage"]:
        st["lineage"] = clean_text(parent)


class CodexSource:
    name = "codex"

    def roots(self) -> list[Path]:
        return paths.codex_session_dirs()

    def discover(self) -> Iterator[Path]:
        return discover_under(self.roots(), _is_rollout)

    def parse(self, path: Path, data: bytes, base_offset: int, state: FileParse) -> FileParse:
        st = state.parser_state
        if "session" not in st:
            m = UUID_TAIL.search(path.stem)
            sid = m.group(1) if m else path.stem
            st.update(session=sid, lineage=sid, cwd="", branch=None, model=UNKNOWN_MODEL, settings_model=UNKNOWN_MODEL,
                      total=None, meta_seen=False, counted=False)
        spath = str(path)
        for start, line in iter_complete_lines(data, NEEDLES):
            try:
                obj = loads_line(line)
            except ValueError:
                state.skip("malformed JSON", base_offset + start, spath)
                continue
            reason = self._fold_line(obj, state, st, base_offset + start)
            if reason:
                state.skip(reason, base_offset + start, spath)
        return state

    @staticmethod
    def _fold_line(obj: Any, state: FileParse, st: dict[str, Any], offset: int) -> str | None:
        if not isinstance(obj, dict):
            return "not a JSON object"
        kind = obj.get("type")
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            return None if kind not in ("session_meta", "turn_context", "event_msg") else "payload is not an object"
        if kind == "session_meta":
            _fold_meta(payload, st)
            return None
        if kind == "turn_context":
            if isinstance(payload.get("model"), str):
                st["model"] = clean_text(payload["model"])
            if isinstance(payload.get("cwd"), str) and payload["cwd"]:
                st["cwd"] = clean_text(payload["cwd"])
            return None
        if kind != "event_msg":
            return None  # token_usage_record among them: the token_count next to it carries the same usage
        if payload.get("type") == "thread_settings_applied":
            settings = payload.get("thread_settings")
            model = settings.get("model") if isinstance(settings, dict) else None
            if isinstance(model, str) and model:
                st["settings_model"] = clean_text(model)
            return None
        if payload.get("type") != "token_count":
            return None
        info = payload.get("info")
        if info is None:
            return None  # a rate-limit refresh, not a request
        if not isinstance(info, dict):
            return "token_count info is not an object"
        total = _usage_tuple(info.get("total_token_usage"), MAX_TOKENS_CUMULATIVE)
        if total is None:
            return "implausible token counts"
        prev = st["total"]
        if prev is not None and list(total) == prev:
            return None  # re-emitted event: the total did not move, nothing was spent
        st["total"] = list(total)
        last = _request_usage(info.get("last_token_usage"), total, prev)
        if last is None:
            return "implausible token counts"
        ts = normalise_ts(obj.get("timestamp"))
        if ts is None:
            return "missing or invalid timestamp"
        inp, cached, written, out, reasoning = last
        # A turn_context's model wins; thread_settings_applied is the fallback for builds (and
        # sessions) that announce the model only there.
        model = info.get("model") or info.get("model_name") or st["model"] or st.get("settings_model")
        st["counted"] = True
        # The key is the running total without the cache-write count, as before 0.145 added it:
        # the same request keeps the same key whichever build wrote it.
        key = f"x:{st['lineage']}:" + ",".join(map(str, (total[0], total[1], total[3], total[4])))
        state.keep(
            (key, ts, clean_text(model), st["cwd"], st["branch"], False, None, None, None, st["session"], offset,
             inp - cached - written, out, written, 0, cached, reasoning)
        )
        return None
