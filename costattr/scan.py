"""The scan engine: every transcript file, read once, deduplicated across files.

Per file it keeps a cache entry (file identity + size + mtime -> the adapter's result and the
byte offset it consumed) in SQLite under COSTATTR_HOME. An unchanged file is not read at all; a
file that grew is read from its cursor only; anything else is read again from the start. A cache
that cannot be read is moved aside and rebuilt, and one that cannot be written is done without:
it can cost time, never a wrong figure.
"""

from __future__ import annotations

import copy
import gc
import heapq
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from costattr import paths
from costattr.fsutil import SQLITE_COMPANIONS, move_aside, private_file
from costattr.logs import log
from costattr.models import PrLink, ScanStats, SessionCost, Tokens, UsageEvent
from costattr.sources import SOURCES, FileParse
from costattr.sources.base import (
    R_KEY,
    R_SIDECHAIN,
    RECORD_FIELDS,
    Record,
    better,
    better_replay,
    keep_fact,
    loads_line,
)

CACHE_VERSION = 6  # 6: facts (cost-state, pr-link) and the pending unterminated last line
READ_CHUNK = 32 << 20  # bounded memory per file: a chunk plus the longest line
TAIL_BYTES = 64  # bytes before the cursor remembered to tell an append from a rewrite
# A peer's write lock on the cache is waited for this long, then the cache rows are dropped (the
# next run writes them): the cache is an optimisation, and a commit must not wait 15 s for one.
CACHE_LOCK_WAIT_S = 1.0
PARALLEL_MIN_BYTES = 48 << 20  # below this, process start-up costs more than it saves
BATCHES_PER_WORKER = 4  # enough to even out, few enough to keep inter-process traffic low

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
    # Claude Code's cost-state per session (largest snapshot), and its pr-link records, for the
    # sessions in `events` (plain data: pricing and attribution decide what they mean).
    session_costs: dict[str, SessionCost] = field(default_factory=dict)
    pr_links: list[PrLink] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading one file


def read_file(tool: str, path: Path, state: FileParse) -> tuple[FileParse, int]:
    """Fold the bytes of `path` after `state.offset` into `state`; return it and the bytes read.

    Only complete lines are consumed: a torn last line stays unread until its newline arrives.
    A last line without its newline that parses as a JSON object is complete all the same (a
    strict prefix of an object is never itself an object; hand-written and truncated files end
    so at rest): it is read into `state.pending` and counted, but the cursor stays before it.
    A file that no longer ends, at the cursor, with the bytes it ended with (rewritten in place
    rather than appended to) is read again from the start.
    """
    source = SOURCES[tool]
    with path.open("rb") as f:
        if state.offset and not _same_prefix(f, state):
            state = FileParse()
        state.pending = None  # whatever followed the cursor last time is read again now
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
        if carry.strip():
            state.pending = _read_unterminated(source, path, carry, pos, state)
    return state, pos - start


def _read_unterminated(source: Any, path: Path, line: bytes, offset: int, state: FileParse) -> FileParse | None:
    """The last line of a file that has no newline, parsed into a copy of `state`'s parser
    state (so consuming it later starts from where the cursor really is), or None when it is
    not a whole JSON object: then it is a torn line, still being written."""
    try:
        obj = loads_line(line)
    except ValueError:
        return None
    if type(obj) is not dict:
        return None  # `1` could still become `12`: only an object proves it is whole
    pending = FileParse(parser_state=copy.deepcopy(state.parser_state))
    source.parse(path, line + b"\n", offset, pending)
    return pending


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
        "facts": state.facts,
        "pending": state_to_dict(state.pending) if state.pending is not None else None,
    }


def state_from_dict(d: dict[str, Any]) -> FileParse:
    pending = d.get("pending")
    return FileParse(
        records={r[R_KEY]: tuple(r) for r in d["records"]},
        offset=int(d["offset"]),
        skipped=int(d["skipped"]),
        reasons=dict(d["reasons"]),
        where=list(d["where"]),
        parser_state=dict(d["parser"]),
        tail=str(d.get("tail", "")).encode("latin-1"),
        facts=dict(d.get("facts") or {}),
        pending=state_from_dict(pending) if pending else None,
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
        private_file(self.path, SQLITE_COMPANIONS)  # 0600 before SQLite makes it (-wal/-shm copy it); no symlink
        try:
            self.conn = self._connect()
        except sqlite3.OperationalError:
            raise  # busy or locked by another costattr: not damage, the caller reads without the cache
        except sqlite3.DatabaseError as e:
            if not self.path.exists():
                raise
            self._set_aside(e)
            self.conn = self._connect()
        return self.conn

    def _set_aside(self, error: Exception) -> None:
        kept = move_aside(self.path)  # takes the -wal/-shm journal along with the file
        self.notice = f"the scan cache was unreadable ({error}); moved to {kept} and rebuilt"
        log(self.notice)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=CACHE_LOCK_WAIT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != CACHE_VERSION:
                # Re-read under a write lock: sixteen first hooks at once must create the table
                # once, not drop each other's.
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("PRAGMA user_version").fetchone()[0] != CACHE_VERSION:
                    conn.execute("DROP TABLE IF EXISTS files")
                    conn.execute(
                        "CREATE TABLE files (path BLOB PRIMARY KEY, tool TEXT, dev INTEGER, ino INTEGER,"
                        " size INTEGER, mtime_ns INTEGER, cwds TEXT, state BLOB)"
                    )
                    conn.execute(f"PRAGMA user_version={CACHE_VERSION}")
                conn.execute("COMMIT")
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

    def store(self, rows: Iterable[tuple[FileInfo, dict[str, Any], bytes]]) -> None:
        """Save (file, state, state serialised) rows in one transaction."""
        with self.writer() as put:
            for row in rows:
                put(*row)

    @contextmanager
    def writer(self, batch: int = 64) -> Iterator[Callable[[FileInfo, dict[str, Any], bytes], None]]:
        """Rows are written as they are put, in short transactions of `batch` rows: a scan saves
        files while its workers still parse, and a concurrent hook never waits long for the
        lock. The cache is an optimisation: rows that cannot be written are dropped (the next
        run reads those files again), never the scan."""
        failed: list[sqlite3.Error] = []
        pending: list[tuple[Any, ...]] = []
        try:
            conn = self.open()
        except sqlite3.Error as e:
            failed.append(e)

        def flush() -> None:
            if pending and not failed:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)", pending)
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    failed.append(e)
                    _rollback(conn)
            pending.clear()

        def put(fi: FileInfo, st: dict[str, Any], blob: bytes) -> None:
            unterminated = st.get("pending")
            recs = st["records"] + unterminated["records"] if unterminated else st["records"]
            cwds = orjson.dumps(sorted({r[3] for r in recs})).decode()
            pending.append((os.fsencode(fi.path), fi.tool, fi.dev, fi.ino, fi.size, fi.mtime_ns, cwds, blob))
            if len(pending) >= batch:
                flush()

        yield put
        flush()
        if failed:
            log(f"scan cache not (fully) updated: {failed[0]}")

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


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


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
        merge = _Merge({str(fi.path): fi.size for fi in files}, cwd_filter)
        cache = _open_cache() if use_cache else None
        try:
            changed = _read_all(files, tools, cache, merge, progress, workers)
        finally:
            if cache is not None:
                cache.close()
        merge.stats.files = len(files)
        if cache is not None and cache.notice:
            merge.stats.skipped_where.append(cache.notice)
        events = [to_event(r) for r in merge.dedup.records()]
    if cwd_filter is not None:
        events = [e for e in events if cwd_filter(e.cwd)]
    costs, links = session_facts(merge.facts, {e.session_id for e in events} if cwd_filter is not None else None)
    return ScanResult(events, merge.stats, looked_in, files, changed, costs, links)


def session_facts(facts: dict[str, dict[str, Any]], sessions: set[str] | None = None
                  ) -> tuple[dict[str, SessionCost], list[PrLink]]:
    """The merged facts as plain data, limited to `sessions` when given."""
    costs: dict[str, SessionCost] = {}
    for sid, (total, models, unknown, counts) in facts.get("cost", {}).items():
        if sessions is None or sid in sessions:
            costs[sid] = SessionCost(sid, Decimal(total), {m: Decimal(c) for m, c in models.items()}, unknown,
                                     dict(counts))
    links = [PrLink(sid, number, url, repo, ts or None, branch, cwd)
             for ts, sid, number, url, repo, branch, cwd in facts.get("pr", {}).values()
             if sessions is None or sid in sessions]
    links.sort(key=lambda link: (link.timestamp or "\uffff", link.session_id, link.url))
    return costs, links


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
    merge: _Merge,
    progress: ProgressFn | None,
    workers: int | None,
) -> list[FileInfo]:
    """Take unchanged files from the cache, parse the rest (from the cursor when a file only
    grew), and merge each file the moment it is ready, saving its cache row at the same time:
    both overlap the workers' parsing. Returns the files that were parsed."""
    known = _fingerprints(cache)
    unchanged, grown, new = _plan(files, known, cwd_filter=merge.cwd_filter)
    states = _load_states(cache, unchanged + [str(fi.path) for fi in grown])
    lost = set(unchanged) - states.keys()  # a row that could not be loaded: read the file again
    new += [fi for fi in files if str(fi.path) in lost]
    for path in unchanged:
        if path in states:
            merge.add_file(path, states[path])
            merge.stats.cached_files += 1
    jobs = [(fi, states.get(str(fi.path))) for fi in grown] + [(fi, None) for fi in new]
    changed: list[FileInfo] = []
    with _cache_writer(cache) as put:
        for fi, st, blob, nread in _parse_all(jobs, progress, workers):
            merge.add_file(str(fi.path), st)
            merge.stats.bytes_read += nread
            put(fi, st, blob)
            changed.append(fi)
    if cache is not None:
        present = {str(fi.path) for fi in files}
        cache.forget([p for p, fp in known.items() if fp[0] in tools and p not in present])
    return changed


@contextmanager
def _cache_writer(cache: ScanCache | None) -> Iterator[Callable[[FileInfo, dict[str, Any], bytes], None]]:
    if cache is None:
        yield lambda fi, st, blob: None
    else:
        with cache.writer() as put:
            yield put


def _plan(
    files: list[FileInfo], known: dict[str, Fingerprint], cwd_filter: Callable[[str], bool] | None = None
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
    except sqlite3.OperationalError as e:  # busy: read every file this time, keep the cache
        log(f"scan cache busy ({e}); reading without it")
        return {}
    except (sqlite3.DatabaseError, orjson.JSONDecodeError, TypeError) as e:
        _rebuild(cache, e)
        return {}


def _load_states(cache: ScanCache | None, paths_: list[str]) -> dict[str, dict[str, Any]]:
    if cache is None or not paths_:
        return {}
    try:
        states = cache.states(paths_)
        for state in states.values():
            _check_state(state)
        return states
    except (sqlite3.DatabaseError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError,
            AttributeError) as e:
        _rebuild(cache, e)  # unreadable rows cost a re-read, never a wrong figure
        return {}


def _check_state(state: Any) -> None:
    """Raise ValueError unless a cached state has the shape this version writes."""
    if not isinstance(state, dict) or not isinstance(state.get("records"), list):
        raise ValueError("cached state is not an object with a list of records")
    if not isinstance(state.get("offset"), int) or not isinstance(state.get("skipped"), int):
        raise ValueError("cached state has no byte offset")
    if not isinstance(state.get("facts", {}), dict):
        raise ValueError("cached facts are not an object")
    for rec in state["records"]:
        if not isinstance(rec, list) or len(rec) != RECORD_FIELDS or not isinstance(rec[R_KEY], str):
            raise ValueError("cached record of the wrong shape")
    if state.get("pending") is not None:
        _check_state(state["pending"])


def _rebuild(cache: ScanCache, error: Exception) -> None:
    """Keep a damaged cache aside and start an empty one (this run reads every file)."""
    cache.close()
    try:
        cache._set_aside(error)
    except OSError as e:
        log(f"scan cache unreadable ({error}) and could not be moved aside ({e})")


Job = tuple[FileInfo, "dict[str, Any] | None"]


def _parse_all(jobs: list[Job], progress: ProgressFn | None, workers: int | None) -> Iterator[Parsed]:
    """Parse the files that need it, over several processes when there is enough to read;
    results come batch by batch, as they are ready."""
    size = {id(j): j[0].size - (j[1]["offset"] if j[1] else 0) for j in jobs}
    total = sum(size.values())
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers > 1 and total >= PARALLEL_MIN_BYTES and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor  # only a big cold scan pays its import

        batches = _balanced(jobs, size, workers * BATCHES_PER_WORKER)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = pool.map(_parse_batch, [[(fi.tool, str(fi.path), st) for fi, st in b] for b in batches])
            yield from _collect([j for b in batches for j in b], (r for batch in results for r in batch),
                                progress, total)
    else:
        yield from _collect(jobs, (_parse_job((fi.tool, str(fi.path), st)) for fi, st in jobs), progress, total)


def _balanced(jobs: list[Job], size: dict[int, int], n: int) -> list[list[Job]]:
    """`n` batches of about equal bytes (largest file first into the lightest batch), heaviest
    batch first: few round trips between processes, and no worker left with the big files."""
    bins: list[tuple[int, int, list[Job]]] = [(0, i, []) for i in range(n)]
    for job in sorted(jobs, key=lambda j: -size[id(j)]):
        load, i, batch = heapq.heappop(bins)
        batch.append(job)
        heapq.heappush(bins, (load + size[id(job)], i, batch))
    return [b for _, _, b in sorted(bins, key=lambda b: -b[0]) if b]


def _parse_batch(jobs: list[tuple[str, str, dict[str, Any] | None]]) -> list[tuple[bytes, int] | None]:
    return [_parse_job(job) for job in jobs]


def _collect(
    order: list[Job], results: Iterable[tuple[bytes, int] | None], progress: ProgressFn | None, total: int
) -> Iterator[Parsed]:
    done = 0
    for (fi, _), res in zip(order, results, strict=True):
        done += fi.size
        if progress:
            progress(min(done, total), total)
        if res is not None:
            yield fi, orjson.loads(res[0]), res[0], res[1]


class _Dedup:
    """One record per request across every file, fed in any order (the result does not depend
    on it: ties are broken by value).

    Primary key: (message.id, requestId): copies of one request (streamed blocks, subagent file
    and its progress replay, resumed-session copies, archived rollouts) keep the most complete.
    A `/btw` side question replays parent messages with the same message.id under a new
    requestId in a sidechain file: when either copy is a sidechain, the message.id alone
    identifies the request and the non-sidechain copy is kept.

    A copy without a requestId (keyed by message.id alone: Claude Code 1.0.51 rewrote a response
    with no requestId and parentUuid null, and 2.1.x can omit it) is the same request as a copy
    of that message.id that has one: it folds into it rather than counting twice. Which copy it
    folds into is decided once every file is in (`records`), so reading order cannot change it.
    """

    def __init__(self) -> None:
        self.best: dict[str, Record] = {}
        self.by_message: dict[str, str] = {}
        self.bare: dict[str, Record] = {}  # "c:<message.id>" -> best copy without a requestId

    def add(self, rec: Record) -> None:
        best, key = self.best, rec[R_KEY]
        if _is_bare_message_key(key):
            old = self.bare.get(key)
            if old is None or better(rec, old):
                self.bare[key] = rec
            return
        old = best.get(key)
        if old is not None:
            if better(rec, old):
                best[key] = rec
            return
        if key.startswith("c:") and "|" in key:
            message = key.partition("|")[0]
            other_key = self.by_message.get(message)
            if other_key is None:
                self.by_message[message] = key
            elif rec[R_SIDECHAIN] or best[other_key][R_SIDECHAIN]:
                if better_replay(rec, best[other_key]):
                    del best[other_key]
                    best[key] = rec
                    self.by_message[message] = key
                return
        best[key] = rec

    def records(self) -> list[Record]:
        if not self.bare:
            return list(self.best.values())
        out = dict(self.best)
        # Each message's keyed copy a bare copy folds into: the smallest key among the
        # non-sidechain copies (then any), a choice that depends on values only.
        target: dict[str, str] = {}
        for key, rec in out.items():
            if key.startswith("c:") and "|" in key:
                message = key.partition("|")[0]
                cur = target.get(message)
                if cur is None or (rec[R_SIDECHAIN], key) < (out[cur][R_SIDECHAIN], cur):
                    target[message] = key
        for key, rec in self.bare.items():
            keyed = target.get(key)
            if keyed is None:
                out[key] = rec  # no copy with a requestId: the message.id alone is the request
            elif better_replay(rec, out[keyed]):
                out[keyed] = (keyed, *rec[1:])  # the fuller copy's figures, under the stable key
        return list(out.values())


def _is_bare_message_key(key: str) -> bool:
    """A Claude key made of a message.id without a requestId (not a uuid or file-place key)."""
    return key.startswith("c:") and "|" not in key and not key.startswith(("c:u:", "c:f:"))


def dedup(records: Iterable[Record]) -> list[Record]:
    """One record per request across every file (see `_Dedup`)."""
    d = _Dedup()
    for rec in records:
        d.add(rec)
    return d.records()


class _Merge:
    """Files' results folded in as they arrive: their records deduplicated, their facts kept
    one per key, their skipped lines counted (a torn last line is counted on every run while it
    lasts; a complete one without its newline is read, as `pending`)."""

    def __init__(self, size_of: dict[str, int], cwd_filter: Callable[[str], bool] | None) -> None:
        self.size_of = size_of
        self.cwd_filter = cwd_filter
        self.dedup = _Dedup()
        self.stats = ScanStats()
        self.facts: dict[str, dict[str, Any]] = {}

    def add_file(self, path: str, st: dict[str, Any]) -> None:
        pending = st.get("pending")
        parts = (st, pending) if pending else (st,)
        if self.cwd_filter is not None and not any(self.cwd_filter(r[3]) for part in parts for r in part["records"]):
            return
        add = self.dedup.add
        stats = self.stats
        for part in parts:
            for rec in part["records"]:
                add(rec)
            for kind, values in part.get("facts", {}).items():
                for key, value in values.items():
                    keep_fact(self.facts, kind, key, value)
            stats.skipped_lines += part["skipped"]
            for reason, n in part["reasons"].items():
                stats.skipped_reasons[reason] = stats.skipped_reasons.get(reason, 0) + n
            stats.skipped_where.extend(part["where"][: max(0, 200 - len(stats.skipped_where))])
        if pending is None and self.size_of.get(path, 0) > st["offset"]:
            stats.skip("torn last line (incomplete, will be read when complete)", path)


def to_event(r: Record) -> UsageEvent:
    # Positional: this runs once per request on every scan, warm ones included.
    return UsageEvent(
        "codex" if r[0].startswith("x:") else "claude", r[9], r[0], r[1], r[2], r[3], r[4],
        Tokens(r[11], r[12], r[13], r[14], r[15], r[16]), r[5], r[6], r[7], r[8], "", r[10],
    )
