"""A seeded transcript corpus with its ground truth, for the corpus test and the benchmarks.

`generate_corpus` writes Claude Code and Codex files that look like weeks of real use (most bytes
in tool output, streamed responses, subagents with progress replays, Codex rollouts) up to a
target size, and plants every trap a reader must survive (see `_plant_*`). Alongside it keeps the
ground truth: per session the tokens a correct reader counts and their list-price cost, computed
here from a small price table of its own, never through costattr.pricing, so the corpus test is
a second opinion on both the readers and the pricing.

"Bad lines" in the truth are the lines a reader must skip and count: usage-bearing lines it
cannot use (broken JSON, impossible token counts) and torn last lines. Lines without a usage
marker are never parsed (that is the performance design), so junk there is not counted.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from costattr.models import Tokens
from costattr.sessions import NO_BRANCH
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter, Response, dumps

# ---------------------------------------------------------------------------------------------
# Ground-truth prices: USD per million tokens, from the providers' price pages.


@dataclass(frozen=True)
class Rates:
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal


@dataclass(frozen=True)
class ModelRates:
    base: Rates
    long_context: Rates | None = None  # billed for the whole request when the prompt exceeds 200k
    fast: Decimal = Decimal(1)


def _rates(*values: str) -> Rates:
    return Rates(*(Decimal(v) for v in values))


PRICES: dict[str, ModelRates] = {
    "claude-sonnet-4-5-20250929": ModelRates(_rates("3", "15", "3.75", "6", "0.30"),
                                             _rates("6", "22.50", "7.50", "12", "0.60")),
    "claude-opus-4-6": ModelRates(_rates("5", "25", "6.25", "10", "0.50"), fast=Decimal(6)),
    "claude-haiku-4-5-20251001": ModelRates(_rates("1", "5", "1.25", "2", "0.10")),
    "gpt-5.1-codex": ModelRates(_rates("1.25", "10", "0", "0", "0.125")),
    "gpt-5-codex": ModelRates(_rates("1.25", "10", "0", "0", "0.125")),
}
LONG_CONTEXT_THRESHOLD = 200_000
CORPUS_VERSION = 2  # bump when the generator writes different bytes for the same seed
UNKNOWN_CLAUDE_MODEL = "acme-coder-1"  # a third-party gateway model no price table knows
UNKNOWN_CODEX_MODEL = "acme-codex-9"
SONNET, OPUS, HAIKU = "claude-sonnet-4-5-20250929", "claude-opus-4-6", "claude-haiku-4-5-20251001"


def list_price(model: str, t: Tokens, speed: str | None = None) -> Decimal | None:
    """Exact list-price cost of one request; None for a model without a price."""
    price = PRICES.get(model)
    if price is None:
        return None
    prompt = t.input + t.cache_write_5m + t.cache_write_1h + t.cache_read
    r = price.long_context if price.long_context and prompt > LONG_CONTEXT_THRESHOLD else price.base
    cost = (t.input * r.input + t.output * r.output + t.cache_write_5m * r.cache_write_5m
            + t.cache_write_1h * r.cache_write_1h + t.cache_read * r.cache_read) / Decimal(1_000_000)
    return cost * price.fast if speed == "fast" else cost


# ---------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class SessionTruth:
    tool: str
    tokens: Tokens = field(default_factory=Tokens)
    cost: Decimal = Decimal(0)
    requests: int = 0
    unpriced_requests: int = 0
    models: set[str] = field(default_factory=set)
    branches: dict[str, Tokens] = field(default_factory=dict)  # "" = no branch

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "tokens": self.tokens.as_dict(), "cost_usd": str(self.cost),
                "requests": self.requests, "unpriced_requests": self.unpriced_requests,
                "models": sorted(self.models),
                "branches": {b: t.as_dict() for b, t in sorted(self.branches.items())}}


class GroundTruth:
    """What a correct reader reports for the corpus, accumulated while it is written."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionTruth] = {}
        self.skipped_lines = 0
        self.traps: Counter[str] = Counter()
        self.trap_sessions: dict[str, set[str]] = {}  # which sessions each trap was planted in

    def spend(self, tool: str, session: str, model: str, tokens: Tokens, branch: str | None, *,
              speed: str | None = None, recorded_cost: Decimal | None = None) -> None:
        """One request that must be counted exactly once, in `session`."""
        s = self.sessions.setdefault(session, SessionTruth(tool))
        s.tokens.add(tokens)
        s.branches.setdefault(branch or "", Tokens()).add(tokens)
        s.requests += 1
        s.models.add(model)
        cost = recorded_cost if recorded_cost is not None else list_price(model, tokens, speed)
        if cost is None:
            s.unpriced_requests += 1
        else:
            s.cost += cost

    def bad_lines(self, trap: str, session: str, n: int = 1) -> None:
        self.skipped_lines += n
        self.trap(trap, session, n)

    def trap(self, name: str, session: str, n: int = 1) -> None:
        self.traps[name] += n
        self.trap_sessions.setdefault(name, set()).add(session)

    def as_dict(self) -> dict[str, Any]:
        total = Tokens()
        for s in self.sessions.values():
            total.add(s.tokens)
        return {
            "sessions": {sid: s.as_dict() for sid, s in sorted(self.sessions.items())},
            "totals": {"tokens": total.as_dict(), "cost_usd": str(sum((s.cost for s in self.sessions.values()),
                                                                      Decimal(0))),
                       "sessions": len(self.sessions), "requests": sum(s.requests for s in self.sessions.values()),
                       "unpriced_requests": sum(s.unpriced_requests for s in self.sessions.values())},
            "skipped_lines": self.skipped_lines,
            "traps": dict(sorted(self.traps.items())),
            "trap_sessions": {t: sorted(ss) for t, ss in sorted(self.trap_sessions.items())},
        }


def compare_to_truth(truth: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """Every difference between a `costattr sessions --format json` report and the ground truth:
    tokens, requests, unpriced counts, models and branches exactly, cost to 1e-6 relative, and
    the skipped-line count. An empty list means the report is right."""
    problems: list[str] = []
    got = {s["session_id"]: s for s in report["sessions"]}
    problems += [f"{sid}: {'unexpected' if sid in got else 'missing'} session"
                 for sid in sorted(got.keys() ^ truth["sessions"].keys())]
    for sid, want in truth["sessions"].items():
        s = got.get(sid)
        if s is None:
            continue
        for key in ("tool", "tokens", "requests", "unpriced_requests"):
            if s[key] != want[key]:
                problems.append(f"{sid}: {key} {s[key]} != {want[key]}")
        if set(s["models"]) != set(want["models"]):
            problems.append(f"{sid}: models {sorted(s['models'])} != {want['models']}")
        branches = {b: v["tokens"] for b, v in s["branches"].items()}
        if branches != {b or NO_BRANCH: t for b, t in want["branches"].items()}:
            problems.append(f"{sid}: branches {branches} != {want['branches']}")
        if not _close(s["cost_usd"], want["cost_usd"]):
            problems.append(f"{sid}: cost {s['cost_usd']} != {want['cost_usd']}")
    if report["totals"]["tokens"] != truth["totals"]["tokens"]:
        problems.append(f"totals: tokens {report['totals']['tokens']} != {truth['totals']['tokens']}")
    if not _close(report["totals"]["cost_usd"], truth["totals"]["cost_usd"]):
        problems.append(f"totals: cost {report['totals']['cost_usd']} != {truth['totals']['cost_usd']}")
    if report["skipped_lines"] != truth["skipped_lines"]:
        problems.append(f"skipped_lines {report['skipped_lines']} != {truth['skipped_lines']}")
    return problems


def _close(got: float, want: str) -> bool:
    """Within 1e-6 relative: the JSON edge is a float."""
    expected = Decimal(want)
    return abs(Decimal(repr(got)) - expected) <= Decimal("1e-6") * max(expected, Decimal("1e-9"))


# ---------------------------------------------------------------------------------------------
# The generator

PROJECTS: list[tuple[str, list[str]]] = [
    ("/home/dev/src/acme-api", ["main", "feature/PROJ-142-token-refresh", "fix/PROJ-150-expiry"]),
    ("/home/dev/src/web-app", ["main", "feat/123-dark-mode", "issue-88-login"]),
    ("/home/dev/work/infra", ["main", "OPS-77-terraform-state"]),
    ("/Users/sam/code/payments.v2", ["develop", "PAY-9-refunds", "fix/utf-8"]),
    ("/home/dev/src/docs site", ["main", "release-1.2"]),
]
VERSIONS = ["2.1.218", "2.1.173", "2.0.28", "1.0.98"]
VERSION_WEIGHTS = [4, 4, 2, 1]
WORDS = ("def class return self import from if else for while try except with as yield lambda None True "
         "token refresh expiry session cache request client server config parse value index error test "
         "assert result data user path file line count total model price cost branch commit").split()


def generate_corpus(claude_dir: Path, codex_home: Path, target_bytes: int, seed: int = 1,
                    truth_path: Path | None = None) -> dict[str, Any]:
    """Write a corpus of about `target_bytes` under `claude_dir/projects` and `codex_home`;
    return its ground truth (also written as JSON to `truth_path` when given)."""
    gen = _Generator(Path(claude_dir) / "projects", Path(codex_home), target_bytes, seed)
    gen.run()
    truth = gen.truth.as_dict()
    truth.update(seed=seed, target_bytes=target_bytes, bytes=gen.written, version=CORPUS_VERSION)
    if truth_path is not None:
        Path(truth_path).write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return truth


def _written(w: ClaudeSessionWriter, subs: list[ClaudeSessionWriter]) -> int:
    """Bytes a session wrote so far, its own subagent files included."""
    return w.bytes_written + sum(s.bytes_written for s in subs if s.owns_file)


@dataclass
class _Context:
    """One conversation's growing prompt cache, and the branches its project has."""

    cache: int
    branches: list[str] = field(default_factory=lambda: ["main"])
    pending_write: int = 0


class _Generator:
    def __init__(self, projects: Path, codex_home: Path, target: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.projects = projects
        self.codex_home = codex_home
        self.target = target
        self.truth = GroundTruth()
        self.written = 0
        self.codex_written = 0
        self.epoch = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
        self.pool = self._text_pool()

    # -- helpers ------------------------------------------------------------------------------

    def _text_pool(self) -> str:
        lines = []
        for _ in range(6000):
            words = self.rng.choices(WORDS, k=self.rng.randint(2, 14))
            lines.append("    " * self.rng.randint(0, 3) + " ".join(words))
        pool = "\n".join(lines)
        return pool + pool  # doubled, so any slice up to len/2 is one copy

    def text(self, n: int) -> str:
        half = len(self.pool) // 2
        if n > half:
            return (self.pool[:half] * (n // half + 1))[:n]
        start = self.rng.randrange(half)
        return self.pool[start : start + n]

    def output_size(self) -> int:
        """Tool output bytes: mostly small (median 2.4 KB), a long tail of whole files and logs."""
        return min(400_000, int(self.rng.lognormvariate(7.8, 1.4)))

    def when(self) -> datetime:
        return self.epoch + timedelta(seconds=self.rng.randint(0, 60 * 86400))

    def done(self, *writers: ClaudeSessionWriter | CodexRolloutWriter) -> None:
        for w in writers:
            w.close()
            if getattr(w, "owns_file", True):
                self.written += w.bytes_written
                if isinstance(w, CodexRolloutWriter):
                    self.codex_written += w.bytes_written

    def claude_writer(self, version: str | None = None, project: int | None = None
                      ) -> tuple[ClaudeSessionWriter, _Context]:
        cwd, branches = PROJECTS[project] if project is not None else self.rng.choice(PROJECTS)
        version = version or self.rng.choices(VERSIONS, VERSION_WEIGHTS)[0]
        w = ClaudeSessionWriter(self.projects, cwd=cwd, branch=self.rng.choice(branches), version=version,
                                start=self.when(), rng=self.rng, autoflush=False)
        return w, _Context(self.rng.randint(12_000, 20_000), branches)

    # -- realistic Claude Code sessions --------------------------------------------------------

    def claude_session(self, size: int) -> None:
        w, ctx = self.claude_writer()
        model = self.rng.choices([SONNET, OPUS, HAIKU], [70, 25, 5])[0]
        subs: list[ClaudeSessionWriter] = []
        while _written(w, subs) < size:
            self.claude_turn(w, model, ctx, subs, size)
        self.done(w, *subs)

    def claude_turn(self, w: ClaudeSessionWriter, model: str, ctx: _Context, subs: list[ClaudeSessionWriter],
                    size: int) -> None:
        if self.rng.random() < 0.08:
            w.branch = self.rng.choice(ctx.branches)
        w.clock.advance(self.rng.randint(20, 900))
        if self.rng.random() < 0.6:
            w.bookkeeping()
        w.user_prompt(self.text(self.rng.randint(40, 600)))
        for _ in range(self.rng.randint(1, 7)):
            room = size - _written(w, subs)
            if room <= 0:
                break
            if self.rng.random() < 0.08 and not w.version.startswith("1."):
                subs.append(self.claude_subagent(w, model, ctx, room))
                continue
            r = self.claude_call(w, model, ctx)
            if r.tool_use_id is None:
                break
            self.claude_tool_result(w, r, ctx, room)

    def claude_call(self, w: ClaudeSessionWriter, model: str, ctx: _Context, *,
                    content: list[dict[str, Any]] | None = None, session: str | None = None) -> Response:
        """One counted API call; the cache grows by what the last tool returned."""
        write = ctx.pending_write + self.rng.randint(0, 400)
        one_hour = w.version.startswith("2.1") and self.rng.random() < 0.8
        placeholder = w.version.startswith(("1.", "2.0")) or self.rng.random() < 0.5
        r = w.response(model, input=self.rng.randint(1, 12), output=int(self.rng.lognormvariate(5.3, 1.0)) + 1,
                       cache_write_5m=0 if one_hour else write, cache_write_1h=write if one_hour else 0,
                       cache_read=ctx.cache, blocks=self.rng.choices([1, 2, 3, 4], [2, 5, 4, 1])[0],
                       placeholder_output=placeholder, content=content)
        self.truth.spend("claude", session or w.session_id, model, r.tokens, w.branch)
        ctx.cache += write
        ctx.pending_write = 0
        if ctx.cache > 185_000:  # auto-compaction: the conversation restarts from a summary
            ctx.cache = self.rng.randint(12_000, 20_000)
        return r

    def claude_tool_result(self, w: ClaudeSessionWriter, r: Response, ctx: _Context, room: int = 1 << 30) -> None:
        out = self.text(min(self.output_size(), max(200, room // 2)))  # the result holds it twice
        if self.rng.random() < 0.5:  # Read: the file is in the result twice (content + toolUseResult)
            result: Any = {"type": "text", "file": {"filePath": f"{w.cwd}/src/module_{self.rng.randint(1, 99)}.py",
                           "content": out, "numLines": out.count("\n") + 1, "startLine": 1,
                           "totalLines": out.count("\n") + 1}}
        else:
            result = {"stdout": out, "stderr": "", "interrupted": False, "isImage": False}
        w.user_tool_result(r.tool_use_id, out, tool_use_result=result)
        ctx.pending_write = len(out) // 4

    def claude_subagent(self, w: ClaudeSessionWriter, model: str, ctx: _Context,
                        room: int = 1 << 40) -> ClaudeSessionWriter:
        """An Agent/Task call: the subagent's own transcript (layout by version), progress
        replays of its messages in the parent (2.1.x), and the usage summary on the result."""
        tool_id, prompt = w.ids.tool_use_id(), self.text(300)
        call = [{"type": "tool_use", "id": tool_id, "name": "Agent" if w.version.startswith("2.1") else "Task",
                 "input": {"subagent_type": "general-purpose", "description": "Investigate", "prompt": prompt}}]
        self.claude_call(w, model, ctx, content=call)
        sub = w.subagent(flat=w.version.startswith("2.0"), inline=w.version.startswith("1."))
        sub.user_prompt(prompt)
        sub_model = self.rng.choice([HAIKU, model])
        sctx = _Context(self.rng.randint(8_000, 15_000))
        start = _written(w, [sub])
        for _ in range(self.rng.randint(2, 9)):
            r = self.claude_call(sub, sub_model, sctx)
            if w.version.startswith("2.1") and self.rng.random() < 0.6:
                # Sometimes only the first (placeholder) block is replayed: the subagent file's
                # complete copy must still win.
                w.progress_replay(r, sub.agent_id, tool_id, lines=1 if self.rng.random() < 0.3 else None)
                self.truth.trap("progress replay", w.session_id)
            left = room - (_written(w, [sub]) - start)
            if r.tool_use_id is None or left <= 0:
                break
            self.claude_tool_result(sub, r, sctx, left)
        w.clock.now = max(w.clock.now, sub.clock.now)
        w.user_tool_result(tool_id, self.text(800), with_task_usage_summary=True, agent_id=sub.agent_id)
        self.truth.trap("toolUseResult.usage summary", w.session_id)
        return sub

    # -- realistic Codex sessions --------------------------------------------------------------

    def codex_writer(self, **kw: Any) -> CodexRolloutWriter:
        cwd, branches = self.rng.choice(PROJECTS)
        return CodexRolloutWriter(self.codex_home, cwd=cwd, branch=self.rng.choice(branches), start=self.when(),
                                  rng=self.rng, instructions_bytes=self.rng.randint(6_000, 18_000), autoflush=False,
                                  **kw)

    def codex_session(self, size: int) -> None:
        c = self.codex_writer()
        model = self.rng.choice(["gpt-5.1-codex", "gpt-5-codex"])
        context = self.rng.randint(9_000, 14_000)
        while c.bytes_written < size:
            context = self.codex_turn(c, model, context, size=size)
        self.done(c)

    def codex_turn(self, c: CodexRolloutWriter, model: str, context: int, *, with_last: bool = True,
                   size: int = 1 << 40) -> int:
        c.turn(model, self.text(self.rng.randint(40, 400)))
        if self.rng.random() < 0.6:
            c.rate_limit_only()
        for _ in range(self.rng.randint(1, 6)):
            if c.bytes_written >= size:
                break
            c.tool_call(self.text(min(self.output_size() // 2, max(200, size - c.bytes_written))), "pytest -q")
            cached = int(context * self.rng.uniform(0.55, 0.95))
            out = int(self.rng.lognormvariate(5.5, 1.0)) + 1
            t = c.token_count(context, cached, out, self.rng.randint(0, out), with_last=with_last)
            self.truth.spend("codex", c.session_id, model, t, c.branch)
            context += self.rng.randint(400, 5_000)
            if context > 240_000:  # Codex compacts the conversation near its context window
                context = self.rng.randint(9_000, 14_000)
            if self.rng.random() < 0.2:
                c.reemit()
                self.truth.trap("codex re-emitted token_count", c.session_id)
        c.agent_message(self.text(self.rng.randint(80, 900)))
        return context

    # -- the traps ------------------------------------------------------------------------------

    def run(self) -> None:
        self._plant_claude_traps()
        self._plant_legacy_layouts()
        self._plant_codex_traps()
        self._plant_junk_files()
        while self.written < self.target:
            size = min(int(self.rng.lognormvariate(13.0, 1.2)), 40 << 20)  # median ~440 KB per session
            size = max(20_000, min(size, self.target - self.written))
            if self.codex_written < 0.2 * self.written:
                self.codex_session(size)
            else:
                self.claude_session(size)

    def _plant_claude_traps(self) -> None:
        w, ctx = self.claude_writer("2.1.173", project=0)
        subs: list[ClaudeSessionWriter] = []
        w.user_prompt("Fix the flaky expiry test")
        first = self.claude_call(w, SONNET, ctx)  # streamed: output 1, 1, final
        self.claude_tool_result(w, first, ctx)
        self._spend(w, w.response(SONNET, outputs=[4, 310, 9], cache_read=ctx.cache), "largest usage not last")
        self._spend(w, w.response(SONNET, request_id=None, blocks=2, cache_read=ctx.cache), "missing requestId")
        self._spend(w, w.response(UNKNOWN_CLAUDE_MODEL, output=77, cache_read=9_000), "unknown model")
        self._spend(w, w.response(SONNET, cache_write_1h=25_000, cache_read=ctx.cache), "1h cache write")
        self._spend(w, w.response(SONNET, input=12, cache_write_5m=2_000, cache_read=205_000, output=900),
                    "long context (>200k prompt)")
        self._spend(w, w.response(OPUS, speed="fast", cache_read=30_000, output=400), "fast mode", speed="fast")
        w.synthetic()
        w.synthetic("No response requested.")
        self.truth.trap("<synthetic> / isApiErrorMessage", w.session_id)
        subs.append(self.claude_subagent(w, SONNET, ctx))
        side = w.btw_replay(first, cache_read=first.tokens.cache_read + 50_000)
        self.truth.trap("/btw sidechain replay", w.session_id)
        self._spend(w, w.response(SONNET, text="binary output \udcb2\ud83d cut", cache_read=ctx.cache),
                    "lone-surrogate escapes")
        self._spend(w, w.response(SONNET, text="BAD_UTF8_HERE", edit=(b"BAD_UTF8_HERE", b"caf\xc3 \xff\xfe"),
                                  cache_read=ctx.cache), "invalid UTF-8 inside a usage line (recovered)")
        w.raw(b'{"type":"user","message":{"role":"user","content":"\xff\xfe raw tool bytes"}}\n')

        resumed = w.resume_copy()  # copies everything so far, original sessionId kept
        self.truth.trap("resume copy", resumed.session_id)
        rctx = _Context(ctx.cache, ctx.branches)
        for _ in range(3):
            self.claude_call(resumed, SONNET, rctx)

        self._plant_bad_usage_lines(w)
        w.response(SONNET, blocks=1, torn=True)
        self.truth.bad_lines("torn last line", w.session_id)
        self.done(w, resumed, side, *subs)

    def _spend(self, w: ClaudeSessionWriter, r: Response, trap: str, speed: str | None = None) -> None:
        self.truth.spend("claude", w.session_id, r.model, r.tokens, w.branch, speed=speed)
        self.truth.trap(trap, w.session_id)

    def _plant_bad_usage_lines(self, w: ClaudeSessionWriter) -> None:
        """Usage lines no reader can use (skipped and counted), and one it can (null = 0)."""
        for arg, key, value, broken in (("input", "input_tokens", 7771, '"abc"'),
                                        ("output", "output_tokens", 7772, "-5"),
                                        ("cache_read", "cache_read_input_tokens", 7773, "5000000000")):
            edit = (f'"{key}":{value}'.encode(), f'"{key}":{broken}'.encode())
            counts: dict[str, Any] = {arg: value}
            w.response(SONNET, blocks=1, edit=edit, **counts)
            self.truth.bad_lines("implausible token counts", w.session_id)
        r = w.response(SONNET, blocks=1, output=7774, cache_read=4_000,
                       edit=(b'"output_tokens":7774', b'"output_tokens":null'))
        t = r.tokens
        self.truth.spend("claude", w.session_id, SONNET, Tokens(t.input, 0, t.cache_write_5m, t.cache_write_1h,
                                                                t.cache_read), w.branch)
        self.truth.trap("null token count (= 0)", w.session_id)
        w.raw(b'{"type":"assistant","message":{"id":"msg_01stub","usage":{"input_tokens":12,"outp\n')
        w.raw(b'{"type":"pr-link","sessionId":"x","prNu{"type":"assistant","message":{"usage":{"input_tok\n')
        self.truth.bad_lines("malformed JSON", w.session_id, 2)

    def _plant_legacy_layouts(self) -> None:
        # 2.0.x: flat agent-*.jsonl next to the session, lines carrying the parent's sessionId.
        w, ctx = self.claude_writer("2.0.28", project=1)
        w.user_prompt("Add dark mode")
        sub = self.claude_subagent(w, SONNET, ctx)
        self.truth.trap("flat agent-*.jsonl subagent", w.session_id)
        r = w.response(SONNET, blocks=1, legacy=True, cost_usd=0.1234, cache_read=1_000, output=50)
        self.truth.spend("claude", w.session_id, SONNET, r.tokens, w.branch, recorded_cost=Decimal("0.1234"))
        self.truth.trap("costUSD (old format)", w.session_id)
        # 1.0.x: sidechain lines inline in the session file.
        old, octx = self.claude_writer("1.0.98", project=2)
        old.user_prompt("Plan the terraform change")
        inline = old.subagent(inline=True)
        for _ in range(3):
            self.claude_call(inline, SONNET, octx)
        self.claude_call(old, SONNET, octx)
        self.truth.trap("inline sidechain lines", old.session_id)
        # A >5 MB line (a Write of a generated file), and a huge tool result next to it.
        big, _ = self.claude_writer("2.1.218", project=3)
        huge = 5_300_000 if self.target >= 40 << 20 else max(50_000, self.target // 20)
        self._spend(big, big.response(SONNET, blocks=2, tool_input_bytes=huge, cache_read=20_000), "huge line")
        big.user_tool_result(None, self.text(huge))
        self.done(w, sub, old, big)

    def _plant_codex_traps(self) -> None:
        c = self.codex_writer()
        context = 11_000
        for with_last in (True, False, True):  # the middle turn: no last_token_usage, diff the totals
            context = self.codex_turn(c, "gpt-5.1-codex", context, with_last=with_last)
        c.rate_limit_only()
        c.reemit()
        self.truth.trap("codex info null / re-emit / missing last_token_usage", c.session_id)
        fork = c.fork()
        self.truth.trap("codex fork replay", fork.session_id)
        self.codex_turn(fork, "gpt-5.1-codex", context)
        archived = c.archive_copy()
        self.truth.trap("codex archived copy", c.session_id)
        self.written += archived.stat().st_size
        # Two unrelated scripted runs that reach identical totals: both are real spend.
        for _ in range(2):
            twin = self.codex_writer()
            twin.turn("gpt-5-codex", "Run the nightly check")
            t = twin.token_count(10_500, 0, 321, 64)
            self.truth.spend("codex", twin.session_id, "gpt-5-codex", t, twin.branch)
            self.truth.trap("codex identical totals in two sessions", twin.session_id)
            self.done(twin)
        odd = self.codex_writer()
        odd.turn(UNKNOWN_CODEX_MODEL)
        t = odd.token_count(20_000, 15_000, 500, 100)
        self.truth.spend("codex", odd.session_id, UNKNOWN_CODEX_MODEL, t, odd.branch)
        odd.raw(dumps({"timestamp": "2026-10-02T10:00:00.000Z", "type": "event_msg", "payload": {
            "type": "token_count", "info": {"total_token_usage": {"input_tokens": "abc"}}}}) + b"\n")
        odd.raw(b'{"timestamp":"2026-10-02T10:00:01.000Z","type":"event_msg","payload":{"type":"token_count","in\n')
        odd.raw(b'{"timestamp":"2026-10-02T10:00:02.000Z","type":"event_msg","payload":{"type":"token_count"')
        self.truth.bad_lines("codex implausible / malformed / torn", odd.session_id, 3)
        self.done(c, fork, odd)

    def _plant_junk_files(self) -> None:
        """A random binary file where a transcript should be: counted, never fatal."""
        junk = bytearray(self.rng.randbytes(6_000))
        junk[2_000:2_000] = b'\n\x00\xff"usage"\xfe garbage\n'
        path = self.projects / "-home-dev-src-junk" / "5b9c6c52-0d4e-4f5e-9b1a-3f2d6c7e8a90.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(junk))
        lines = bytes(junk).split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        self.truth.bad_lines("binary file", path.stem, sum(b'"usage"' in ln for ln in complete) + (1 if tail else 0))
        self.written += len(junk)
