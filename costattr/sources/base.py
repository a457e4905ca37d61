"""The small protocol every assistant adapter implements, and the helpers they share.

An adapter turns the bytes of one transcript file into normalised usage records. It is pure:
given the bytes appended since the last read and the state it left behind, it returns the new
records and its new state, so the scan engine can cache per file and read only what was added.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson

# Per-request token counts above this are not real (a whole 1M context is 10^6); such lines are
# treated as corrupt rather than allowed to swamp a report.
MAX_TOKENS_PER_REQUEST = 10**9
# A running total (Codex's cumulative usage) legitimately passes 10^9 in a long session; forked
# sessions of tens of billions are on record. Only a corrupt number gets near this.
MAX_TOKENS_CUMULATIVE = 10**15
_SURROGATE = re.compile("[\ud800-\udfff]")

# A stored record, compact for the cache:
# (key, ts, model, cwd, branch, is_sidechain, agent_id, speed, recorded_cost, session_id, offset,
#  input, output, cache_write_5m, cache_write_1h, cache_read, reasoning)
Record = tuple[Any, ...]
R_KEY, R_TS, R_MODEL, R_CWD, R_BRANCH, R_SIDECHAIN, R_AGENT, R_SPEED, R_COST, R_SESSION, R_OFFSET = range(11)
R_TOKENS = slice(11, 17)
RECORD_FIELDS = 17


def record_token_total(rec: Record) -> int:
    return rec[11] + rec[12] + rec[13] + rec[14] + rec[15]


@dataclass
class FileParse:
    """What an adapter made of one file so far: the unit the parse cache stores."""

    records: dict[str, Record] = field(default_factory=dict)  # key -> best record in this file
    offset: int = 0  # bytes consumed: always the end of a complete line
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    where: list[str] = field(default_factory=list)
    parser_state: dict[str, Any] = field(default_factory=dict)  # adapter-specific carry-over
    tail: bytes = b""  # the bytes just before `offset`: proves the file was appended to, not rewritten
    # Session-level records that are not requests (Claude Code's cost-state, pr-link): kind ->
    # key -> value, one value per key (see `keep_fact`). Plain JSON, so the cache stores it.
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A complete last line without a trailing newline, read into a copy of this state but not
    # consumed: the cursor stays before it, so a later append re-reads it instead of counting it
    # twice. None when the file ends in a newline or in a torn (unparseable) line.
    pending: FileParse | None = None

    def skip(self, reason: str, offset: int, path: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.where) < 50:
            self.where.append(clean_text(f"{path} (byte {offset}): {reason}"))

    def fact(self, kind: str, key: str, value: Any) -> None:
        keep_fact(self.facts, kind, key, value)

    def keep(self, rec: Record) -> None:
        """Keep one record per key: the most complete copy (see `better`)."""
        old = self.records.get(rec[R_KEY])
        if old is None or better(rec, old):
            self.records[rec[R_KEY]] = rec


# Which of two values of one fact is kept (the smaller sort key wins), chosen by value so any
# reading order keeps the same one: the largest cost snapshot; the earliest PR link.
_FACT_ORDER: dict[str, Callable[[Any], Any]] = {
    "cost": lambda v: (-Decimal(v[0]), repr(v)),
    "pr": lambda v: (v[0] or "\uffff", repr(v)),  # a link without a timestamp sorts last
}


def keep_fact(facts: dict[str, dict[str, Any]], kind: str, key: str, value: Any) -> None:
    """Fold one fact into `facts` (a FileParse's, or a whole scan's)."""
    known = facts.setdefault(kind, {})
    old = known.get(key)
    if old is None or _FACT_ORDER[kind](value) < _FACT_ORDER[kind](old):
        known[key] = value


def better(new: Record, old: Record) -> bool:
    """Whether `new` is a more complete copy of the same request than `old`.

    Streaming writes early lines with placeholder output counts, so the copy with the most tokens
    is the complete one, whatever file or line it came from (a `progress` replay of a subagent's
    first block must not beat the subagent file's last block). Ties are broken by values only
    (never by reading order), so every scan order gives the same owner: the earliest copy.
    """
    nt, ot = record_token_total(new), record_token_total(old)
    if nt != ot:
        return nt > ot
    return (new[R_TS], new[R_SESSION], new[R_OFFSET]) < (old[R_TS], old[R_SESSION], old[R_OFFSET])


def better_replay(new: Record, old: Record) -> bool:
    """`better` for two records of one message.id under different requestIds.

    A `/btw` side question replays parent messages in a sidechain file with a new requestId and
    its own (larger) cache figures: the non-sidechain original is the real spend.
    """
    if new[R_SIDECHAIN] != old[R_SIDECHAIN]:
        return not new[R_SIDECHAIN]
    return better(new, old)


class Source(Protocol):
    """One assistant's transcripts."""

    name: str

    def roots(self) -> list[Path]:
        """Directories to look in, in priority order (they may not exist)."""
        ...

    def discover(self) -> Iterator[Path]:
        """Every transcript file under the roots."""
        ...

    def parse(self, path: Path, data: bytes, base_offset: int, state: FileParse) -> FileParse:
        """Fold the complete lines of `data` (read from `base_offset`) into `state`."""
        ...


def walk_files(root: Path, wanted: Callable[[str], bool], skip_dirs: frozenset[str] = frozenset()) -> list[Path]:
    """Files under `root` whose name is `wanted`, sorted. Symlinked directories are not entered
    (a link back up the tree must not loop); unreadable directories are passed over."""
    out: list[Path] = []
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name not in skip_dirs:
                                stack.append(entry.path)
                        elif wanted(entry.name) and entry.is_file():
                            out.append(Path(entry.path))
                    except OSError:
                        continue
        except OSError:
            continue
    out.sort()
    return out


def iter_complete_lines(data: bytes, needles: tuple[bytes, ...]) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, line) for complete lines that contain any needle, each line once.

    Lines without a needle are never split out or decoded: most transcript bytes are tool output
    that carries no usage, and skipping them with bytes.find is what makes a scan fast. After a
    hit the search resumes past the end of its line, so a line mentioning a needle many times
    costs one scan, not one per mention.
    """
    end_of_data = data.rfind(b"\n") + 1  # a torn last line is left for a later read
    find = data.find
    if len(needles) == 1:
        needle = needles[0]
        pos = find(needle, 0, end_of_data)
        while pos != -1:
            start = data.rfind(b"\n", 0, pos) + 1
            end = find(b"\n", pos)
            yield start, data[start:end]
            pos = find(needle, end + 1, end_of_data)
        return
    # Several needles: the next hit of each, always resuming from the end of the last line.
    nxt = {n: find(n, 0, end_of_data) for n in needles}
    while True:
        live = [p for p in nxt.values() if p != -1]
        if not live:
            return
        pos = min(live)
        start = data.rfind(b"\n", 0, pos) + 1
        end = find(b"\n", pos)
        yield start, data[start:end]
        for n, p in nxt.items():
            if p != -1 and p <= end:
                nxt[n] = find(n, end + 1, end_of_data)


def consumed_length(data: bytes) -> int:
    """Bytes of `data` made of complete lines: what a cursor may move past."""
    return data.rfind(b"\n") + 1


def as_count(value: Any, limit: int = MAX_TOKENS_PER_REQUEST) -> int | None:
    """A token count, or None when the value is not a plausible one (wrong type, negative, above
    `limit`: per request by default; running totals pass a larger one).

    null counts as 0: some writers emit null for "none", and rejecting the line would drop the
    other, real counts on it."""
    if type(value) is int:  # bool is an int subclass: `type` rejects it too
        return value if 0 <= value <= limit else None
    return 0 if value is None else None


def clean_text(value: Any) -> str:
    """A string safe to store and print: each lone surrogate (JSON escapes of binary tool output
    cut mid-character) becomes one U+FFFD."""
    if type(value) is not str:
        return ""
    if value.isascii():  # the common case, and pure ASCII cannot hold a surrogate
        return value
    return _SURROGATE.sub("\ufffd", value)


def loads_line(line: bytes) -> Any:
    """Parse one JSON line; raises ValueError when it is not valid JSON.

    orjson rejects JSON-escaped lone surrogates, which Claude Code does write (binary tool output
    cut mid-character); the standard library accepts them, and clean_text repairs them later.
    Raw bytes that are not UTF-8 (a corrupted tool output inside an otherwise whole line) are
    replaced rather than costing the line: the usage figures are ASCII and still exact.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(line)
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
    except (ValueError, RecursionError) as e:
        raise ValueError(str(e)) from e
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(str(e)) from e


def discover_under(roots: list[Path], wanted: Callable[[str], bool], skip_dirs: frozenset[str] = frozenset()
                   ) -> Iterator[Path]:
    """Every wanted file under the roots that exist: what each adapter's discover() is."""
    for root in roots:
        if root.is_dir():
            yield from walk_files(root, wanted, skip_dirs)
