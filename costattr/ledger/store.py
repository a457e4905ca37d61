"""This machine's ledger: the records, in SQLite (the standard library's), under COSTATTR_HOME.

Why SQLite rather than a JSON Lines journal: a commit must cost O(what changed) whatever the
history, and the hook needs three indexed questions answered (which request keys are covered,
which open records a branch has, what a backend has not received yet). SQLite answers them with
indexes, writes a commit's records in one atomic transaction (a SIGKILL at any point leaves the
old state or the new one), and serialises concurrent hooks with its own lock, which a killed
process releases. Each record is kept whole as JSON (`doc`) beside the columns used to find it.

Tables:
  records   (seq, id, kind, state, repo, session_id, branch, commit_sha, issue, pr, absorbed, doc)
            `seq` only grows (AUTOINCREMENT): publishing sends what lies past a target's mark.
            `absorbed` marks open records a closed one has taken in: kept (every copy of the
            ledger holds the same records), never absorbed twice.
  covered   (repo, key)          request keys recorded, as 64-bit hashes, per repository
  digests   (repo, session_id, n, digest)  a set digest of each session's covered keys: a
            session with nothing new is recognised without loading its keys
  targets   (target, seq, label, repo)  how far each shared backend has received the records
            (repo: the one repository a per-repository backend holds)
  legacy    (session_id, repo, cwd, last_ts)  v1 watermarks: what a 0.1 ledger already held
  meta      (key, value)         schema_version, migration marks

A file written by a newer costattr (higher schema_version) is refused, never overwritten; a file
that is not a readable database is moved aside, never overwritten.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from costattr import paths
from costattr.errors import CostattrError, LedgerCorrupt
from costattr.fsutil import SQLITE_COMPANIONS, move_aside, private_file
from costattr.ledger.records import AnyRecord, RecordError, SetAside, SpendRecord, _canonical, from_json

if TYPE_CHECKING:
    from filelock import FileLock

SCHEMA_VERSION = 2
STORE_NAME = "ledger.sqlite"
V1_NAME = "ledger.json"
ENV_LOCK_TIMEOUT = "COSTATTR_LOCK_TIMEOUT"
LOCK_TIMEOUT_S = 10.0
_CHUNK = 500  # SQLite's host-parameter limit is 999 on old builds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, state TEXT,
    repo TEXT NOT NULL, session_id TEXT NOT NULL, branch TEXT, commit_sha TEXT, issue TEXT, pr INTEGER,
    absorbed INTEGER NOT NULL DEFAULT 0, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS records_branch ON records (repo, branch, state);
CREATE INDEX IF NOT EXISTS records_session ON records (session_id);
CREATE INDEX IF NOT EXISTS records_repo_seq ON records (repo, seq);
CREATE TABLE IF NOT EXISTS covered (repo TEXT NOT NULL, key INTEGER NOT NULL, PRIMARY KEY (repo, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digests (repo TEXT NOT NULL, session_id TEXT NOT NULL, n INTEGER NOT NULL,
    digest INTEGER NOT NULL, PRIMARY KEY (repo, session_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS targets (target TEXT PRIMARY KEY, seq INTEGER NOT NULL, label TEXT NOT NULL, repo TEXT);
CREATE TABLE IF NOT EXISTS legacy (session_id TEXT PRIMARY KEY, repo TEXT, cwd TEXT, last_ts TEXT NOT NULL);
"""


def lock_timeout() -> float:
    raw = os.environ.get(ENV_LOCK_TIMEOUT, "").strip()
    try:
        value = float(raw) if raw else LOCK_TIMEOUT_S
    except ValueError:
        return LOCK_TIMEOUT_S
    return value if 0 < value < 10**6 else LOCK_TIMEOUT_S


def default_path() -> Path:
    return paths.costattr_home() / STORE_NAME


def key_hash(key: str) -> int:
    """A request key as a signed 64-bit integer (SQLite's INTEGER)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big", signed=True)


def set_digest(hashes: Iterable[int]) -> int:
    """Order-free digest of a set of key hashes (sum mod 2^64): equal sets, equal digests."""
    total = sum(hashes) % (1 << 64)
    return total - (1 << 64) if total >= (1 << 63) else total


@dataclass
class ReadResult:
    records: dict[str, AnyRecord] = field(default_factory=dict)
    set_aside: SetAside = field(default_factory=SetAside)


class LocalStore:
    """The SQLite ledger. Use `with store.write() as tx:` for changes; reads need no lock."""

    name = "json"  # the backend name users know ("json": this machine's own ledger)
    label = "local ledger"
    scope = "machine"

    def __init__(self, path: Path | None = None, *, timeout: float | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        # read_only (doctor): no migration, no table created, a damaged file left where it is
        # (damage surfaces as sqlite3.DatabaseError); a newer schema is refused all the same.
        self.read_only = read_only
        self.timeout = lock_timeout() if timeout is None else timeout
        self._conn: sqlite3.Connection | None = None
        self._opened: int | None = None  # the inode opened: damage is judged on that file only
        self.notices: list[str] = []  # one-time events worth a line (the 0.1 ledger converted)

    def describe(self) -> str:
        return str(self.path)

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.read_only:
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=self.timeout)
            self._conn = conn
            self._check_version(conn)
            return conn
        private_file(self.path, SQLITE_COMPANIONS)  # 0600 before SQLite makes it (-wal/-shm copy it); no symlink
        # Opening (and creating, and moving damage aside) happens under one short lock: a hook
        # that meets a damaged file moves it and its -wal/-shm aside while no other process can
        # open the path, so none creates a fresh ledger beside a stale -wal, or moves aside the
        # fresh ledger another hook just started. Reads and writes after opening need no lock.
        from filelock import Timeout

        try:
            with self._open_lock():
                return self._connect_locked()
        except Timeout:
            raise self._busy() from None

    def _open_lock(self) -> FileLock:
        from costattr.fsutil import lock

        return lock(self.path.with_name(self.path.name + ".open-lock"), self.timeout)

    def _connect_locked(self) -> sqlite3.Connection:
        existed = self.path.exists() and self.path.stat().st_size > 0
        self._opened = self.path.stat().st_ino if existed else None
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise CostattrError(f"cannot open the ledger {self.path}: {e}",
                                hint="check that COSTATTR_HOME is writable") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if not self._check_version(conn):
                # Created under the write lock, re-checked inside it: sixteen first hooks at once
                # create the tables once.
                conn.execute("BEGIN IMMEDIATE")
                if not self._check_version(conn):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            conn.execute("SELECT count(*) FROM records").fetchone()  # surfaces damage now
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise self._busy() from None
            if existed and _is_damage(e):
                raise self._set_aside(e, locked=True) from None
            raise CostattrError(f"cannot use the ledger {self.path}: {e}",
                                hint="check that COSTATTR_HOME is writable and not full") from None
        except sqlite3.DatabaseError as e:
            conn.close()
            if not existed:
                raise
            raise self._set_aside(e, locked=True) from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        # A 0.1 ledger.json beside the store is converted the first time any command opens it.
        from costattr.ledger.migrate import migrate_v1_if_needed

        notice = migrate_v1_if_needed(self)
        if notice:
            from costattr.logs import log

            log(notice)
            self.notices.append(notice)
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> bool:
        """True when the schema is in place; raises for a version this costattr does not know."""
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return False
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            return False
        try:
            version = int(row[0])
        except ValueError:
            version = -1
        if version != SCHEMA_VERSION:
            raise CostattrError(
                f"the ledger {self.path} has schema version {row[0]}, which this costattr ({SCHEMA_VERSION}) "
                "does not know; it was left untouched",
                hint="upgrade costattr (pip install -U costattr) to read it, or set COSTATTR_HOME elsewhere",
            )
        return True

    def _busy(self) -> CostattrError:
        return CostattrError(
            f"the ledger {self.path} is busy (another costattr held it for {self.timeout:g}s)",
            hint=f"the spend is recorded by the next hook, nothing is lost ({ENV_LOCK_TIMEOUT} sets the wait)",
        )

    def _set_aside(self, error: Exception, *, locked: bool = False) -> LedgerCorrupt:
        """Move the damaged file aside (`locked`: the open lock is held already)."""
        from filelock import Timeout

        reason = " ".join(str(error).split())[:200]
        try:
            if locked:
                kept = self._move_damaged()
            else:
                with self._open_lock():
                    kept = self._move_damaged()
        except Timeout:
            kept = None  # someone holds the path: the next run meets the damage again, if it is still there
        return LedgerCorrupt(
            f"the ledger {self.path} could not be read ({reason})" + (f"; it was moved to {kept}" if kept else ""),
            hint="a fresh ledger is started; the damaged copy is kept for inspection",
            path=self.path, kept=kept,
        )

    def _move_damaged(self) -> Path | None:
        # Another hook that met the same damage may have moved it aside and started a fresh
        # ledger at this path already: that one is healthy and stays.
        try:
            if self._opened is not None and self.path.stat().st_ino != self._opened:
                return None
            return move_aside(self.path)
        except FileNotFoundError:
            return None

    def _raise_if_damaged(self, error: sqlite3.DatabaseError) -> None:
        """Damage met after opening (a page deep in the file, read by a later statement): the
        file is closed and moved aside like damage found on opening."""
        if _is_damage(error) and not self.read_only:
            self.close()
            raise self._set_aside(error) from None

    def _exists(self) -> bool:
        """Whether there is anything to read: the store, or a 0.1 ledger that opening it converts."""
        return self.path.exists() or self.path.with_suffix(".json").is_file()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> ReadResult:
        """Every record (and the count of those that fail validation)."""
        return self._read("SELECT id, doc FROM records", ())

    def read_repo(self, repo: str) -> ReadResult:
        return self._read("SELECT id, doc FROM records WHERE repo = ?", (repo,))

    def read_about(self, *, issue: str | None = None, branch: str | None = None) -> ReadResult:
        """The spend records of one issue or one branch, with every link and rewrite (what
        resolving them needs): a budget check reads this, not the whole history."""
        column, value = ("issue", issue) if issue is not None else ("branch", branch)
        return self._read(f"SELECT id, doc FROM records WHERE {column} = ? OR kind != 'spend'", (value,))

    def _read(self, sql: str, args: Sequence[object]) -> ReadResult:
        if not self._exists():
            return ReadResult()
        conn = self._connect()
        out = ReadResult()
        try:
            for rid, doc in conn.execute(sql, args):
                try:
                    out.records[rid] = from_json(orjson.loads(doc))
                except (RecordError, orjson.JSONDecodeError) as e:
                    out.set_aside.add(str(e), f"{self.path} record {rid}")
        except sqlite3.DatabaseError as e:
            self._raise_if_damaged(e)
            raise
        return out

    def count(self) -> int:
        if not self._exists():
            return 0
        return int(self._connect().execute("SELECT count(*) FROM records").fetchone()[0])

    def repos(self) -> list[str]:
        if not self._exists():
            return []
        return [r for (r,) in self._connect().execute("SELECT DISTINCT repo FROM records ORDER BY repo")]

    def meta(self, key: str) -> str | None:
        if not self._exists():
            return None
        row = self._connect().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- publishing marks ---------------------------------------------------------------------

    def unsent(self, target: str, repo: str | None = None) -> tuple[list[AnyRecord], int]:
        """Records past `target`'s mark (of `repo` only, for a per-repository target), and the
        seq to mark once they are delivered."""
        conn = self._connect()
        row = conn.execute("SELECT seq FROM targets WHERE target = ?", (target,)).fetchone()
        mark = row[0] if row else 0
        if repo is None:
            rows = conn.execute("SELECT seq, doc FROM records WHERE seq > ? ORDER BY seq", (mark,)).fetchall()
        else:
            rows = conn.execute("SELECT seq, doc FROM records WHERE repo = ? AND seq > ? ORDER BY seq",
                                (repo, mark)).fetchall()
        out: list[AnyRecord] = []
        for _seq, doc in rows:
            try:
                out.append(from_json(orjson.loads(doc)))
            except (RecordError, orjson.JSONDecodeError):
                continue  # counted by read(); never sent
        # The mark moves only past what was actually read: a record a concurrent hook adds
        # meanwhile has a higher seq and waits for the next run.
        return out, max([mark, *(seq for seq, _doc in rows)])

    def add(self, records: Sequence[AnyRecord]) -> None:
        """The backend protocol's merge: a union by id."""
        with self.write() as tx:
            tx.insert(records)

    def mark_sent(self, target: str, seq: int, label: str, repo: str | None = None) -> None:
        with self.write() as tx:
            tx.conn.execute(
                "INSERT INTO targets VALUES (?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET "
                "seq = max(seq, excluded.seq), label = excluded.label, repo = excluded.repo",
                (target, seq, label, repo))

    def targets(self) -> list[tuple[str, str, int]]:
        """(target, label, records waiting) for every backend ever published to."""
        if not self._exists():
            return []
        conn = self._connect()
        out = []
        for target, seq, label, repo in conn.execute("SELECT target, seq, label, repo FROM targets ORDER BY target"):
            if repo is None:
                waiting = conn.execute("SELECT count(*) FROM records WHERE seq > ?", (seq,)).fetchone()[0]
            else:
                waiting = conn.execute("SELECT count(*) FROM records WHERE repo = ? AND seq > ?",
                                       (repo, seq)).fetchone()[0]
            out.append((target, label, int(waiting)))
        return out

    def forget_target(self, target: str) -> None:
        with self.write() as tx:
            tx.conn.execute("DELETE FROM targets WHERE target = ?", (target,))

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """One atomic transaction under SQLite's write lock (waited for at most `timeout`)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise self._busy() from None
            raise
        tx = Transaction(conn)
        try:
            yield tx
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._raise_if_damaged(e)
            raise
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _is_damage(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("malformed", "not a database", "file is encrypted", "disk image"))


class Transaction:
    """What the hook asks and changes, inside one write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.inserted = 0

    # coverage

    def digest(self, repo: str, session_id: str) -> tuple[int, int] | None:
        row = self.conn.execute("SELECT n, digest FROM digests WHERE repo = ? AND session_id = ?",
                                (repo, session_id)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def covered(self, repo: str, hashes: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for i in range(0, len(hashes), _CHUNK):
            chunk = hashes[i: i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in self.conn.execute(
                f"SELECT key FROM covered WHERE repo = ? AND key IN ({marks})", (repo, *chunk)))
        return found

    def cover(self, repo: str, session_id: str, hashes: Sequence[int]) -> None:
        """Mark request keys recorded, and fold them into the session's set digest."""
        unique = list(dict.fromkeys(hashes))
        known = self.covered(repo, unique)
        fresh = [h for h in unique if h not in known]
        if not fresh:
            return
        self.conn.executemany("INSERT OR IGNORE INTO covered VALUES (?, ?)", [(repo, h) for h in fresh])
        old = self.digest(repo, session_id) or (0, 0)
        self.conn.execute(
            "INSERT INTO digests VALUES (?, ?, ?, ?) ON CONFLICT (repo, session_id) DO UPDATE SET "
            "n = excluded.n, digest = excluded.digest",
            (repo, session_id, old[0] + len(fresh), set_digest([old[1], *fresh])))

    # records

    def open_on(self, repo: str, branch: str) -> list[SpendRecord]:
        rows = self.conn.execute(
            "SELECT doc FROM records WHERE repo = ? AND branch = ? AND state = 'open' AND absorbed = 0",
            (repo, branch)).fetchall()
        out: list[SpendRecord] = []
        for (doc,) in rows:
            try:
                rec = from_json(orjson.loads(doc))
            except (RecordError, orjson.JSONDecodeError):
                continue  # set aside by read(); a damaged open record is never absorbed
            if isinstance(rec, SpendRecord):
                out.append(rec)
        return out

    def sessions_on(self, repo: str, branch: str) -> set[str]:
        return {s for (s,) in self.conn.execute(
            "SELECT DISTINCT session_id FROM records WHERE repo = ? AND branch = ? AND kind = 'spend'",
            (repo, branch))}

    def residual_recorded(self, repo: str, session_id: str, model: str) -> Decimal:
        """What the session's records in `repo` already hold for pseudo-model `model`."""
        total = Decimal(0)
        for (doc,) in self.conn.execute(
                "SELECT doc FROM records WHERE repo = ? AND session_id = ? AND kind = 'spend'", (repo, session_id)):
            try:
                rec = from_json(orjson.loads(doc))
            except (RecordError, orjson.JSONDecodeError):
                continue
            total += sum((p.cost for p in getattr(rec, "parts", ()) if p.model == model), Decimal(0))
        return total

    def prs_of(self, repo: str, branch: str) -> set[int]:
        return {p for (p,) in self.conn.execute(
            "SELECT DISTINCT pr FROM records WHERE repo = ? AND branch = ? AND kind = 'link'", (repo, branch))}

    def closed_on(self, repo: str, commit: str, branch: str | None) -> set[str]:
        """Sessions with spend on `commit` made on `branch`: closed on it, or rewritten into it."""
        return {s for (s,) in self.conn.execute(
            "SELECT DISTINCT session_id FROM records WHERE repo = ? AND commit_sha = ? AND branch IS ?"
            " AND kind IN ('spend', 'rewrite')", (repo, commit, branch))}

    def insert(self, records: Iterable[AnyRecord]) -> int:
        """Add records (union by id: a copy already held is left as it is). Returns how many were new."""
        added = 0
        records = list(records)
        for rec in records:
            doc = _canonical(rec)
            branch = getattr(rec, "branch", None)
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO records (id, kind, state, repo, session_id, branch, commit_sha, issue, pr, doc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.id, rec.kind, getattr(rec, "state", None), rec.repo, rec.session_id, branch,
                 # a rewrite is found by the commit it points to: an amend of an amend follows the chain
                 getattr(rec, "commit", None) or getattr(rec, "new", None), getattr(rec, "issue", None),
                 getattr(rec, "pr", None), doc))
            added += cur.rowcount
        self.inserted += added
        # An open record absorbed by a closed one (ours or merged in from elsewhere) is never
        # offered for closing again.
        self.absorb(i for rec in records if isinstance(rec, SpendRecord) for i in rec.closes)
        return added

    def absorb(self, ids: Iterable[str]) -> None:
        """Mark open records absorbed: the closed record naming them holds their spend now."""
        self.conn.executemany("UPDATE records SET absorbed = 1 WHERE id = ? AND state = 'open'", [(i,) for i in ids])

    # v1 watermarks

    def legacy(self, session_ids: Iterable[str]) -> dict[str, tuple[str | None, str | None, str]]:
        out: dict[str, tuple[str | None, str | None, str]] = {}
        ids = list(session_ids)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i: i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for sid, repo, cwd, last in self.conn.execute(
                    f"SELECT session_id, repo, cwd, last_ts FROM legacy WHERE session_id IN ({marks})", chunk):
                out[sid] = (repo, cwd, last)
        return out

    def set_legacy(self, rows: Iterable[tuple[str, str | None, str | None, str]]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO legacy VALUES (?, ?, ?, ?)", list(rows))

    def drop_legacy(self, session_id: str) -> None:
        self.conn.execute("DELETE FROM legacy WHERE session_id = ?", (session_id,))

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
