"""Ledger v2: the records every backend stores and merges by union of ids.

Three kinds, all immutable once written, all belonging to one session of one repository:

* `SpendRecord`: the spend of some of a session's requests attributed to one (repository, branch,
  commit or open, issue keys), split into parts per (15-minute UTC time bucket, model). States:
  - `closed`: its commit exists; it never changes again;
  - `open`: spend on a branch with no commit yet; a later commit on that branch writes a closed
    record that names it in `closes`, and from then on it is hidden (never deleted by a merge);
  - `unattributed`: spend tied to no branch (or set aside as "before --base"); final.
* `LinkRecord`: this session's spend on (repository, branch) belongs to pull request N.
* `RewriteRecord`: commit `old` became `new` (amend, rebase): its spend is shown on `new`, with the
  issue keys of the new message.

Ids are deterministic from what a record covers (kind, repository, session, where it is attributed
and a digest of the request keys or absorbed records), so recording the same spend twice gives the
same record, and a merge is a plain union. Records are validated when read from anywhere: one that
fails is set aside and counted on its own; the rest stay in use.

Why 15-minute buckets: every time zone in use is a whole multiple of 15 minutes from UTC
(Asia/Kolkata +05:30, Asia/Kathmandu +05:45, Pacific/Chatham +12:45), so a bucket never straddles
a local midnight and per-day, per-week and per-month figures are exact in any of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from costattr.models import TOKEN_FIELDS, Tokens

RECORD_VERSION = 2
BUCKET_MINUTES = 15

SpendState = Literal["closed", "open", "unattributed"]
STATES: tuple[str, ...] = ("closed", "open", "unattributed")
BEFORE_BASE = "before --base"
DETACHED = "HEAD"  # what Claude Code records as gitBranch on a detached HEAD

# Strings come from transcripts and git (a 100k-character gitBranch is on record): capped when a
# record is made, and a record read back with anything longer is set aside.
CAPS = {"branch": 255, "cwd": 1024, "model": 128, "message": 200, "author": 200, "host": 200, "repo": 1024,
        "session_id": 200, "tool": 32, "issue": 64, "note": 64}
MAX_TOKENS_PER_PART = 10**13  # far beyond any real bucket; 1e300 from a hostile server is not spend
MAX_COST_PER_PART = Decimal(10**6)
MAX_LIST = 10_000  # parts, related keys, absorbed ids per record


class RecordError(ValueError):
    """A record that fails validation: set aside, counted, never fatal to the rest."""


# ----------------------------------------------------------------------------------------------
# Helpers


def cap(value: str | None, what: str) -> str | None:
    """`value` cut to the cap for `what` (an ellipsis marks the cut)."""
    if value is None:
        return None
    limit = CAPS[what]
    return value if len(value) <= limit else value[: limit - 1] + "…"


def bucket_of(ts: str) -> str:
    """The 15-minute UTC slot a timestamp falls in, as `YYYY-MM-DDTHH:MMZ` (its start)."""
    # Transcript timestamps are normalised to `YYYY-MM-DDTHH:MM:SS[.fff]Z` by the sources.
    if len(ts) >= 17 and ts[10] == "T" and ts[13] == ":" and ts.endswith("Z"):
        minute = int(ts[14:16])
        return f"{ts[:14]}{minute - minute % BUCKET_MINUTES:02d}Z"
    moment = parse_utc(ts)
    return f"{moment:%Y-%m-%dT%H}:{moment.minute - moment.minute % BUCKET_MINUTES:02d}Z"


def parse_utc(ts: str) -> datetime:
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def canonical_ts(ts: str) -> str:
    """A timestamp as `YYYY-MM-DDTHH:MM:SS.mmmZ`: one spelling, so text order is time order."""
    if len(ts) == 24 and ts[19] == "." and ts[23] == "Z":
        return ts
    moment = parse_utc(ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def digest(*parts: object) -> str:
    """A stable id from values: 24 hex characters (96 bits) of SHA-256."""
    h = hashlib.sha256()
    for p in parts:
        h.update(b"\x00" if p is None else str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:24]


def keys_digest(keys: Iterable[str]) -> str:
    return digest(*sorted(keys))


def dec(value: Decimal) -> str:
    """Exact Decimal as JSON text (no exponent, no float on the way)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


# ----------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Part:
    """The spend of one (time bucket, model) inside a record."""

    bucket: str
    model: str
    requests: int
    unpriced: int
    tokens: Tokens
    cost: Decimal
    authoritative: Decimal = Decimal(0)

    def to_json(self) -> list[Any]:
        t = self.tokens
        return [self.bucket, self.model, self.requests, self.unpriced, t.input, t.output, t.cache_write_5m,
                t.cache_write_1h, t.cache_read, t.reasoning, dec(self.cost), dec(self.authoritative)]


@dataclass(frozen=True, slots=True)
class SpendRecord:
    id: str
    session_id: str
    tool: str
    repo: str  # repository identity: "owner/name" from origin, else "path:<main work tree>"
    state: SpendState
    branch: str | None
    commit: str | None
    issue: str | None
    related: tuple[str, ...]
    message: str | None  # the commit message's first line (closed records)
    note: str | None  # BEFORE_BASE, or None
    first_ts: str
    last_ts: str
    parts: tuple[Part, ...]
    closes: tuple[str, ...] = ()  # open records this closed record absorbed
    host: str | None = None
    author: str | None = None
    cwd: str | None = None
    recorded_at: str | None = None  # informational: no merge ever looks at it
    backfilled: bool = False
    prices: str | None = None  # the date of the price table that estimated it
    kind: str = field(default="spend", init=False)

    # -- figures --------------------------------------------------------------------------------

    @property
    def cost(self) -> Decimal:
        return sum((p.cost for p in self.parts), Decimal(0))

    @property
    def authoritative(self) -> Decimal:
        return sum((p.authoritative for p in self.parts), Decimal(0))

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.parts)

    @property
    def unpriced(self) -> int:
        return sum(p.unpriced for p in self.parts)

    @property
    def tokens(self) -> Tokens:
        total = Tokens()
        for p in self.parts:
            total.add(p.tokens)
        return total

    @property
    def display_branch(self) -> str | None:
        """The branch reports show: detached-HEAD spend has none."""
        return None if self.branch == DETACHED else self.branch

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": RECORD_VERSION, "kind": "spend", "id": self.id, "session_id": self.session_id, "tool": self.tool,
            "repo": self.repo, "state": self.state, "branch": self.branch, "commit": self.commit,
            "issue": self.issue, "related": list(self.related), "message": self.message, "note": self.note,
            "first_ts": self.first_ts, "last_ts": self.last_ts, "parts": [p.to_json() for p in self.parts],
            "host": self.host, "author": self.author, "cwd": self.cwd, "recorded_at": self.recorded_at,
        }
        if self.closes:
            out["closes"] = list(self.closes)
        if self.backfilled:
            out["backfilled"] = True
        if self.prices:
            out["prices"] = self.prices
        return out


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """Session `session_id`'s spend on `branch` in `repo` belongs to PR `pr`."""

    id: str
    session_id: str
    repo: str
    branch: str
    pr: int
    source: str = "upload"  # "upload" (--pr), "pr-link" (the transcript), "backfill"
    recorded_at: str | None = None
    kind: str = field(default="link", init=False)

    def to_json(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "kind": "link", "id": self.id, "session_id": self.session_id,
                "repo": self.repo, "branch": self.branch, "pr": self.pr, "source": self.source,
                "recorded_at": self.recorded_at}


@dataclass(frozen=True, slots=True)
class RewriteRecord:
    """Branch `branch` had commit `old` rewritten into `new` (amend, rebase): the session's spend
    on `old` made on that branch follows. Only that branch's: `old` may still be on another branch
    (an amend right after branching off), whose spend stays where it is."""

    id: str
    session_id: str
    repo: str
    branch: str | None  # None: a detached HEAD was rewritten
    old: str
    new: str
    message: str | None
    issue: str | None
    related: tuple[str, ...]
    recorded_at: str | None = None
    kind: str = field(default="rewrite", init=False)

    def to_json(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "kind": "rewrite", "id": self.id, "session_id": self.session_id,
                "repo": self.repo, "branch": self.branch, "old": self.old, "new": self.new, "message": self.message,
                "issue": self.issue, "related": list(self.related), "recorded_at": self.recorded_at}


AnyRecord = SpendRecord | LinkRecord | RewriteRecord


# ----------------------------------------------------------------------------------------------
# Ids


def spend_id(repo: str, session_id: str, state: str, branch: str | None, commit: str | None, note: str | None,
             covers: str) -> str:
    """`covers`: the digest of the request keys (and absorbed records) the record holds."""
    return digest("spend", repo, session_id, state, branch, commit, note, covers)


def link_id(repo: str, session_id: str, branch: str, pr: int) -> str:
    return digest("link", repo, session_id, branch, pr)


def rewrite_id(repo: str, session_id: str, branch: str | None, old: str, new: str) -> str:
    return digest("rewrite", repo, session_id, branch, old, new)


# ----------------------------------------------------------------------------------------------
# Validation (every record read back from a file, a server or a note goes through here)


def _str(d: Mapping[str, Any], key: str, what: str | None = None, *, optional: bool = True) -> str | None:
    value = d.get(key)
    if value is None:
        if optional:
            return None
        raise RecordError(f"{key} is missing")
    if not isinstance(value, str):
        raise RecordError(f"{key} is not a string")
    if what is not None and len(value) > CAPS[what]:
        raise RecordError(f"{key} is longer than {CAPS[what]} characters")
    return value


def _req(d: Mapping[str, Any], key: str, what: str | None = None) -> str:
    value = _str(d, key, what, optional=False)
    assert value is not None
    if not value:
        raise RecordError(f"{key} is empty")
    return value


def _count(value: Any, what: str, limit: int = MAX_TOKENS_PER_PART) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what} is not a whole number")
    if value < 0 or value > limit:
        raise RecordError(f"{what} is out of range ({value})")
    return value


def _money(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(f"{what} is not an amount")
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"{what} is not finite")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise RecordError(f"{what} is not an amount") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_COST_PER_PART:
        raise RecordError(f"{what} is out of range ({value})")
    return amount


def _ts(d: Mapping[str, Any], key: str) -> str:
    value = _req(d, key)
    try:
        return canonical_ts(value)
    except ValueError:
        raise RecordError(f"{key} is not a timestamp") from None


def _id(d: Mapping[str, Any]) -> str:
    value = _req(d, "id")
    if len(value) != 24 or any(c not in "0123456789abcdef" for c in value):
        raise RecordError("id is not 24 hex characters")
    return value


def _keys(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise RecordError(f"{what} is not a list")
    if not all(isinstance(v, str) and 0 < len(v) <= CAPS["issue"] for v in value):
        raise RecordError(f"{what} holds something that is not a short string")
    return tuple(value)


def _is_bucket(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 17:
        return False
    try:
        return bucket_of(value) == value and parse_utc(value) is not None
    except ValueError:
        return False


def _part(raw: Any) -> Part:
    if not isinstance(raw, list) or len(raw) != 12:
        raise RecordError("a part is not a 12-item list")
    bucket, model = raw[0], raw[1]
    if not _is_bucket(bucket):
        raise RecordError("a part's time bucket is not a 15-minute slot")
    if not isinstance(model, str) or len(model) > CAPS["model"]:
        raise RecordError("a part's model is not a short string")
    requests = _count(raw[2], "requests")
    unpriced = _count(raw[3], "unpriced requests")
    if unpriced > requests:
        raise RecordError("more unpriced requests than requests")
    tokens = Tokens(*(_count(v, f"{name} tokens") for v, name in zip(raw[4:10], TOKEN_FIELDS, strict=True)))
    cost, auth = _money(raw[10], "cost"), _money(raw[11], "authoritative cost")
    if auth > cost:
        raise RecordError("authoritative cost above the cost")
    return Part(bucket, model, requests, unpriced, tokens, cost, auth)


def from_json(d: Any) -> AnyRecord:
    """A record from its JSON object; RecordError (with the reason) when it is not a valid one."""
    if not isinstance(d, dict):
        raise RecordError("not an object")
    version = d.get("v")
    if version != RECORD_VERSION:
        raise RecordError(f"record version {version!r} is not {RECORD_VERSION}")
    kind = d.get("kind")
    if kind == "spend":
        return _spend(d)
    if kind == "link":
        pr = d.get("pr")
        if isinstance(pr, bool) or not isinstance(pr, int) or not 0 < pr < 10**9:
            raise RecordError("pr is not a pull request number")
        return LinkRecord(id=_id(d), session_id=_req(d, "session_id", "session_id"), repo=_req(d, "repo", "repo"),
                          branch=_req(d, "branch", "branch"), pr=pr, source=_str(d, "source", "note") or "upload",
                          recorded_at=_str(d, "recorded_at", "note"))
    if kind == "rewrite":
        return RewriteRecord(id=_id(d), session_id=_req(d, "session_id", "session_id"),
                             repo=_req(d, "repo", "repo"), branch=_str(d, "branch", "branch"), old=_sha(d, "old"),
                             new=_sha(d, "new"),
                             message=_str(d, "message", "message"), issue=_str(d, "issue", "issue"),
                             related=_keys(d.get("related"), "related"), recorded_at=_str(d, "recorded_at", "note"))
    raise RecordError(f"unknown record kind {kind!r}")


def _sha(d: Mapping[str, Any], key: str) -> str:
    value = _req(d, key)
    if not 7 <= len(value) <= 64 or any(c not in "0123456789abcdef" for c in value):
        raise RecordError(f"{key} is not a commit id")
    return value


def _spend(d: Mapping[str, Any]) -> SpendRecord:
    state = d.get("state")
    if state not in STATES:
        raise RecordError(f"state {state!r} is not one of {', '.join(STATES)}")
    raw_parts = d.get("parts")
    if not isinstance(raw_parts, list) or not raw_parts or len(raw_parts) > MAX_LIST:
        raise RecordError("parts is not a non-empty list")
    commit = d.get("commit")
    if state == "closed" and commit is None:
        raise RecordError("a closed record has no commit")
    if commit is not None:
        commit = _sha(d, "commit")
    first, last = _ts(d, "first_ts"), _ts(d, "last_ts")
    if first > last:
        raise RecordError("first_ts is after last_ts")
    closes = _keys(d.get("closes"), "closes") if d.get("closes") else ()
    backfilled = d.get("backfilled", False)
    if not isinstance(backfilled, bool):
        raise RecordError("backfilled is not true or false")
    return SpendRecord(
        id=_id(d), session_id=_req(d, "session_id", "session_id"), tool=_req(d, "tool", "tool"),
        repo=_req(d, "repo", "repo"), state=state, branch=_str(d, "branch", "branch"), commit=commit,
        issue=_str(d, "issue", "issue"), related=_keys(d.get("related"), "related"),
        message=_str(d, "message", "message"), note=_str(d, "note", "note"), first_ts=first, last_ts=last,
        parts=tuple(_part(p) for p in raw_parts), closes=closes, host=_str(d, "host", "host"),
        author=_str(d, "author", "author"), cwd=_str(d, "cwd", "cwd"), recorded_at=_str(d, "recorded_at", "note"),
        backfilled=backfilled, prices=_str(d, "prices", "note"),
    )


@dataclass
class SetAside:
    """Records that failed validation, counted by reason (and where they came from)."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str = "") -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}" if where else reason)

    def extend(self, other: SetAside) -> None:
        self.count += other.count
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n
        self.examples.extend(other.examples[: max(0, 20 - len(self.examples))])

    def summary(self) -> str:
        what = "record" if self.count == 1 else "records"
        reasons = ", ".join(f"{r} ({n})" for r, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"{self.count} {what} set aside as invalid: {reasons}"


def decode_many(raws: Iterable[Any], set_aside: SetAside, where: str = "") -> list[AnyRecord]:
    out: list[AnyRecord] = []
    for raw in raws:
        try:
            out.append(from_json(raw))
        except RecordError as e:
            set_aside.add(str(e), where)
    return out


def union(*groups: Iterable[AnyRecord]) -> dict[str, AnyRecord]:
    """Records by id, from any number of copies. Two different copies of one id (a hand edit, a
    damaged copy) are settled by their content alone, so every merge order picks the same one."""
    out: dict[str, AnyRecord] = {}
    for group in groups:
        for rec in group:
            old = out.get(rec.id)
            if old is None or (old != rec and _canonical(rec) < _canonical(old)):
                out[rec.id] = rec
    return out


def _canonical(rec: AnyRecord) -> bytes:
    import orjson

    return orjson.dumps(rec.to_json(), option=orjson.OPT_SORT_KEYS)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
