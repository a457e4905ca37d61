"""Hostile input: transcripts (hypothesis-driven) and git (branch names, messages, odd repositories).

Transcripts: random bytes, invalid UTF-8, lone surrogates, 5 MB lines, deep nesting, wrong types,
negative or absurd token counts, duplicate lines across files: no crash, each bad line counted in
skipped_lines, valid sessions exact. Property: however valid events are split across files, lines
and incremental runs (byte cuts anywhere, torn lines included), the totals never change.

Git: branch names with markdown, HTML, shell metacharacters, non-ASCII and non-UTF-8 bytes,
commit messages with newlines, a repository with no commits, a detached HEAD, a bare repository,
a submodule: clear behaviour, no crash, nothing injected into reports or PR comments.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from helpers_reliability import HOOK, env_with, figures, ledger_file, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costattr.pricing import load_table, price_events
from costattr.scan import scan
from costattr.testing.gitrepo import commit, git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter

GENERATED = {"valid_events": 0, "hostile_lines": 0, "examples": 0}
HYPO = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

MODELS = ["claude-sonnet-4-5-20250929", "claude-opus-4-5", "claude-haiku-4-5", "no-such-model-x"]
SESSIONS = ["11111111-aaaa-4aaa-8aaa-000000000001", "22222222-bbbb-4bbb-8bbb-000000000002"]
CWD = "/home/dev/src/app"


# ---------------------------------------------------------------------------------------------
# Line builders (the real Claude Code shapes; json.dumps so lone surrogates can be written)

@dataclass(frozen=True)
class Ev:
    n: int
    session: int
    model: str
    tokens: tuple[int, int, int, int, int]  # input, output, cache_write_5m, cache_write_1h, cache_read
    blocks: int
    sidechain: bool
    text: str  # "plain" | "surrogate" | "raw-bytes" | "nested" | "unicode" | "odd-fields"


def _ts(n: int) -> str:
    return f"2026-10-01T09:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z"


def _content(kind: str) -> Any:
    if kind == "surrogate":
        return [{"type": "text", "text": "binary tool output cut mid-character: \ud83d"}]
    if kind == "raw-bytes":
        return [{"type": "text", "text": "RAWBYTES"}]
    if kind == "nested":
        deep: Any = "bottom"
        for _ in range(60):
            deep = [deep]
        return [{"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {"deep": deep}}]
    if kind == "unicode":
        return [{"type": "text", "text": "日本語 ünïcödé \u202e RTL <script>alert(1)</script> @octocat | x |"}]
    return [{"type": "text", "text": "ok"}]


def claude_obj(ev: Ev, out: int, block: int, *, session: str | None = None) -> dict[str, Any]:
    inp, _out, cw5, cw1, cr = ev.tokens
    obj: dict[str, Any] = {
        "parentUuid": None, "isSidechain": ev.sidechain, "userType": "external", "cwd": CWD,
        "sessionId": session or SESSIONS[ev.session], "version": "2.1.173", "gitBranch": "main",
        "type": "assistant", "uuid": f"uuid-{ev.n}-{block}", "timestamp": _ts(ev.n),
        "requestId": f"req_{ev.n:020d}",
        "message": {"id": f"msg_{ev.n:022d}", "type": "message", "role": "assistant", "model": ev.model,
                    "content": _content(ev.text),
                    "usage": {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": cw5 + cw1,
                              "cache_read_input_tokens": cr,
                              "cache_creation": {"ephemeral_5m_input_tokens": cw5, "ephemeral_1h_input_tokens": cw1}}},
    }
    if ev.sidechain:
        obj["agentId"] = "a0123456789abcdef"
    if ev.text == "odd-fields":  # wrong types where they do not matter, unknown fields
        obj.update(costUSD="NaN", isMeta=[1], extra={"x": None})
        obj["message"]["usage"]["speed"] = 5
        obj["message"]["usage"]["server_tool_use"] = "yes"
    return obj


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode().replace(b"RAWBYTES", b"caf\xe9 \xff\xfe torn")


def _outputs(ev: Ev) -> list[int]:
    return [1] * (ev.blocks - 1) + [ev.tokens[1]]


def event_lines(ev: Ev) -> list[bytes]:
    """One line per content block; early blocks carry the placeholder output 1."""
    return [dumps(claude_obj(ev, out, i)) + b"\n" for i, out in enumerate(_outputs(ev))]


def progress_lines(ev: Ev) -> list[bytes]:
    """A subagent's response replayed in the parent's file (the same request: counted once)."""
    out = []
    for i, o in enumerate(_outputs(ev)):
        inner = claude_obj(ev, o, i)
        out.append(dumps({
            "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": CWD,
            "sessionId": SESSIONS[ev.session], "version": "2.1.173", "gitBranch": "main", "type": "progress",
            "uuid": f"prog-{ev.n}-{i}", "timestamp": _ts(ev.n), "toolUseID": f"agent_msg_{ev.n}",
            "data": {"type": "agent_progress", "agentId": "a0123456789abcdef",
                     "message": {"type": "assistant", "message": inner["message"], "requestId": inner["requestId"],
                                 "uuid": inner["uuid"], "timestamp": inner["timestamp"]}}}) + b"\n")
    return out


def file_for(slot: str, session: int) -> str:
    sid = SESSIONS[session]
    return {"main": f"-home-dev-src-app/{sid}.jsonl",
            "resume": f"-home-dev-src-app/{sid[:8]}-resumed-copy.jsonl",
            "sub": f"-home-dev-src-app/{sid}/subagents/agent-a0123456789abcdef.jsonl",
            "progress": f"-home-dev-src-app/{sid}.jsonl"}[slot]


# ---------------------------------------------------------------------------------------------
# Strategies

TOKEN = st.integers(min_value=0, max_value=3_000_000)
events_st = st.lists(
    st.builds(
        lambda session, model, tokens, blocks, sidechain, text: (session, model, tokens, blocks, sidechain, text),
        st.integers(0, 1), st.sampled_from(MODELS), st.tuples(TOKEN, TOKEN, TOKEN, TOKEN, TOKEN),
        st.integers(1, 3), st.booleans(),
        st.sampled_from(["plain", "plain", "surrogate", "raw-bytes", "nested", "unicode", "odd-fields"]),
    ),
    min_size=1, max_size=10,
)


def make_events(raw: list[tuple[Any, ...]]) -> list[Ev]:
    """Events from drawn tuples; a streamed response's real output is at least its placeholder 1."""
    out = []
    for i, (session, model, tokens, blocks, sidechain, text) in enumerate(raw):
        if blocks > 1 and tokens[1] < 1:
            tokens = (tokens[0], 1, *tokens[2:])
        out.append(Ev(100 + i, session, model, tokens, blocks, sidechain, text))
    return out


@st.composite
def layouts(draw: st.DrawFn, events: list[Ev]) -> dict[str, list[bytes]]:
    """Where each event's lines go: one or several files (duplicates across files), in any order."""
    files: dict[str, list[list[bytes]]] = {}
    for ev in events:
        choices = ["sub", "progress"] if ev.sidechain else ["main", "resume"]
        slots = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique=True))
        for slot in slots:
            lines = progress_lines(ev) if slot == "progress" else event_lines(ev)
            if draw(st.booleans()) and draw(st.booleans()):
                lines = lines + lines  # the same lines twice in one file
            files.setdefault(file_for(slot, ev.session), []).append(lines)
    out: dict[str, list[bytes]] = {}
    for name, groups in files.items():
        order = draw(st.permutations(range(len(groups))))
        out[name] = [line for i in order for line in groups[i]]
    return out


# ---------------------------------------------------------------------------------------------
# Scanning in a private environment per example

@contextmanager
def private_env() -> Iterator[Path]:
    keys = ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "COSTATTR_HOME")
    old = {k: os.environ.get(k) for k in keys}
    with tempfile.TemporaryDirectory(prefix="hostile-") as d:
        base = Path(d)
        os.environ.update(CLAUDE_CONFIG_DIR=str(base / "claude"), CODEX_HOME=str(base / "codex"),
                          COSTATTR_HOME=str(base / "home"))
        try:
            yield base / "claude" / "projects"
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


_TABLE: list[Any] = []


def _table() -> Any:
    """The embedded price table, loaded inside a test (isolated COSTATTR_HOME), once."""
    if not _TABLE:
        _TABLE.append(load_table())
    return _TABLE[0]


def totals(use_cache: bool = True) -> tuple[Any, ...]:
    result = scan(use_cache=use_cache, workers=1)
    price_events(result.events, _table(), "auto", Decimal(0))
    tokens = [0] * 5
    cost = Decimal(0)
    unpriced = 0
    for ev in result.events:
        t = ev.tokens
        for i, v in enumerate((t.input, t.output, t.cache_write_5m, t.cache_write_1h, t.cache_read)):
            tokens[i] += v
        if ev.cost is None:
            unpriced += 1
        else:
            cost += ev.cost
    per_session: dict[str, int] = {}
    for ev in result.events:
        per_session[ev.session_id] = per_session.get(ev.session_id, 0) + 1
    return len(result.events), unpriced, tuple(tokens), cost, tuple(sorted(per_session.items())), \
        result.stats.skipped_lines


def expected_tokens(events: list[Ev]) -> tuple[int, ...]:
    return tuple(sum(ev.tokens[i] for ev in events) for i in range(5))


def write_all(projects: Path, files: dict[str, list[bytes]]) -> None:
    for name, lines in files.items():
        path = projects / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(lines))


def canonical(events: list[Ev]) -> tuple[Any, ...]:
    """Each event once, in its own session file, read in one go without a cache."""
    with private_env() as projects:
        files: dict[str, list[bytes]] = {}
        for ev in events:
            files.setdefault(file_for("sub" if ev.sidechain else "main", ev.session), []).extend(event_lines(ev))
        write_all(projects, files)
        return totals(use_cache=False)


def run_incremental(projects: Path, files: dict[str, list[bytes]], cuts: dict[str, list[int]], order_seed: int
                    ) -> tuple[Any, ...]:
    """Append each file's bytes chunk by chunk (cuts anywhere, even mid-line), scanning after
    every round with the cache; each round must agree with a full scan of the same bytes."""
    rng = random.Random(order_seed)
    blobs = {name: b"".join(lines) for name, lines in files.items()}
    chunks = {name: [blobs[name][a:b] for a, b in zip([0, *cuts[name]], [*cuts[name], len(blobs[name])],
                                                         strict=True)] for name in blobs}
    rounds = max(len(c) for c in chunks.values())
    last: tuple[Any, ...] = ()
    for r in range(rounds):
        names = sorted(chunks)
        rng.shuffle(names)
        for name in names:
            if r < len(chunks[name]) and chunks[name][r]:
                path = projects / name
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("ab") as f:
                    f.write(chunks[name][r])
        last = totals(use_cache=True)
        assert last[:5] == totals(use_cache=False)[:5], f"round {r}: incremental != full rescan"
    return last


@st.composite
def cut_points(draw: st.DrawFn, files: dict[str, list[bytes]]) -> dict[str, list[int]]:
    out = {}
    for name, lines in sorted(files.items()):
        size = sum(len(x) for x in lines)
        out[name] = sorted(set(draw(st.lists(st.integers(0, size), max_size=3))))
    return out


@given(data=st.data(), raw=events_st)
@HYPO
def test_splitting_events_across_files_lines_and_runs_never_changes_totals(data: st.DataObject, raw: list) -> None:  # type: ignore[type-arg]
    events = make_events(raw)
    expected = canonical(events)
    assert expected[0] == len(events) and expected[2] == expected_tokens(events) and expected[5] == 0
    files = data.draw(layouts(events))
    cuts = data.draw(cut_points(files))
    with private_env() as projects:
        got = run_incremental(projects, files, cuts, data.draw(st.integers(0, 2**16)))
    assert got[:5] == expected[:5]  # requests, unpriced, tokens, exact cost, per-session requests
    assert got[5] == 0  # every line whole in the end: nothing skipped
    GENERATED["valid_events"] += len(events)
    GENERATED["examples"] += 1


# ---------------------------------------------------------------------------------------------
# Hostile lines mixed in

NEEDLE = b'"usage"'
BAD_COUNTS = ["10", 1.5, True, [], {}, -1, -(10**6), 10**9 + 1, 10**18, "NaN", "1e9"]
TOKEN_FIELDS = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]


@st.composite
def hostile_line(draw: st.DrawFn, n: int) -> bytes:
    """One hostile line (no newline inside). Every kind carries the "usage" needle, so the reader
    inspects it and must skip and count it; plain garbage without the needle is never parsed."""
    ev = Ev(10_000 + n, draw(st.integers(0, 1)), MODELS[0], (10, 20, 30, 0, 40), 1, False, "plain")
    obj = claude_obj(ev, 20, 0)
    kind = draw(st.sampled_from(["garbage", "invalid-utf8", "truncated", "bad-count", "bad-split", "usage-type",
                                 "message-type", "timestamp", "deep", "model-type", "not-object"]))
    if kind == "garbage":
        junk = draw(st.binary(max_size=300)).replace(b"\n", b" ")
        return b"\x00" + junk[: len(junk) // 2] + NEEDLE + junk[len(junk) // 2:]
    if kind == "invalid-utf8":
        return b'{"type":"assistant","message":{"usage":\xff\xfe\xfd{"input_tokens":5}}'
    if kind == "truncated":
        whole = dumps(obj)
        cut = draw(st.integers(whole.index(NEEDLE) + len(NEEDLE), len(whole) - 1))
        return whole[:cut]
    if kind == "bad-count":
        obj["message"]["usage"][draw(st.sampled_from(TOKEN_FIELDS))] = draw(st.sampled_from(BAD_COUNTS))
    elif kind == "bad-split":
        obj["message"]["usage"]["cache_creation"]["ephemeral_5m_input_tokens"] = draw(st.sampled_from(BAD_COUNTS))
    elif kind == "usage-type":
        obj["message"]["usage"] = draw(st.sampled_from([5, "lots", [1, 2], True]))
    elif kind == "message-type":
        obj["message"] = "usage"
    elif kind == "timestamp":
        obj["timestamp"] = draw(st.sampled_from(["yesterday", 5, None, "2026-13-45T99:99:99Z", ""]))
    elif kind == "deep":
        return b'{"type":"assistant","message":{"usage":' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    elif kind == "model-type":
        obj["message"]["model"] = draw(st.sampled_from([5, ["m"], {"id": "m"}]))
    elif kind == "not-object":
        return dumps(["usage", obj])
    return dumps(obj)


@given(data=st.data(), raw=events_st)
@HYPO
def test_hostile_lines_are_skipped_and_counted_valid_sessions_stay_exact(data: st.DataObject, raw: list) -> None:  # type: ignore[type-arg]
    events = make_events(raw)
    expected = canonical(events)
    files = data.draw(layouts(events))
    hostile = data.draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
    counted = 0
    for i, _ in enumerate(hostile):
        line = data.draw(hostile_line(i)) + b"\n"
        name = data.draw(st.sampled_from(sorted(files) + ["-home-dev-src-app/junk-only.jsonl"]))
        target = files.setdefault(name, [])
        target.insert(data.draw(st.integers(0, len(target))), line)
        counted += NEEDLE in line
    # Plain garbage without the needle: never parsed, never counted, never fatal.
    noise = data.draw(st.binary(max_size=200)).replace(b"\n", b" ") + b"\n"
    files.setdefault("-home-dev-src-app/noise.jsonl", []).append(noise)
    cuts = data.draw(cut_points(files))
    with private_env() as projects:
        got = run_incremental(projects, files, cuts, data.draw(st.integers(0, 2**16)))
    assert got[:5] == expected[:5]
    assert got[5] == counted + (NEEDLE in noise)  # every inspected bad line counted once, no more
    GENERATED["valid_events"] += len(events)
    GENERATED["hostile_lines"] += len(hostile) + 1
    GENERATED["examples"] += 1


def test_five_megabyte_lines_and_deep_nesting(tmp_path: Path) -> None:
    with private_env() as projects:
        w = ClaudeSessionWriter(projects, SESSIONS[0], CWD, seed=5)
        w.response(input=7, output=300, cache_read=1000, tool_input_bytes=5 * 1024 * 1024)  # valid, 5 MB line
        w.raw(b'{"type":"assistant","message":{"usage":{"input_tokens":1},"content":"' + b"x" * (5 << 20) + b'\n')
        w.raw(b'{"usage": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n")  # deeper than any parser's recursion limit
        w.raw(b'{"usage": ' + b"{" * 5 + b"\n")
        w.response(input=3, output=40)
        w.close()
        got = totals()
        assert got[0] == 2 and got[2][0] == 10 and got[2][1] == 340
        assert got[5] == 3
        again = totals()  # from the cache: the same
        assert again == got
        proc = run_cli("sessions", "--format", "json", cwd=tmp_path, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr
        doc = orjson.loads(proc.stdout)
        assert doc["skipped_lines"] == 3 and doc["totals"]["requests"] == 2
    GENERATED["hostile_lines"] += 3


def test_absurd_request_total_is_skipped() -> None:
    with private_env() as projects:
        w = ClaudeSessionWriter(projects, SESSIONS[0], CWD, seed=6)
        w.response(input=6 * 10**8, output=6 * 10**8, cache_write_5m=6 * 10**8, cache_read=6 * 10**8, blocks=1)
        w.response(input=3, output=40, blocks=1)
        w.close()
        got = totals()
    assert got[0] == 1 and got[5] == 1


def test_hostile_transcripts_through_the_hook(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    """End to end: the hook over hostile transcripts records exactly what it records without them."""
    repo = make_repo(tmp_path / "app")
    commit(repo, "initial")
    rng = random.Random(9)
    valid = [Ev(500 + i, i % 2, MODELS[i % 3], (rng.randint(0, 99), rng.randint(1, 999), rng.randint(0, 9999), 0,
                                                  rng.randint(0, 99999)), 1 + i % 3, False,
                ["plain", "surrogate", "raw-bytes", "unicode"][i % 4]) for i in range(8)]
    hostile = [b"\x00\xff" + NEEDLE + b"\xfe", b'{"usage": ' + b"[" * 100_000, b'{"type":"assistant","message":"usage"}',
               b'{"type":"assistant","message":{"usage":{"input_tokens":-5}}}', b"\xed\xa0\x80" + NEEDLE]

    def lay(projects: Path, with_hostile: bool) -> None:
        for ev in valid:
            obj_lines = [dumps(claude_obj(ev, out, i)).replace(CWD.encode(), str(repo).encode()) + b"\n"
                         for i, out in enumerate([1] * (ev.blocks - 1) + [ev.tokens[1]])]
            path = projects / "-app" / f"{SESSIONS[ev.session]}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as f:
                f.writelines(obj_lines)
                if with_hostile:
                    f.write(hostile[ev.n % len(hostile)] + b"\n")

    lay(env_dirs["claude"] / "projects", True)
    proc = run_cli(*HOOK, cwd=repo)
    # Only the one-time hint that lines were skipped (and where to see them), nothing else.
    assert proc.returncode == 0 and proc.stderr.splitlines() == [
        f"costattr: {len(valid)} unreadable transcript lines skipped in this work tree's sessions "
        f"({len(valid)} in all; `costattr doctor` lists them)"], proc.stderr
    again = run_cli(*HOOK, cwd=repo)
    assert again.returncode == 0 and not again.stderr, again.stderr  # said once, not on every commit
    clean_claude = tmp_path / "clean-claude"
    lay(clean_claude / "projects", False)
    ref_home = tmp_path / "ref-home"
    ref = run_cli(*HOOK, cwd=repo, env=env_with(COSTATTR_HOME=str(ref_home), CLAUDE_CONFIG_DIR=str(clean_claude)))
    assert ref.returncode == 0, ref.stderr
    assert figures(env_dirs["costattr_home"]) == figures(ref_home)
    sessions = run_cli("sessions", "--format", "json", cwd=repo)
    assert orjson.loads(sessions.stdout)["skipped_lines"] == len(valid)


# ---------------------------------------------------------------------------------------------
# Hostile git input

HOSTILE_BRANCHES = [
    "PROJ-9-<script>alert(1)</script>",
    "x|y|z-PROJ-10",
    "@octocat-PROJ-11",
    "$(id)`whoami`;rm-rf-PROJ-12",
    "fix/ünïcödé-PROJ-13-日本語-\u202etxt",
    "_x_-#12-<!--",
    "&lt;b&gt;&#124;-PROJ-14",
    "x');DROP-TABLE-records;--PROJ-16",  # the store's SQL takes every string as a parameter
]
NON_UTF8_BRANCH = "bad-\udcff\udcfe-PROJ-15"  # the raw bytes 0xff 0xfe in the ref name
HOSTILE_MESSAGE = ("Fix <script>alert('x')</script> | a | b | @octocat\n\n# heading\n[click](javascript:alert(1))\r\n"
                   "| x | y |\n@here <img src=x onerror=alert(1)>")
HOSTILE_TRANSCRIPT_BRANCH = "evil\n| inj | ected |\n<script>alert(2)</script> @octocat \u0000 [x](javascript:y)"
HOSTILE_MODEL = "<b>gpt</b>|@octocat\n# x"

_RAW_HTML = re.compile(r"<\s*/?\s*(script|img|b|iframe|svg)\b|<!--", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w\u200b])@(?!\u200b)[A-Za-z0-9]")


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def assert_inert_markdown(text: str, what: str, *, posted: bool = False) -> None:
    """`posted`: the PR comment, which the bot posts on GitHub, where `@name` would ping someone;
    a report's Markdown is a file, kept free of the zero-width spaces that neutralise mentions."""
    text.encode("utf-8")  # valid UTF-8 text: no undecodable bytes passed through (they read back as surrogates)
    text = text.replace("<!-- costattr:pr-cost v1 -->", "", 1)  # the bot's own marker, once
    assert not _RAW_HTML.search(text), (what, text)
    if posted:
        assert not _MENTION.search(text), (what, text)
    else:
        assert "\u200b" not in text, (what, text)
    assert "](javascript:" not in text.replace("\\", ""), (what, text)
    # Tables keep their shape: every row of a table has as many cell borders as its header.
    header_pipes = None
    for line in text.splitlines():
        if line.startswith("|"):
            n = _unescaped_pipes(line)
            if header_pipes is None:
                header_pipes = n
            assert n == header_pipes, (what, line)
        else:
            header_pipes = None
            assert not line.lstrip().startswith(("| inj", "# heading", "# x")), (what, line)


def _where(entry: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(state, branch, commit) of each spend group of a session's figures."""
    return [(state, branch, commit or None) for state, branch, commit, *_rest in entry["spend"]]


def _commit_env(author: str) -> dict[str, str]:
    return env_with(GIT_AUTHOR_NAME=author, GIT_COMMITTER_NAME=author)


def test_hostile_branches_messages_and_names_never_reach_reports_raw(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo = make_repo(tmp_path / "app", origin="https://github.com/acme/app.git")
    commit(repo, "initial")
    projects = env_dirs["claude"] / "projects"
    author = "<img src=x onerror=alert(1)> @evil | x"
    rng = random.Random(3)
    for i, branch in enumerate(HOSTILE_BRANCHES):
        git(repo, "checkout", "-q", "-b", branch)
        w = ClaudeSessionWriter(projects, cwd=str(repo), branch=branch.encode("utf-8", "surrogateescape")
                                .decode("utf-8", "replace"), rng=rng)
        w.response(output=100 + i)
        if i % 3 == 0:
            w.response(output=5, branch=HOSTILE_TRANSCRIPT_BRANCH)
            w.response(model=HOSTILE_MODEL, output=7)
        w.close()
        git(repo, "commit", "-q", "--allow-empty", "-m", HOSTILE_MESSAGE, env=_commit_env(author))
        proc = run_cli(*HOOK, "--pr", str(40 + i), cwd=repo)
        assert proc.returncode == 0 and not proc.stderr, (branch, proc.stderr)
    entries = figures(env_dirs["costattr_home"])
    assert len(entries) == len(HOSTILE_BRANCHES)
    GENERATED["hostile_lines"] += len(HOSTILE_BRANCHES)
    for by in ("issue", "pr", "branch", "session", "commit", "model", "day", "author", "repo"):
        for fmt in ("markdown", "table") if by in ("branch", "model") else ("markdown",):
            proc = run_cli("report", "--by", by, "--format", fmt, cwd=repo)
            assert proc.returncode == 0, (by, fmt, proc.stderr)
            if fmt == "markdown":
                assert_inert_markdown(proc.stdout, f"report --by {by}")
    tree = run_cli("report", "--by", "branch", "--tree", cwd=repo)
    assert tree.returncode == 0, tree.stderr
    csv = run_cli("report", "--by", "branch", "--format", "csv", cwd=repo)
    assert csv.returncode == 0 and len(list(__import__("csv").reader(csv.stdout.splitlines()))) >= 3
    hostile_head = HOSTILE_TRANSCRIPT_BRANCH.replace("\u0000", "")  # env vars cannot hold NUL
    for i, branch in enumerate(HOSTILE_BRANCHES):
        for head in (None, hostile_head) if i == 0 else (branch,):
            env = env_with(GITHUB_HEAD_REF=head, GITHUB_BASE_REF="main<script>",
                           GITHUB_REPOSITORY="acme/app")
            proc = run_cli("comment", "--dry-run", "--pr", str(40 + i), cwd=repo, env=env)
            assert proc.returncode == 0, proc.stderr
            assert "unexpected error" not in proc.stderr
            assert_inert_markdown(proc.stdout, f"comment --pr {40 + i} head={head!r}", posted=True)


def _non_utf8_world(tmp_path: Path, env_dirs: dict[str, Path]) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "app", origin="https://github.com/acme/app.git")
    commit(repo, "initial")
    git(repo, "checkout", "-q", "-b", NON_UTF8_BRANCH)
    # Claude Code records the branch as it decodes it: U+FFFD for each undecodable byte.
    seen_as = NON_UTF8_BRANCH.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch=seen_as, seed=4)
    w.response(output=123)
    w.close()
    return repo, commit(repo, "work on a branch whose name is not UTF-8")


def test_branch_name_that_is_not_utf8_is_recorded(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo, sha = _non_utf8_world(tmp_path, env_dirs)
    proc = run_cli(*HOOK, "--pr", "7", cwd=repo)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    again = run_cli(*HOOK, cwd=repo)  # and the fast-path state neither crashes nor skips wrongly
    assert again.returncode == 0 and not again.stderr, again.stderr
    (entry,) = figures(env_dirs["costattr_home"]).values()
    assert _where(entry) == [("closed", "bad-\ufffd\ufffd-PROJ-15", sha)]
    assert entry["issues"] == ["PROJ-15"]
    for by in ("issue", "branch", "commit"):
        report = run_cli("report", "--by", by, "--format", "markdown", cwd=repo)
        assert report.returncode == 0, report.stderr
        assert_inert_markdown(report.stdout, f"report --by {by}")


def test_branch_name_that_is_not_utf8_in_the_pr_comment(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo, _sha = _non_utf8_world(tmp_path, env_dirs)
    assert run_cli(*HOOK, "--pr", "7", cwd=repo).returncode == 0
    proc = run_cli("comment", "--dry-run", "--pr", "7", cwd=repo, env=env_with(GITHUB_HEAD_REF=None))
    assert proc.returncode == 0, proc.stderr
    assert_inert_markdown(proc.stdout, "comment --pr 7 (non-UTF-8 branch)", posted=True)


def test_repository_without_commits(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo = make_repo(tmp_path / "fresh", branch="PROJ-1-start")
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch="PROJ-1-start", seed=1)
    w.response(output=50)
    w.close()
    for args in (HOOK, ("upload",)):
        proc = run_cli(*args, cwd=repo)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
    (entry,) = figures(env_dirs["costattr_home"]).values()
    assert _where(entry) == [("open", "PROJ-1-start", None)]  # no commit yet
    commit(repo, "first")
    assert run_cli(*HOOK, cwd=repo).returncode == 0
    (entry,) = figures(env_dirs["costattr_home"]).values()
    assert _where(entry) == [("closed", "PROJ-1-start", git(repo, "rev-parse", "HEAD"))]  # closed into it
    report = run_cli("report", "--by", "issue", "--format", "json", cwd=repo)
    assert [r["key"] for r in orjson.loads(report.stdout)["rows"]] == ["PROJ-1"]


def test_detached_head(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo = make_repo(tmp_path / "app")
    commit(repo, "initial")
    git(repo, "checkout", "-q", "--detach")
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch="HEAD", seed=2)
    w.response(output=60)
    w.close()
    sha = commit(repo, "detached work")
    proc = run_cli(*HOOK, cwd=repo)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    (entry,) = figures(env_dirs["costattr_home"]).values()
    assert _where(entry) == [("closed", None, sha)]  # detached: no branch shown
    assert run_cli("comment", "--dry-run", "--pr", "3", cwd=repo).returncode == 0


def test_bare_repository(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    bare = make_repo(tmp_path / "app.git", bare=True)
    hook = run_cli(*HOOK, cwd=bare)
    assert hook.returncode == 0  # never fails a commit (a server-side hook, say)
    lines = [ln for ln in hook.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bare" in lines[0], hook.stderr
    plain = run_cli("upload", cwd=bare)
    assert plain.returncode == 1 and "bare" in plain.stderr and "Traceback" not in plain.stderr
    for args in (("report",), ("sessions",), ("base",), ("install",), ("comment", "--dry-run", "--pr", "1")):
        proc = run_cli(*args, cwd=bare)
        assert proc.returncode in (0, 1), (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "unexpected error" not in proc.stderr, (args, proc.stderr)
    assert not ledger_file(env_dirs["costattr_home"]).exists()


def test_submodule_spend_belongs_to_the_submodule(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    lib_origin = make_repo(tmp_path / "lib-origin")
    commit(lib_origin, "lib initial", {"lib.py": "x = 1\n"})
    app = make_repo(tmp_path / "app", origin="https://github.com/acme/app.git")
    commit(app, "initial")
    git(app, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib_origin), "lib")
    commit(app, "add lib")
    lib = app / "lib"
    git(lib, "remote", "set-url", "origin", "https://github.com/acme/lib.git")
    git(lib, "checkout", "-q", "-B", "main")
    projects = env_dirs["claude"] / "projects"
    top = ClaudeSessionWriter(projects, cwd=str(app), branch="main", seed=11)
    top.response(output=100)
    top.close()
    sub = ClaudeSessionWriter(projects, cwd=str(lib), branch="main", seed=12)  # the same branch name
    sub.response(output=900)
    sub.close()
    app_sha = commit(app, "app work")
    lib_sha = commit(lib, "lib work")
    for cwd in (app, lib, app):  # whatever the order the hooks run in
        proc = run_cli(*HOOK, cwd=cwd)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
    entries = figures(env_dirs["costattr_home"])
    assert entries[top.session_id]["repo"] == "acme/app"
    assert _where(entries[top.session_id]) == [("closed", "main", app_sha)]
    assert entries[sub.session_id]["repo"] == "acme/lib"
    assert _where(entries[sub.session_id]) == [("closed", "main", lib_sha)]


def test_figures_of_generated_inputs() -> None:
    """Runs last in this module: prints what the hostile suite generated (for the issue note)."""
    print(f"\nhostile suite generated: {GENERATED}")
