"""The scan engine: every transcript file, read once, deduplicated across files.

Per file it keeps a cache entry (file identity + size + mtime -> the adapter's result and the
byte offset it consumed) in SQLite under COSTATTR_HOME. An unchanged file is not read at all; a
file that grew is read from its cursor only; anything else is read again from the start. A cache
that cannot be read is moved aside and rebuilt, and one that cannot be written is done without:
it can cost time, never a wrong figure.
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from costattr import paths
from costattr.fsutil import move_aside
from costattr.logs import log
from costattr.models import ScanStats, Tokens, UsageEvent
from costattr.sources import SOURCES, FileParse
from costattr.sources.base import R_KEY, R_SIDECHAIN, Record, better, better_replay

CACHE_VERSION = 5
READ_CHUNK = 32 << 20  # bounded memory per file: a chunk plus the longest line
TAIL_BYTES = 64  # bytes before the cursor remembered to tell an append from a rewrite
PARALLEL_MIN_BYTES = 48 << 20  # below this, process start-up costs more than it saves

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
Fingerprint = tuple[str, int, int, int, int, list[str]]  # tool, dev, ino, size, mtime_ns, cwds
Parsed = tuple["FileInfo", dict[str, Any], bytes, int]  # file, state, state as cached, bytes read


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


def read_file(tool: str, path: Path, state: FileParse) -> tuple[FileParse, int]:
    """Fold the bytes of `path` after `state.offset` into `state`; return it and the bytes read.

    Only complete lines are consumed: a torn last line stays unread until its newline arrives.
    A file that no longer ends, at the cursor, with the bytes it ended with (rewritten in place
    rather than appended to) is read again from the start.
    """
    source = SOURCES[tool]
    with path.open("rb") as f:
        if state.offset and not _same_prefix(f, state):
            state = FileParse()
        f.seek(state.offset)
        pos = start = state.offset
        # Most files are read in one exact-size read; a huge one in chunks, so memory stays
        # bounded by a chunk plus the longest line.
        left = os.fstat(f.fileno()).st_size - pos
        chunks = iter([f.read()]) if left <= READ_CHUNK else iter(lambda: f.read(READ_CHUNK), b"")
        carry = b""
        for block in chunks:
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            if cut:
                source.parse(path, data[:cut] if cut < len(data) else data, pos, state)
                pos += cut
                state.tail = data[max(0, cut - TAIL_BYTES) : cut]
            carry = data[cut:]
        state.offset = pos
    return state, pos - start


def _same_prefix(f: Any, state: FileParse) -> bool:
    n = len(state.tail)
    if n == 0 or n > state.offset:
        return False
    f.seek(state.offset - n)
    return bool(f.read(n) == state.tail)


def _parse_job(job: tuple[str, str, dict[str, Any] | None]) -> tuple[bytes, int] | None:
    """Parse one file, in a worker process or not: (its state serialised as the cache stores
    it, bytes read). Serialising here spreads that work over the workers too. None when the file
    vanished or cannot be read (Claude Code deletes old transcripts mid-scan)."""
    tool, path, cached = job
    state = state_from_dict(cached) if cached else FileParse()
    try:
        new, nread = read_file(tool, Path(path), state)
    except OSError as e:
        log(f"could not read {path}: {e}")
        return None
    return orjson.dumps(state_to_dict(new)), nread


def state_to_dict(state: FileParse) -> dict[str, Any]:
    return {
        "records": list(state.records.values()),
        "offset": state.offset,
        "tail": state.tail.decode("latin-1"),
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
        tail=str(d.get("tail", "")).encode("latin-1"),
    )


# ---------------------------------------------------------------------------------------------
# The cache


class ScanCache:
    """SQLite keeps per-file results; one transaction per scan, safe under concurrent hooks.

    Paths are stored as their file-system bytes: a file name that is not UTF-8 is still a file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.costattr_home() / "cache" / "scan.sqlite"
        self.conn: sqlite3.Connection | None = None
        self.notice: str | None = None

    def open(self) -> sqlite3.Connection:
        if self.conn is not None:
            return self.conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = self._connect()
        except sqlite3.DatabaseError as e:
            if not self.path.exists():
                raise
            self._set_aside(e)
            self.conn = self._connect()
        return self.conn

    def _set_aside(self, error: Exception) -> None:
        kept = move_aside(self.path)
        for suffix in ("-wal", "-shm"):  # the old journal belongs to the old file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.unlink()
        self.notice = f"the scan cache was unreadable ({error}); moved to {kept} and rebuilt"
        log(self.notice)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != CACHE_VERSION:
                conn.execute("DROP TABLE IF EXISTS files")
                conn.execute(
                    "CREATE TABLE files (path BLOB PRIMARY KEY, tool TEXT, dev INTEGER, ino INTEGER,"
                    " size INTEGER, mtime_ns INTEGER, cwds TEXT, state BLOB)"
                )
                conn.execute(f"PRAGMA user_version={CACHE_VERSION}")
            conn.execute("SELECT count(*) FROM files").fetchone()  # surfaces corruption now
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def fingerprints(self) -> dict[str, Fingerprint]:
        rows = self.open().execute("SELECT path, tool, dev, ino, size, mtime_ns, cwds FROM files").fetchall()
        return {os.fsdecode(r[0]): (r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows}

    def states(self, paths_: list[str]) -> dict[str, dict[str, Any]]:
        conn = self.open()
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(paths_), 500):
            batch = [os.fsencode(p) for p in paths_[i : i + 500]]
            q = f"SELECT path, state FROM files WHERE path IN ({','.join('?' * len(batch))})"
            for path, blob in conn.execute(q, batch):
                out[os.fsdecode(path)] = orjson.loads(blob)
        return out

    def store(self, rows: list[tuple[FileInfo, dict[str, Any], bytes]]) -> None:
        """Save (file, state, state serialised) rows; the serialised form is stored as it is."""
        if not rows:
            return
        conn = self.open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                [
                    (os.fsencode(fi.path), fi.tool, fi.dev, fi.ino, fi.size, fi.mtime_ns,
                     orjson.dumps(sorted({r[3] for r in st["records"]})).decode(), blob)
                    for fi, st, blob in rows
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

    def forget(self, gone: list[str]) -> None:
        """Drop the rows of files that no longer exist (Claude Code deletes old transcripts)."""
        if not gone:
            return
        try:
            self.open().executemany("DELETE FROM files WHERE path = ?", [(os.fsencode(p),) for p in gone])
        except sqlite3.OperationalError as e:
            log(f"scan cache not pruned: {e}")

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
    with _gc_paused():
        files, looked_in = discover(tools)
        cache = _open_cache() if use_cache else None
        try:
            parsed, cached_states = _read_all(files, tools, cache, cwd_filter, progress, workers)
        finally:
            if cache is not None:
                cache.close()
        stats = ScanStats(files=len(files), cached_files=len(cached_states))
        if cache is not None and cache.notice:
            stats.skipped_where.append(cache.notice)
        stats.bytes_read = sum(p[3] for p in parsed)
        per_file = list(cached_states.items()) + [(str(p[0].path), p[1]) for p in parsed]
        records = _gather(per_file, {str(fi.path): fi.size for fi in files}, stats, cwd_filter)
        events = [to_event(r) for r in dedup(records)]
    if cwd_filter is not None:
        events = [e for e in events if cwd_filter(e.cwd)]
    return ScanResult(events, stats, looked_in, files, [p[0] for p in parsed])


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a scan builds its records and events: they are plain
    tuples, lists and slotted objects (nothing cyclic to free), yet with GC on every few hundred
    allocations Python walks them all again: a third of a warm scan's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _open_cache() -> ScanCache | None:
    cache = ScanCache()
    try:
        cache.open()
    except (OSError, sqlite3.Error) as e:
        log(f"scan cache unavailable ({e}); scanning without it")
        return None
    return cache


def _read_all(
    files: list[FileInfo],
    tools: list[str],
    cache: ScanCache | None,
    cwd_filter: Callable[[str], bool] | None,
    progress: ProgressFn | None,
    workers: int | None,
) -> tuple[list[Parsed], dict[str, dict[str, Any]]]:
    """Parse what changed (from its cursor when it only grew), take the rest from the cache, and
    save what was parsed. Returns (parsed files, cached states of unchanged files)."""
    known = _fingerprints(cache)
    unchanged, grown, new = _plan(files, known, cwd_filter)
    states = _load_states(cache, unchanged + [str(fi.path) for fi in grown])
    # A cached file whose state could not be loaded is simply read again.
    lost = set(unchanged) - states.keys()
    new += [fi for fi in files if str(fi.path) in lost]
    jobs = [(fi, states.pop(str(fi.path), None)) for fi in grown] + [(fi, None) for fi in new]
    parsed = _parse_all(jobs, progress, workers)
    if cache is not None:
        try:
            cache.store([(fi, st, blob) for fi, st, blob, _ in parsed])
            present = {str(fi.path) for fi in files}
            cache.forget([p for p, fp in known.items() if fp[0] in tools and p not in present])
        except sqlite3.Error as e:
            log(f"scan cache not updated: {e}")
    return parsed, states


def _plan(
    files: list[FileInfo], known: dict[str, Fingerprint], cwd_filter: Callable[[str], bool] | None
) -> tuple[list[str], list[FileInfo], list[FileInfo]]:
    """Split files into (unchanged paths to take from the cache, grown files, files to read whole)."""
    unchanged: list[str] = []
    grown: list[FileInfo] = []
    new: list[FileInfo] = []
    for fi in files:
        prev = known.get(str(fi.path))
        if prev is not None and prev[0] == fi.tool and prev[1:5] == (fi.dev, fi.ino, fi.size, fi.mtime_ns):
            if cwd_filter is None or any(cwd_filter(c) for c in prev[5]):
                unchanged.append(str(fi.path))
        elif prev is not None and prev[0] == fi.tool and prev[1:3] == (fi.dev, fi.ino) and fi.size > prev[3]:
            grown.append(fi)  # appended to: read from the cursor
        else:
            new.append(fi)
    return unchanged, grown, new


def _fingerprints(cache: ScanCache | None) -> dict[str, Fingerprint]:
    if cache is None:
        return {}
    try:
        return cache.fingerprints()
    except (sqlite3.DatabaseError, orjson.JSONDecodeError, TypeError) as e:
        _rebuild(cache, e)
        return {}


def _load_states(cache: ScanCache | None, paths_: list[str]) -> dict[str, dict[str, Any]]:
    if cache is None or not paths_:
        return {}
    try:
        return cache.states(paths_)
    except (sqlite3.DatabaseError, orjson.JSONDecodeError, KeyError, TypeError) as e:
        _rebuild(cache, e)  # unreadable rows cost a re-read, never a wrong figure
        return {}


def _rebuild(cache: ScanCache, error: Exception) -> None:
    """Keep a damaged cache aside and start an empty one (this run reads every file)."""
    cache.close()
    try:
        cache._set_aside(error)
    except OSError as e:
        log(f"scan cache unreadable ({error}) and could not be moved aside ({e})")


def _gather(
    per_file: list[tuple[str, dict[str, Any]]],
    size_of: dict[str, int],
    stats: ScanStats,
    cwd_filter: Callable[[str], bool] | None,
) -> list[Record]:
    """All files' records, with their skipped-line counts folded into `stats`."""
    records: list[Record] = []
    for path, st in per_file:
        recs = st["records"]
        if cwd_filter is not None and not any(cwd_filter(r[3]) for r in recs):
            continue
        records.extend(recs)
        stats.skipped_lines += st["skipped"]
        for reason, n in st["reasons"].items():
            stats.skipped_reasons[reason] = stats.skipped_reasons.get(reason, 0) + n
        stats.skipped_where.extend(st["where"][: max(0, 200 - len(stats.skipped_where))])
        if size_of.get(path, 0) > st["offset"]:
            # Counted on every run while it lasts; read once it is complete.
            stats.skip("torn last line (incomplete, will be read when complete)", path)
    return records


def _parse_all(
    jobs: list[tuple[FileInfo, dict[str, Any] | None]], progress: ProgressFn | None, workers: int | None
) -> list[Parsed]:
    """Parse the files that need it, over several processes when there is enough to read."""
    total = sum(fi.size - (st["offset"] if st else 0) for fi, st in jobs)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    order = sorted(jobs, key=lambda j: -j[0].size)  # biggest first: no huge file finishes last alone
    args = [(fi.tool, str(fi.path), st) for fi, st in order]
    if workers > 1 and total >= PARALLEL_MIN_BYTES and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor  # only a big cold scan pays its import

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return _collect(order, pool.map(_parse_job, args, chunksize=4), progress, total)
    return _collect(order, map(_parse_job, args), progress, total)


def _collect(
    order: list[tuple[FileInfo, dict[str, Any] | None]],
    results: Iterable[tuple[bytes, int] | None],
    progress: ProgressFn | None,
    total: int,
) -> list[Parsed]:
    out: list[Parsed] = []
    done = 0
    for (fi, _), res in zip(order, results, strict=True):
        done += fi.size
        if progress:
            progress(min(done, total), total)
        if res is not None:
            out.append((fi, orjson.loads(res[0]), res[0], res[1]))
    return out


def dedup(records: Iterable[Record]) -> list[Record]:
    """One record per request across every file.

    Primary key: (message.id, requestId): copies of one request (streamed blocks, subagent file
    and its progress replay, resumed-session copies, archived rollouts) keep the most complete.
    A `/btw` side question replays parent messages with the same message.id under a new
    requestId in a sidechain file: when either copy is a sidechain, the message.id alone
    identifies the request and the non-sidechain copy is kept.
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
                    if better_replay(rec, other):
                        del best[other_key]
                        best[key] = rec
                        by_message[message] = key
                    continue
            else:
                by_message[message] = key
        best[key] = rec
    return list(best.values())


def to_event(r: Record) -> UsageEvent:
    # Positional: this runs once per request on every scan, warm ones included.
    return UsageEvent(
        "codex" if r[0].startswith("x:") else "claude", r[9], r[0], r[1], r[2], r[3], r[4],
        Tokens(r[11], r[12], r[13], r[14], r[15], r[16]), r[5], r[6], r[7], r[8], "", r[10],
    )
