"""The memory-API backend: the ledger is a CloudClawer-style memory file, `agent-costs`.

    GET {url}/u/{user}/memory/file?path=agent-costs      X-API-Key: ...
        200 {"path": "agent-costs", "data": {session_id: entry}}  ETag: "17"   | 404: no file yet
    PUT  same URL, body {"data": {...}}, If-Match: "17" (update) or If-None-Match: * (create)
        2xx | 412 (someone wrote in between: re-read, merge, retry)

Each entry keeps CloudClawer's fields (`session_id, cost_usd, cache_pct, cost_str, branch,
commit, prs, updated_at`), computed from the session's records, which ride along under
`records`. A write merges by union of records: the file after a PUT holds every record it held
before plus ours (checked before every PUT), and entries we cannot read (another tool's, a newer
costattr's) go back untouched; when one sits under a session's key, that session's entry is
written beside it (`<session>#costattr`). A record inside an entry that fails validation is set
aside when read and written back as it was. Entries written by costattr 0.1 (no `records`) are
read through the v1 conversion, with the same ids the local migration gives them. A 200 whose
`data` is not an object, whose body does not parse, or (before a write) that has no ETag is an
error, never an empty file: a PUT over it would replace everyone's entries with ours.

Months (so that 20,000 sessions stay cheap to publish): `agent-costs` keeps the sessions of the
newest month and the one before, the CloudClawer file other clients read; the entries of older
months move to `agent-costs/YYYY-MM` (same shape), listed in `agent-costs/months`. New records
always go to `agent-costs`, so a publish costs what two months weigh, whatever the history. A move
writes the month file, then the list, then `agent-costs` without the moved entries (conditional,
and only once every record it drops is in the month file); a reader reads `agent-costs`, then the
list, then the months, so that a move running meanwhile never hides a record from it. A late
record of an old session lands in `agent-costs` and joins its month at the next move. See
docs/shared-ledgers.md.

Everything here is bounded. One call (read() or add(), every retry included) ends within
`timeout` seconds whatever the server does, and never after `deadline` (a background
publisher's whole run) when that is set. httpx's timeouts apply per socket operation, so a
server dripping one byte at a time never trips them: each request runs in a worker thread that
is abandoned (its connection closed) at the deadline. Failures become `RemoteUnavailable` (try
again later: the records wait in the local ledger) or `RemoteAuthError` (a setting is wrong:
retrying will not help).

The API key is wrapped in `Secret` as soon as it is read and only unwrapped into the request
header, so no message, repr, log line or file can contain it.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from costattr import __version__, logs, secrets
from costattr.errors import ConfigError, RemoteError
from costattr.ledger.base import LEDGER_PATH_NAME
from costattr.ledger.records import AnyRecord, RecordError, SetAside, SpendRecord, from_json, union
from costattr.ledger.store import ReadResult

if TYPE_CHECKING:  # httpx costs ~100 ms to import: only the network path pays for it
    import httpx

ENV_URL = "COSTATTR_API_URL"
ENV_USER = "COSTATTR_API_USER"
ENV_KEY = "COSTATTR_API_KEY"
KEYRING_SERVICE = "costattr"  # keyring.get_password("costattr", <api user>)

# No commit waits on these any more (the hook publishes in the background), so they are sized for
# a real network and a big file rather than for a commit's patience.
DEFAULT_TIMEOUT_S = 10.0  # budget for one read() or one add(), retries included
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # per answer; one month of 20,000 sessions is ~45 MB
DEFAULT_MAX_TRIES = 5
BACKOFF_BASE_S = 0.05  # 50, 100, 200, 400 ms (+ jitter) between conflicting writes
MONTHS_NAME = "months"  # `agent-costs/months`: the months moved out of `agent-costs`
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
TIMEOUT_SETTING = "[ledger] api_timeout (COSTATTR_API_TIMEOUT)"
MAX_BYTES_SETTING = "[ledger] api_max_bytes (COSTATTR_API_MAX_BYTES)"


class RemoteUnavailable(RemoteError):
    """The remote could not be used right now (down, slow, 5xx, garbage): try again later.

    `reason` is the short cause ("connection refused", "HTTP 503") for one-line hook messages.
    """

    def __init__(self, message: str, hint: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason or message


class RemoteAuthError(RemoteError):
    """The remote refused our credentials: retrying will not help until `setting` is fixed."""

    def __init__(self, message: str, hint: str | None = None, *, setting: str = ENV_KEY,
                 reason: str | None = None) -> None:
        super().__init__(message, hint)
        self.setting = setting
        self.reason = reason or message


class Secret:
    """A string that never shows itself: repr/str/format print a mask, only reveal() gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would write the key somewhere: refuse
        raise TypeError("a Secret cannot be pickled")


# ----------------------------------------------------------------------------------------------
# Settings


def load_api_key(user: str | None = None) -> Secret | None:
    """The key from COSTATTR_API_KEY, else from the OS keyring when `keyring` is installed.

    Never from config files or the ledger: those get committed and copied around.
    """
    value = os.environ.get(ENV_KEY, "").strip()
    if value:
        return Secret(value)
    if not user:
        return None
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]  # optional, not a dependency
    except ImportError:
        return None
    try:
        stored = keyring.get_password(KEYRING_SERVICE, user)
    except Exception:  # noqa: BLE001  # no usable keyring backend (headless CI, locked keychain, ...)
        return None
    return Secret(stored) if stored else None


def _check_header_value(key: Secret) -> None:
    # httpx would reject a key with control characters and quote it in the error message.
    value = key.reveal()
    if not value or any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise ConfigError(
            f"{ENV_KEY} is not a valid API key (empty, or contains spaces or control characters)",
            hint=f"set {ENV_KEY} to the key exactly as the memory API issued it",
        )


def mask_url(url: str) -> str:
    """The URL without any `user:password@` part, for messages."""
    return secrets.mask_url(url)


# ----------------------------------------------------------------------------------------------
# The file's contents


SIDE_KEY_SUFFIX = "#costattr"  # where a session's entry goes when its own key holds an entry we cannot read


@dataclass(slots=True)
class _Contents:
    """What one GET's file holds, as costattr reads it."""

    records: dict[str, AnyRecord] = field(default_factory=dict)  # every valid record, by id
    set_aside: SetAside = field(default_factory=SetAside)
    unknown: set[str] = field(default_factory=set)  # keys of entries we cannot read: never rewritten
    kept: dict[str, list[Any]] = field(default_factory=dict)  # key -> its raw records that fail validation
    by_key: dict[str, list[AnyRecord]] = field(default_factory=dict)  # the valid records of each entry we read


class _Document:
    """One GET's answer: the raw entries (kept as-is so unknown ones survive our PUT) and ETag."""

    __slots__ = ("_contents", "etag", "exists", "raw")

    def __init__(self, raw: dict[str, Any], etag: str | None, exists: bool) -> None:
        self.raw = raw
        self.etag = etag
        self.exists = exists
        self._contents: _Contents | None = None

    def contents(self, where: str) -> _Contents:
        """The entries read (once: a big file is parsed once however often it is asked)."""
        if self._contents is None:
            self._contents = self._parse(where)
        return self._contents

    def edited(self, data: dict[str, Any], changed: set[str], where: str,
               copied: Mapping[str, list[AnyRecord]]) -> _Document:
        """The file `data`: this one with the entries under `changed` new or replaced, those under
        `copied` taken from another file (with the records they read as there), and the keys it
        lacks removed. Only the changed entries are parsed again (the others are the very objects
        a file read holds): checking a publish costs what it changes, not the file's size. Its
        `set_aside` counts only what the changed entries set aside."""
        base = self.contents(where)
        fresh = _Document({k: data[k] for k in changed if k in data}, None, True).contents(where)
        fresh.by_key.update(copied)
        out = _Contents(set_aside=fresh.set_aside)
        for key in data:
            source = fresh if key in changed or key in copied else base
            if key in source.by_key:
                out.by_key[key] = source.by_key[key]
            if key in source.kept:
                out.kept[key] = source.kept[key]
            if key in source.unknown:
                out.unknown.add(key)
        out.records = union(r for recs in out.by_key.values() for r in recs)
        doc = _Document(data, None, True)
        doc._contents = out
        return doc

    def _parse(self, where: str) -> _Contents:
        from costattr.ledger.migrate import v1_records

        out = _Contents()
        for key, entry in self.raw.items():
            label = f"{where} entry {key[:60]}"
            if isinstance(entry, dict) and isinstance(entry.get("records"), list):
                mine: list[AnyRecord] = []
                for raw in entry["records"]:
                    try:
                        mine.append(from_json(raw))
                    except RecordError as e:
                        # Set aside, and written back as it is when this entry is rewritten: a
                        # record a newer costattr (or a hand edit) wrote is not ours to drop.
                        out.set_aside.add(str(e), label)
                        out.kept.setdefault(key, []).append(raw)
                out.by_key[key] = mine
            elif isinstance(entry, dict) and entry.get("schema_version", 1) == 1 and "segments" in entry:
                try:
                    out.by_key[key] = v1_records(entry)  # costattr 0.1: the ids the local migration gives
                except RecordError as e:
                    out.set_aside.add(str(e), label)
                    out.unknown.add(key)
            else:
                out.unknown.add(key)
                out.set_aside.add("an entry costattr cannot read (kept as it is)", label)
        out.records = union(r for recs in out.by_key.values() for r in recs)
        return out


def _entry_key(session_id: str, unknown: set[str]) -> str:
    """The key a session's entry is written under: its id, unless an entry we cannot read holds it
    (another CloudClawer client's, a newer costattr's), which then stays untouched beside ours."""
    key = session_id
    n = 1
    while key in unknown:
        key = f"{session_id}{SIDE_KEY_SUFFIX}" + (str(n) if n > 1 else "")
        n += 1
    return key


# ----------------------------------------------------------------------------------------------
# Months


def month_path(path: str, month: str) -> str:
    return f"{path}/{month}"


def _month_of(records: Iterable[AnyRecord]) -> str | None:
    """`YYYY-MM` (UTC) of an entry's newest request; None for an entry with no spend (links only)."""
    last = max((r.last_ts for r in records if isinstance(r, SpendRecord)), default=None)
    return last[:7] if last else None  # canonical timestamps: `YYYY-MM-DDTHH:MM:SS.mmmZ`


def _month_before(month: str) -> str:
    year, m = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if m == 1 else f"{year}-{m - 1:02d}"


def to_archive(found: _Contents, now: datetime | None = None) -> dict[str, dict[str, list[AnyRecord]]]:
    """The entries of `agent-costs` that belong in a month file: month -> {key: records}.

    Kept: the newest month and the one before, the newest being this month or, when the clock is
    ahead of every entry (a wrong clock), the newest month the file holds, so that no clock can
    empty the file other clients read. Never moved: entries we cannot read, entries holding a
    record that fails validation (written back as they are, where they are), link-only entries.
    """
    months = {key: month for key, recs in found.by_key.items()
              if key not in found.kept and (month := _month_of(recs)) is not None}
    if not months:
        return {}
    clock = (now or datetime.now(UTC)).strftime("%Y-%m")
    keep_from = _month_before(min(clock, max(months.values())))
    out: dict[str, dict[str, list[AnyRecord]]] = defaultdict(dict)
    for key, month in months.items():
        if month < keep_from:
            out[month][key] = found.by_key[key]
    return dict(out)


# ----------------------------------------------------------------------------------------------
# The backend


class MemoryApiLedger:
    name = "memory-api"
    label = "memory API"
    scope = "machine"  # one file per user: every repository's records

    def __init__(
        self,
        url: str,
        user: str,
        key: Secret | str,
        path: str = LEDGER_PATH_NAME,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_tries: int = DEFAULT_MAX_TRIES,
    ) -> None:
        if not url:
            raise ConfigError("the memory API URL is not set", hint=f"set {ENV_URL}")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{ENV_URL} must start with http:// or https:// (got {mask_url(url)!r})")
        if not user:
            raise ConfigError("the memory API user is not set", hint=f"set {ENV_USER}")
        self.url = url.rstrip("/")
        self.user = user
        self.path = path or LEDGER_PATH_NAME
        self._key = key if isinstance(key, Secret) else Secret(key)
        _check_header_value(self._key)
        # Range-checked where they are read (config.check_api_timeout / check_api_max_bytes).
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_bytes = int(max_bytes)
        self.max_tries = max(1, max_tries)
        # A whole run's deadline (time.monotonic()), set by the background publisher: no call
        # ends after it, whatever is left of its own `timeout`.
        self.deadline: float | None = None

    # -- presentation: never the key ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"{self.url}/u/{quote(self.user, safe='')}/memory/file"

    def describe(self, path: str | None = None) -> str:
        return f"{mask_url(self.endpoint)}?path={path or self.path}"

    def __repr__(self) -> str:
        return f"MemoryApiLedger(url={mask_url(self.url)!r}, user={self.user!r}, path={self.path!r}, key=****)"

    def _redact(self, text: str) -> str:
        return secrets.redact(text, self._key.reveal())

    @property
    def _months_path(self) -> str:
        return month_path(self.path, MONTHS_NAME)

    # -- protocol ---------------------------------------------------------------------------------

    def read(self) -> ReadResult:
        """Every record of `agent-costs` and of the month files moved out of it."""
        deadline = self._deadline()
        with self._client() as client:
            # This order (the file, then the list, then the months) is what makes a concurrent
            # move invisible: see the module docstring.
            docs = [(self.path, self._get(client, self.path, deadline))]
            docs += [(path, self._get(client, path, deadline)) for path in self._months(client, deadline)]
        found: list[AnyRecord] = []
        set_aside = SetAside()
        for path, doc in docs:
            contents = doc.contents(self.describe(path))
            found += contents.records.values()
            set_aside.extend(contents.set_aside)
        return ReadResult(union(found), set_aside)

    def add(self, records: Sequence[AnyRecord]) -> None:
        incoming = list(records)
        if not incoming:
            return
        deadline = self._deadline()
        with self._client() as client:
            now = self._merge_into(client, self.path, incoming, deadline)
            if not to_archive(now.contents(self.describe())):
                return
            try:
                self._archive(client, deadline, now if now.etag else None)
            except RemoteError as e:
                # The records are delivered all the same; moving old months out is tidying that a
                # later publish finishes (a half-done move only leaves copies, which a union ignores).
                logs.log(f"memory API: older months not moved out of {self.path} this time "
                         f"({getattr(e, 'reason', e.message)})")

    # -- merging ----------------------------------------------------------------------------------

    def _merge_into(self, client: httpx.Client, path: str, incoming: list[AnyRecord], deadline: float,
                    copies: Mapping[str, tuple[Any, list[AnyRecord]]] | None = None) -> _Document:
        """Union `incoming` into the file at `path`, retrying lost races; what the file holds now.
        `copies`: entries as another file holds them (key -> raw entry, its records), written as
        they are where this file has nothing of their session (see `_put`)."""
        for attempt in range(self.max_tries):
            doc = self._get(client, path, deadline)
            written = self._put(client, path, doc, incoming, deadline, copies or {})
            if written is not None:
                return written
            self._backoff(attempt, deadline)
        raise self._kept_changing(path)

    def _put(self, client: httpx.Client, path: str, doc: _Document, incoming: list[AnyRecord], deadline: float,
             copies: Mapping[str, tuple[Any, list[AnyRecord]]]) -> _Document | None:
        """Merge into `doc` and write it conditionally: the file as written (`doc` itself when it
        held everything already), None when someone wrote first (412/409)."""
        from costattr.ledger.view import session_entries

        where = self.describe(path)
        found = doc.contents(where)
        merged = union(found.records.values(), incoming)
        # Only what changes the file: a record already held (or a copy that loses to the held one
        # by content, the union's rule) needs no write.
        touched = {r.session_id for r in incoming if found.records.get(r.id) != merged[r.id]}
        if not touched:
            return doc
        data = dict(doc.raw)
        changed: set[str] = set()
        # An entry moving to a month file that has nothing of its session goes as it is: it is a
        # valid entry already, and recomputing (then re-reading) 20,000 of them is most of a move.
        held = {r.session_id for r in found.records.values()}
        copied: dict[str, list[AnyRecord]] = {}
        for key, (raw, recs) in copies.items():
            sessions = {r.session_id for r in recs}
            if key not in data and sessions <= touched and not sessions & held:
                data[key] = raw
                copied[key] = recs
                touched -= sessions
        for sid, entry in session_entries(r for r in merged.values() if r.session_id in touched).items():
            key = _entry_key(sid, found.unknown)
            entry["records"] += found.kept.get(key, [])
            data[key] = entry
            changed.add(key)
        # Never shrink the shared file, never report delivered what is not in it: everything it held
        # and everything we send must read back from what we are about to PUT.
        written = self._check_keeps(doc, data, changed, {r.id for r in incoming}, where, copied=copied)
        written.etag = self._write(client, path, doc, data, deadline)
        return written if written.etag is not None else None

    def _archive(self, client: httpx.Client, deadline: float, head: _Document | None = None) -> int:
        """Move the entries of older months out of `agent-costs` (see the module docstring);
        returns how many entries moved. `head`: the file as we just wrote it (with its ETag)."""
        where = self.describe()
        for attempt in range(self.max_tries):
            if head is None:
                head = self._get(client, self.path, deadline)
            found = head.contents(where)
            moving = to_archive(found)
            if not moving:
                return 0
            archived: set[str] = set()
            for month, entries in sorted(moving.items()):
                batch = [r for recs in entries.values() for r in recs]
                copies = {key: (head.raw[key], recs) for key, recs in entries.items()}
                self._merge_into(client, month_path(self.path, month), batch, deadline, copies)
                archived.update(r.id for r in batch)
            self._list_months(client, sorted(moving), deadline)
            moved = {key for entries in moving.values() for key in entries}
            data = {key: entry for key, entry in head.raw.items() if key not in moved}
            # What leaves this file is in its month file now (written above, read back by the union
            # check there): nothing the file held may be missing from the two together.
            self._check_keeps(head, data, set(), set(), where, elsewhere=archived)
            if self._write(client, self.path, head, data, deadline) is not None:
                logs.log(f"memory API: moved {len(moved)} entries of {', '.join(sorted(moving))} "
                         f"from {self.path} to its month files")
                return len(moved)
            head = None  # someone wrote meanwhile: read it again
            self._backoff(attempt, deadline)
        raise self._kept_changing(self.path)

    def _list_months(self, client: httpx.Client, months: list[str], deadline: float) -> None:
        for attempt in range(self.max_tries):
            doc = self._get(client, self._months_path, deadline)
            missing = [m for m in months if m not in doc.raw]
            if not missing:
                return
            data = dict(doc.raw) | {m: {"path": month_path(self.path, m)} for m in missing}
            if self._write(client, self._months_path, doc, data, deadline) is not None:
                return
            self._backoff(attempt, deadline)
        raise self._kept_changing(self._months_path)

    def _months(self, client: httpx.Client, deadline: float) -> list[str]:
        """The month files listed; the paths are ours to build (never one the server names)."""
        listed = self._get(client, self._months_path, deadline).raw
        return [month_path(self.path, m) for m in sorted(listed) if _MONTH.fullmatch(m)]

    def _check_keeps(self, doc: _Document, data: dict[str, Any], changed: set[str], sent: set[str], where: str, *,
                     elsewhere: set[str] | None = None,
                     copied: Mapping[str, list[AnyRecord]] | None = None) -> _Document:
        """`data` (`doc` with the entries under `changed` new or replaced, and `copied` ones taken
        as they are from a file that read as those records) read back as a file: it must hold
        every record `doc` held and every one `sent` (`elsewhere`: records it may drop because
        they are safe in another file now)."""
        written = doc.edited(data, changed, where, copied or {})
        if not (set(doc.contents(where).records) | sent) <= set(written.contents(where).records) | (elsewhere or set()):
            raise RemoteUnavailable(f"refusing to write a file that would lose records ({where})",
                                    reason="merge would drop records")
        return written

    def _kept_changing(self, path: str) -> RemoteUnavailable:
        return RemoteUnavailable(
            f"the memory API file {self.describe(path)} kept changing under us "
            f"({self.max_tries} conflicting writes in a row)",
            hint="other clients are writing right now; `costattr sync` will try again",
            reason=f"{self.max_tries} conflicting writes in a row",
        )

    def _backoff(self, attempt: int, deadline: float) -> None:
        if attempt + 1 >= self.max_tries:
            return
        # Exponential with full jitter so two writers that collided do not collide again in lockstep.
        delay = BACKOFF_BASE_S * (2**attempt) * (0.5 + random.random())
        left = deadline - time.monotonic()
        time.sleep(max(0.0, min(delay, left - 0.05)))

    # -- HTTP -------------------------------------------------------------------------------------

    def _deadline(self) -> float:
        own = time.monotonic() + self.timeout
        return own if self.deadline is None else min(own, self.deadline)

    def _client(self) -> httpx.Client:
        import httpx

        return httpx.Client(
            headers={"X-API-Key": self._key.reveal(), "User-Agent": f"costattr/{__version__}"},
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            follow_redirects=False,  # a redirect would carry the key to another host
        )

    def _timeout(self, deadline: float) -> Any:
        import httpx

        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out()
        return httpx.Timeout(left, connect=min(self.connect_timeout, left))

    def _request(self, client: httpx.Client, method: str, path: str, deadline: float,
                 **kw: Any) -> tuple[int, Mapping[str, str], bytes]:
        """One request that ends by `deadline`, whatever the server does.

        httpx's timeouts restart with every byte received, so a server dripping its headers one
        byte at a time holds a plain request for ever. The exchange runs in a daemon thread; at
        the deadline it is abandoned: the client is closed (its socket with it, so the thread
        ends at its next read) and the call fails now.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out()
        outcome: list[Any] = []

        def exchange() -> None:
            try:
                outcome.append(self._exchange(client, method, path, deadline, **kw))
            except BaseException as e:  # noqa: BLE001  # handed to the caller's thread below
                outcome.append(e)

        worker = threading.Thread(target=exchange, name="costattr-memory-api", daemon=True)
        worker.start()
        worker.join(left)
        if not outcome:
            with suppress(Exception):
                client.close()
            raise self._timed_out()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]

    def _exchange(self, client: httpx.Client, method: str, path: str, deadline: float,
                  **kw: Any) -> tuple[int, Mapping[str, str], bytes]:
        """The request itself: body read with the size cap; transport errors mapped."""
        import httpx

        try:
            with client.stream(method, self.endpoint, params={"path": path}, timeout=self._timeout(deadline),
                               **kw) as resp:
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_big()
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise self._too_big()
                    if time.monotonic() > deadline:  # abandoned already: stop reading
                        raise httpx.ReadTimeout("deadline")
                return resp.status_code, resp.headers, bytes(body)
        except httpx.TimeoutException:
            raise self._timed_out() from None
        except (httpx.HTTPError, RuntimeError) as e:  # RuntimeError: the client closed by the deadline
            # `from None`: the chained httpx exception would put request details in tracebacks/logs.
            reason = re.sub(r"^\[Errno -?\d+\]\s*", "", self._redact(str(e))).strip() or type(e).__name__
            raise RemoteUnavailable(
                f"cannot reach the memory API at {self.describe(path)}: {reason}",
                hint=f"check {ENV_URL} and the network; records wait in the local ledger until `costattr sync`",
                reason=reason[:1].lower() + reason[1:],
            ) from None

    def _timed_out(self) -> RemoteUnavailable:
        return RemoteUnavailable(
            f"the memory API did not answer within {self.timeout:g} s ({self.describe()})",
            hint=f"check {ENV_URL} and the network, or raise {TIMEOUT_SETTING}; "
                 "records wait in the local ledger until `costattr sync`",
            reason=f"no answer within {self.timeout:g} s",
        )

    def _too_big(self) -> RemoteUnavailable:
        size = f"{self.max_bytes / (1024 * 1024):g} MiB"
        return RemoteUnavailable(
            f"the memory API answer is larger than {size} ({self.describe()})",
            hint=f"check {ENV_URL} points at the memory API, or raise {MAX_BYTES_SETTING}",
            reason=f"answer larger than {size}",
        )

    def _check_status(self, status: int, body: bytes, method: str, path: str) -> None:
        where = self.describe(path)
        if status == 401:
            raise RemoteAuthError(
                f"the memory API rejected the API key (HTTP 401 on {method} {where})",
                hint=f"set {ENV_KEY} to a valid key for user {self.user!r}",
                setting=ENV_KEY,
                reason="HTTP 401, API key rejected",
            )
        if status == 403:
            raise RemoteAuthError(
                f"the memory API denied access to user {self.user!r} (HTTP 403 on {method} {where})",
                hint=f"check {ENV_USER} and that {ENV_KEY} belongs to that user",
                setting=f"{ENV_USER} / {ENV_KEY}",
                reason=f"HTTP 403, no access for user {self.user!r}",
            )
        if status >= 300:
            snippet = self._redact(body[:120].decode("utf-8", "replace")).strip().replace("\n", " ")
            detail = f": {snippet}" if snippet else ""
            hint = None
            if status == 404:
                hint = f"check {ENV_URL} and {ENV_USER}"
            elif status in (413, 428):
                hint = "the server does not accept this kind of write; check the memory API version"
            raise RemoteUnavailable(
                f"the memory API answered HTTP {status} to {method} {where}{detail}",
                hint=hint, reason=f"HTTP {status}",
            )

    def _get(self, client: httpx.Client, path: str, deadline: float) -> _Document:
        status, headers, body = self._request(client, "GET", path, deadline)
        if status == 404:
            return _Document({}, None, exists=False)
        self._check_status(status, body, "GET", path)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        data = doc.get("data") if isinstance(doc, dict) else None
        # `{"data": null}` is not an empty file: taking it for one would PUT our records over
        # everyone else's. Only a 404 means there is no file yet.
        if not isinstance(data, dict):
            raise RemoteUnavailable(
                f"the memory API answered something that is not a ledger file ({self.describe(path)})",
                hint=f"nothing was written; check {ENV_URL} and the file's content",
                reason="malformed answer",
            )
        return _Document(data, headers.get("etag"), exists=True)

    def _write(self, client: httpx.Client, path: str, doc: _Document, data: dict[str, Any],
               deadline: float) -> str | None:
        """PUT `data` at `path` only if nobody wrote since `doc` was read: the new ETag ("" when
        the server sends none), None when someone wrote first."""
        headers = {"Content-Type": "application/json"}
        if not doc.exists:
            headers["If-None-Match"] = "*"
        elif doc.etag:
            headers["If-Match"] = doc.etag
        else:
            # Without an ETag there is no conditional write, and an unconditional one replaces
            # whatever another client wrote since our GET: their records would be lost.
            raise RemoteUnavailable(
                f"the memory API sent {self.describe(path)} without an ETag, so it cannot be updated safely",
                hint="nothing was written; the memory API must answer GET with an ETag (CloudClawer does)",
                reason="no ETag on the file",
            )
        status, answered, body = self._request(
            client, "PUT", path, deadline, content=orjson.dumps({"data": data}), headers=headers
        )
        if status in (409, 412):
            return None
        self._check_status(status, body, "PUT", path)
        return answered.get("etag") or ""
