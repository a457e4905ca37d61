"""The scan engine: every transcript file, read once, deduplicated across files.

Per file it keeps a cache entry (file identity + size + mtime -> the adapter's result and the
byte offset it consumed) in SQLite under COSTATTR_HOME. An unchanged file is not read at all; a
file that grew is read from its cursor only; anything else is read again from the start. A cache
that cannot be read is moved aside and rebuilt: it can cost time, never a wrong figure.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from costattr import paths
from costattr.fsutil import move_aside
from costattr.logs import log
from costattr.models import ScanStats, Tokens, UsageEvent
from costattr.sources import SOURCES, FileParse
from costattr.sources.base import R_KEY, R_SIDECHAIN, Record, better

CACHE_VERSION = 3
READ_CHUNK = 32 << 20  # bounded memory per file: a chunk plus the longest line
PARALLEL_MIN_BYTES = 48 << 20  # below this, process start-up costs more than it saves

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class FileInfo:
    tool: str
    path: Path
    dev: int
    ino: int
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    events: list[UsageEvent]
    stats: ScanStats
    looked_in: dict[str, list[Path]] = field(default_factory=dict)
    files: list[FileInfo] = field(default_factory=list)
    changed_files: list[FileInfo] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading one file


def read_file(tool: str, path: Path, state: FileParse) -> FileParse:
    """Fold the bytes of `path` after `state.offset` into `state` (chunked, complete lines only)."""
    source = SOURCES[tool]
    with path.open("rb") as f:
        f.seek(state.offset)
        carry = b""
        pos = state.offset
        while True:
            block = f.read(READ_CHUNK)
            if not block:
                break
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            if cut:
                source.parse(path, data[:cut], pos, state)
                pos += cut
            carry = data[cut:]
        state.offset = pos
    return state


def _parse_job(job: tuple[str, str, dict[str, Any] | None]) -> dict[str, Any]:
    tool, path, cached = job
    state = state_from_dict(cached) if cached else FileParse()
    return state_to_dict(read_file(tool, Path(path), state))


def state_to_dict(state: FileParse) -> dict[str, Any]:
    return {
        "records": list(state.records.values()),
        "offset": state.offset,
        "skipped": state.skipped,
        "reasons": state.reasons,
        "where": state.where,
        "parser": state.parser_state,
    }


def state_from_dict(d: dict[str, Any]) -> FileParse:
    return FileParse(
        records={r[R_KEY]: tuple(r) for r in d["records"]},
        offset=int(d["offset"]),
        skipped=int(d["skipped"]),
        reasons=dict(d["reasons"]),
        where=list(d["where"]),
        parser_state=dict(d["parser"]),
    )


# ---------------------------------------------------------------------------------------------
# The cache


class ScanCache:
    """SQLite keeps per-file results; one transaction per scan, safe under concurrent hooks."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.costattr_home() / "cache" / "scan.sqlite"
        self.conn: sqlite3.Connection | None = None
        self.notice: str | None = None

    def open(self) -> sqlite3.Connection | None:
        if self.conn is not None:
            return self.conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = self._connect()
        except sqlite3.DatabaseError as e:
            if self.path.exists():
                kept = move_aside(self.path)
                self.notice = f"the scan cache was unreadable ({e}); moved to {kept} and rebuilt"
                log(self.notice)
                self.conn = self._connect()
            else:
                raise
        return self.conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != CACHE_VERSION:
            conn.execute("DROP TABLE IF EXISTS files")
            conn.execute(
                "CREATE TABLE files (path TEXT PRIMARY KEY, tool TEXT, dev INTEGER, ino INTEGER, size INTEGER,"
                " mtime_ns INTEGER, cwds TEXT, state BLOB)"
            )
            conn.execute(f"PRAGMA user_version={CACHE_VERSION}")
        conn.execute("SELECT count(*) FROM files").fetchone()  # surfaces corruption now
        return conn

    def fingerprints(self) -> dict[str, tuple[str, int, int, int, int, list[str]]]:
        conn = self.open()
        assert conn is not None
        rows = conn.execute("SELECT path, tool, dev, ino, size, mtime_ns, cwds FROM files").fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows}

    def states(self, paths_: list[str]) -> dict[str, dict[str, Any]]:
        conn = self.open()
        assert conn is not None
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(paths_), 500):
            batch = paths_[i : i + 500]
            q = f"SELECT path, state FROM files WHERE path IN ({','.join('?' * len(batch))})"
            for path, blob in conn.execute(q, batch):
                out[path] = orjson.loads(blob)
        return out

    def store(self, rows: list[tuple[FileInfo, dict[str, Any]]]) -> None:
        if not rows:
            return
        conn = self.open()
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                [
                    (str(fi.path), fi.tool, fi.dev, fi.ino, fi.size, fi.mtime_ns,
                     orjson.dumps(sorted({r[3] for r in st["records"]})).decode(), orjson.dumps(st))
                    for fi, st in rows
                ],
            )
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            # The cache is an optimisation: a busy database just means the next run reads again.
            log(f"scan cache not updated: {e}")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------------------------
# Scanning


def discover(tools: Iterable[str]) -> tuple[list[FileInfo], dict[str, list[Path]]]:
    files: list[FileInfo] = []
    looked_in: dict[str, list[Path]] = {}
    for tool in tools:
        source = SOURCES[tool]
        looked_in[tool] = source.roots()
        seen: set[tuple[int, int]] = set()
        for path in source.discover():
            try:
                st = path.stat()
            except OSError:
                continue
            # The same file reached through two roots (a symlinked config dir) is one file.
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            files.append(FileInfo(tool, path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return files, looked_in


def scan(
    tools: Iterable[str] | None = None,
    *,
    cwd_filter: Callable[[str], bool] | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> ScanResult:
    """Every usage event under the transcript roots, deduplicated across all files read.

    `cwd_filter` limits the result to files with an event whose cwd passes, which lets the hook
    skip loading the rest of a large history from the cache.
    """
    tools = list(tools or SOURCES)
    files, looked_in = discover(tools)
    cache = ScanCache() if use_cache else None
    known = _fingerprints(cache)

    fresh: list[tuple[FileInfo, dict[str, Any] | None]] = []  # files to (re)read, with prior state
    cached_paths: list[str] = []
    for fi in files:
        prev = known.get(str(fi.path))
        if prev is not None and prev[0] == fi.tool and prev[1:5] == (fi.dev, fi.ino, fi.size, fi.mtime_ns):
            if cwd_filter is None or any(cwd_filter(c) for c in prev[5]):
                cached_paths.append(str(fi.path))
            continue
        grew = prev is not None and prev[1:3] == (fi.dev, fi.ino) and fi.size > prev[3]
        fresh.append((fi, {"grew": True} if grew else None))

    cached_states = cache.states(cached_paths + [str(fi.path) for fi, g in fresh if g]) if cache else {}
    jobs = [(fi, cached_states.get(str(fi.path)) if g else None) for fi, g in fresh]
    parsed = _parse_all(jobs, progress, workers)
    if cache is not None:
        cache.store(parsed)

    stats = ScanStats(files=len(files), cached_files=len(cached_paths))
    per_file: list[dict[str, Any]] = [cached_states[p] for p in cached_paths if p in cached_states]
    for fi, st in parsed:
        stats.bytes_read += max(0, st["offset"] - (cached_states.get(str(fi.path)) or {"offset": 0})["offset"])
        per_file.append(st)
    size_of = {str(fi.path): fi.size for fi in files}
    records: list[Record] = []
    for st in per_file:
        recs = st["records"]
        if cwd_filter is not None and not any(cwd_filter(r[3]) for r in recs):
            continue
        records.extend(recs)
        stats.skipped_lines += st["skipped"]
        for reason, n in st["reasons"].items():
            stats.skipped_reasons[reason] = stats.skipped_reasons.get(reason, 0) + n
        stats.skipped_where.extend(st["where"][: max(0, 200 - len(stats.skipped_where))])
    for fi, st in parsed:
        # A torn last line is skipped now and read again once it is complete.
        if size_of.get(str(fi.path), 0) > st["offset"]:
            stats.skip("torn last line (incomplete, will be read when complete)", f"{fi.path}")
    for p in cached_paths:
        st = cached_states.get(p)
        if st is not None and size_of.get(p, 0) > st["offset"]:
            stats.skip("torn last line (incomplete, will be read when complete)", p)
    if cache is not None:
        if cache.notice:
            stats.skipped_where.insert(0, cache.notice)
        cache.close()

    events = [to_event(r) for r in dedup(records)]
    if cwd_filter is not None:
        events = [e for e in events if cwd_filter(e.cwd)]
    return ScanResult(events, stats, looked_in, files, [fi for fi, _ in parsed])


def _fingerprints(cache: ScanCache | None) -> dict[str, tuple[str, int, int, int, int, list[str]]]:
    if cache is None:
        return {}
    try:
        return cache.fingerprints()
    except sqlite3.DatabaseError as e:
        cache.close()
        kept = move_aside(cache.path) if cache.path.exists() else None
        cache.notice = f"the scan cache was unreadable ({e}); moved to {kept} and rebuilt"
        log(cache.notice)
        return cache.fingerprints()


def _parse_all(
    jobs: list[tuple[FileInfo, dict[str, Any] | None]], progress: ProgressFn | None, workers: int | None
) -> list[tuple[FileInfo, dict[str, Any]]]:
    total = sum(fi.size - (st or {"offset": 0})["offset"] for fi, st in jobs)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    out: list[tuple[FileInfo, dict[str, Any]]] = []
    done = 0
    if workers > 1 and total >= PARALLEL_MIN_BYTES and len(jobs) > 1:
        import multiprocessing

        # Biggest files first, so one huge session does not finish last on a single core.
        order = sorted(jobs, key=lambda j: -j[0].size)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = pool.map(_parse_job, [(fi.tool, str(fi.path), st) for fi, st in order], chunksize=4)
            for (fi, _), st in zip(order, results, strict=True):
                out.append((fi, st))
                done += fi.size
                if progress:
                    progress(min(done, total), total)
        return out
    for fi, st in jobs:
        try:
            new = _parse_job((fi.tool, str(fi.path), st))
        except OSError as e:
            log(f"could not read {fi.path}: {e}")
            continue
        out.append((fi, new))
        done += fi.size
        if progress:
            progress(min(done, total), total)
    return out


def dedup(records: Iterable[Record]) -> list[Record]:
    """One record per request across every file.

    Primary key: (message.id, requestId). A `/btw` side question replays parent messages with the
    same message.id under a new requestId in a sidechain file: when either copy is a sidechain, the
    message.id alone identifies the request and the non-sidechain copy is kept.
    """
    best: dict[str, Record] = {}
    by_message: dict[str, str] = {}
    for rec in records:
        key = rec[R_KEY]
        old = best.get(key)
        if old is not None:
            if better(rec, old):
                best[key] = rec
            continue
        message = key.partition("|")[0] if key.startswith("c:") and "|" in key else None
        if message is not None:
            other_key = by_message.get(message)
            if other_key is not None:
                other = best[other_key]
                if rec[R_SIDECHAIN] or other[R_SIDECHAIN]:
                    if better(rec, other):
                        del best[other_key]
                        best[key] = rec
                        by_message[message] = key
                    continue
            else:
                by_message[message] = key
        best[key] = rec
    return list(best.values())


def to_event(r: Record) -> UsageEvent:
    return UsageEvent(
        tool="codex" if r[0].startswith("x:") else "claude",
        session_id=r[9],
        key=r[0],
        ts=r[1],
        model=r[2],
        cwd=r[3],
        git_branch=r[4],
        tokens=Tokens(r[11], r[12], r[13], r[14], r[15], r[16]),
        is_sidechain=r[5],
        agent_id=r[6],
        speed=r[7],
        recorded_cost=r[8],
        offset=r[10],
    )
