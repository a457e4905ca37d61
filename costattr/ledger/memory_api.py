"""The memory-API backend: the whole ledger is one CloudClawer-style memory file.

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
read through the v1 conversion, with the same ids the local migration gives them.

Everything here is bounded: the post-commit hook publishes on every commit, so one call
(every retry included) finishes within `timeout` seconds whatever the server does. Failures
become `RemoteUnavailable` (try again later: the records wait in the local ledger) or `RemoteAuthError`
(a setting is wrong: retrying will not help).

The API key is wrapped in `Secret` as soon as it is read and only unwrapped into the request
header, so no message, repr, log line or file can contain it.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson

from costattr import __version__
from costattr.errors import ConfigError, RemoteError
from costattr.ledger.base import LEDGER_PATH_NAME
from costattr.ledger.records import AnyRecord, RecordError, SetAside, from_json, union
from costattr.ledger.store import ReadResult

if TYPE_CHECKING:  # httpx costs ~100 ms to import: only the network path pays for it
    import httpx

ENV_URL = "COSTATTR_API_URL"
ENV_USER = "COSTATTR_API_USER"
ENV_KEY = "COSTATTR_API_KEY"
KEYRING_SERVICE = "costattr"  # keyring.get_password("costattr", <api user>)

DEFAULT_TIMEOUT_S = 2.0  # budget for one read() or one add(), retries included
DEFAULT_CONNECT_TIMEOUT_S = 0.5
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_TRIES = 5
BACKOFF_BASE_S = 0.05  # 50, 100, 200, 400 ms (+ jitter) between conflicting writes


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
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"****@{host}", parts.path, parts.query, parts.fragment))


# ----------------------------------------------------------------------------------------------
# The backend


SIDE_KEY_SUFFIX = "#costattr"  # where a session's entry goes when its own key holds an entry we cannot read


@dataclass(slots=True)
class _Contents:
    """What one GET's file holds, as costattr reads it."""

    records: dict[str, AnyRecord] = field(default_factory=dict)  # every valid record, by id
    set_aside: SetAside = field(default_factory=SetAside)
    unknown: set[str] = field(default_factory=set)  # keys of entries we cannot read: never rewritten
    kept: dict[str, list[Any]] = field(default_factory=dict)  # key -> its raw records that fail validation


class _Document:
    """One GET's answer: the raw entries (kept as-is so unknown ones survive our PUT) and ETag."""

    __slots__ = ("etag", "exists", "raw")

    def __init__(self, raw: dict[str, Any], etag: str | None, exists: bool) -> None:
        self.raw = raw
        self.etag = etag
        self.exists = exists

    def contents(self, where: str) -> _Contents:
        from costattr.ledger.migrate import v1_records

        out = _Contents()
        found: list[AnyRecord] = []
        for key, entry in self.raw.items():
            label = f"{where} entry {key[:60]}"
            if isinstance(entry, dict) and isinstance(entry.get("records"), list):
                for raw in entry["records"]:
                    try:
                        found.append(from_json(raw))
                    except RecordError as e:
                        # Set aside, and written back as it is when this entry is rewritten: a
                        # record a newer costattr (or a hand edit) wrote is not ours to drop.
                        out.set_aside.add(str(e), label)
                        out.kept.setdefault(key, []).append(raw)
            elif isinstance(entry, dict) and entry.get("schema_version", 1) == 1 and "segments" in entry:
                try:
                    found += v1_records(entry)  # costattr 0.1: the ids the local migration gives
                except RecordError as e:
                    out.set_aside.add(str(e), label)
                    out.unknown.add(key)
            else:
                out.unknown.add(key)
                out.set_aside.add("an entry costattr cannot read (kept as it is)", label)
        out.records = union(found)
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
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_bytes = max_bytes
        self.max_tries = max(1, max_tries)

    # -- presentation: never the key ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"{self.url}/u/{quote(self.user, safe='')}/memory/file"

    def describe(self) -> str:
        return f"{mask_url(self.endpoint)}?path={self.path}"

    def __repr__(self) -> str:
        return f"MemoryApiLedger(url={mask_url(self.url)!r}, user={self.user!r}, path={self.path!r}, key=****)"

    def _redact(self, text: str) -> str:
        key = self._key.reveal()
        return text.replace(key, "****") if key else text

    # -- protocol ---------------------------------------------------------------------------------

    def read(self) -> ReadResult:
        deadline = time.monotonic() + self.timeout
        with self._client() as client:
            doc = self._get(client, deadline)
        found = doc.contents(self.describe())
        return ReadResult(found.records, found.set_aside)

    def add(self, records: Sequence[AnyRecord]) -> None:
        incoming = list(records)
        if not incoming:
            return
        deadline = time.monotonic() + self.timeout
        with self._client() as client:
            for attempt in range(self.max_tries):
                doc = self._get(client, deadline)
                if self._put(client, doc, incoming, deadline):
                    return
                if attempt + 1 < self.max_tries:
                    self._backoff(attempt, deadline)
        raise RemoteUnavailable(
            f"the memory API file {self.describe()} kept changing under us "
            f"({self.max_tries} conflicting writes in a row)",
            hint="other clients are writing right now; `costattr sync` will try again",
            reason=f"{self.max_tries} conflicting writes in a row",
        )

    # -- HTTP -------------------------------------------------------------------------------------

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

    def _request(self, client: httpx.Client, method: str, deadline: float,
                 **kw: Any) -> tuple[int, Mapping[str, str], bytes]:
        """One request, body read with a size cap and the overall deadline; transport errors mapped."""
        import httpx

        try:
            with client.stream(
                method, self.endpoint, params={"path": self.path}, timeout=self._timeout(deadline), **kw
            ) as resp:
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_big()
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise self._too_big()
                    if time.monotonic() > deadline:  # a server dribbling bytes: per-read timeouts never fire
                        raise httpx.ReadTimeout("deadline")
                return resp.status_code, resp.headers, bytes(body)
        except httpx.TimeoutException:
            raise self._timed_out() from None
        except httpx.HTTPError as e:
            # `from None`: the chained httpx exception would put request details in tracebacks/logs.
            reason = re.sub(r"^\[Errno -?\d+\]\s*", "", self._redact(str(e))).strip() or type(e).__name__
            raise RemoteUnavailable(
                f"cannot reach the memory API at {self.describe()}: {reason}",
                hint=f"check {ENV_URL} and the network; records wait in the local ledger until `costattr sync`",
                reason=reason[:1].lower() + reason[1:],
            ) from None

    def _timed_out(self) -> RemoteUnavailable:
        return RemoteUnavailable(
            f"the memory API did not answer within {self.timeout:g} s ({self.describe()})",
            hint=f"check {ENV_URL} and the network; records wait in the local ledger until `costattr sync`",
            reason=f"no answer within {self.timeout:g} s",
        )

    def _too_big(self) -> RemoteUnavailable:
        size = f"{self.max_bytes // (1024 * 1024)} MiB"
        return RemoteUnavailable(
            f"the memory API answer is larger than {size} ({self.describe()})",
            hint=f"check {ENV_URL} points at the memory API",
            reason=f"answer larger than {size}",
        )

    def _check_status(self, status: int, body: bytes, method: str) -> None:
        if status == 401:
            raise RemoteAuthError(
                f"the memory API rejected the API key (HTTP 401 on {method} {self.describe()})",
                hint=f"set {ENV_KEY} to a valid key for user {self.user!r}",
                setting=ENV_KEY,
                reason="HTTP 401, API key rejected",
            )
        if status == 403:
            raise RemoteAuthError(
                f"the memory API denied access to user {self.user!r} (HTTP 403 on {method} {self.describe()})",
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
                f"the memory API answered HTTP {status} to {method} {self.describe()}{detail}",
                hint=hint, reason=f"HTTP {status}",
            )

    def _get(self, client: httpx.Client, deadline: float) -> _Document:
        status, headers, body = self._request(client, "GET", deadline)
        if status == 404:
            return _Document({}, None, exists=False)
        self._check_status(status, body, "GET")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        data = doc.get("data") if isinstance(doc, dict) else None
        # `{"data": null}` is not an empty file: taking it for one would PUT our records over
        # everyone else's. Only a 404 means there is no file yet.
        if not isinstance(data, dict):
            raise RemoteUnavailable(
                f"the memory API answered something that is not a ledger file ({self.describe()})",
                hint=f"nothing was written; check {ENV_URL} and the file's content",
                reason="malformed answer",
            )
        return _Document(data, headers.get("etag"), exists=True)

    def _put(self, client: httpx.Client, doc: _Document, incoming: list[AnyRecord], deadline: float) -> bool:
        """Merge into `doc` and write it conditionally; False when someone wrote first (412/409)."""
        from costattr.ledger.view import session_entries

        where = self.describe()
        found = doc.contents(where)
        merged = union(found.records.values(), incoming)
        # Only what changes the file: a record already held (or a copy that loses to the held one
        # by content, the union's rule) needs no write.
        touched = {r.session_id for r in incoming if found.records.get(r.id) != merged[r.id]}
        if not touched:
            return True
        data = dict(doc.raw)
        for sid, entry in session_entries(r for r in merged.values() if r.session_id in touched).items():
            key = _entry_key(sid, found.unknown)
            entry["records"] += found.kept.get(key, [])
            data[key] = entry
        # Never shrink the shared file, never report delivered what is not in it: everything it held
        # and everything we send must read back from what we are about to PUT.
        written = _Document(data, None, True).contents(where).records
        if not (set(found.records) | {r.id for r in incoming}) <= set(written):
            raise RemoteUnavailable(f"refusing to write a file that would lose records ({where})",
                                    reason="merge would drop records")
        headers = {"Content-Type": "application/json"}
        if doc.etag:
            headers["If-Match"] = doc.etag
        elif not doc.exists:
            headers["If-None-Match"] = "*"
        # else: a server without ETags offers no concurrency control: an unconditional PUT is all we can do.
        status, _headers, body = self._request(
            client, "PUT", deadline, content=orjson.dumps({"data": data}), headers=headers
        )
        if status in (409, 412):
            return False
        self._check_status(status, body, "PUT")
        return True

    def _backoff(self, attempt: int, deadline: float) -> None:
        # Exponential with full jitter so two writers that collided do not collide again in lockstep.
        delay = BACKOFF_BASE_S * (2**attempt) * (0.5 + random.random())
        left = deadline - time.monotonic()
        time.sleep(max(0.0, min(delay, left - 0.05)))
