"""From ledger v1 (costattr 0.1: one cumulative entry per session) to v2 records, once.

A v1 entry's segments become records with ids derived from the segment itself, so converting
the same entry twice (the local file here, the memory API's copy of it in `memory_api`) gives the
same records and a merge never doubles them. What v1 cannot say is kept as well as it can be:
a segment's spend lands in the time bucket of its last request (v1 kept no finer split), and its
PRs become link records.

The local file is converted in one transaction, then renamed `ledger.json.migrated-v1` (kept,
never deleted). Each session's last view in it becomes a watermark: the first v2 hook that sees
the session marks the requests up to that time as covered, so nothing v1 recorded is counted again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from costattr.ledger.records import (
    BEFORE_BASE,
    AnyRecord,
    LinkRecord,
    Part,
    RecordError,
    SetAside,
    SpendRecord,
    _money,
    bucket_of,
    cap,
    digest,
    link_id,
    parse_utc,
)
from costattr.models import TOKEN_FIELDS, Tokens

V1_SCHEMA = 1
MIGRATED_SUFFIX = ".migrated-v1"


def v1_records(raw: Any) -> list[AnyRecord]:
    """The records of one v1 entry; RecordError when the entry is not a readable v1 entry."""
    if not isinstance(raw, dict) or not isinstance(raw.get("session_id"), str) or not raw["session_id"]:
        raise RecordError("a v1 entry without a session_id")
    sid: str = raw["session_id"]
    repo = _repo(raw)
    segments = raw.get("segments") or []
    if not isinstance(segments, list):
        raise RecordError("v1 segments is not a list")
    out: list[AnyRecord] = []
    entry_prs = _prs(raw.get("prs"))
    for seg in segments:
        if not isinstance(seg, dict):
            raise RecordError("a v1 segment is not an object")
        rec = _segment(raw, sid, repo, seg)
        if rec is None:
            continue
        out.append(rec)
        # v1's PR rule (`segment_prs`): the segment's own, else the entry's when on the entry's branch.
        prs = _prs(seg.get("prs")) or (entry_prs if rec.branch is not None and rec.branch == raw.get("branch") else [])
        if rec.branch is not None:
            out += [LinkRecord(link_id(repo, sid, rec.branch, n), sid, repo, rec.branch, n, "v1") for n in prs]
    return out


def _repo(raw: dict[str, Any]) -> str:
    repo = raw.get("repo")
    if isinstance(repo, str) and repo:
        return cap(repo, "repo") or repo
    cwd = raw.get("cwd")
    return cap(f"path:{cwd}" if isinstance(cwd, str) and cwd else "path:(unknown)", "repo") or "path:(unknown)"


def _prs(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return sorted({v for v in value if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**9})


def _text(d: dict[str, Any], key: str, what: str) -> str | None:
    value = d.get(key)
    return cap(value, what) if isinstance(value, str) and value else None


def _segment(entry: dict[str, Any], sid: str, repo: str, seg: dict[str, Any]) -> SpendRecord | None:
    requests = seg.get("requests") or 0
    if not isinstance(requests, int) or requests <= 0:
        return None  # an empty segment holds no spend
    first = seg.get("first_ts") or entry.get("first_ts")
    last = seg.get("last_ts") or entry.get("last_ts") or first
    if not isinstance(first, str) or not isinstance(last, str):
        raise RecordError("a v1 segment without timestamps")
    try:
        parse_utc(first), parse_utc(last)
    except ValueError:
        raise RecordError("a v1 segment's timestamps do not parse") from None
    branch, commit, note = _text(seg, "branch", "branch"), seg.get("commit") or None, _text(seg, "note", "note")
    if note == BEFORE_BASE or (branch is None and commit is None):
        state, branch, commit = "unattributed", None, None
    elif commit is not None:
        state = "closed"
    else:
        state = "open"
    parts = tuple(_parts(seg, bucket_of(last)))
    rid = digest("v1", repo, sid, state, branch, commit, note, first, last, seg.get("until_ts"))
    related = seg.get("related_issues") or []
    issue = _text(seg, "issue", "issue")
    rec = SpendRecord(
        id=rid, session_id=sid, tool=_text(entry, "tool", "tool") or "claude", repo=repo, state=state,  # type: ignore[arg-type]
        branch=branch, commit=commit if isinstance(commit, str) else None, issue=issue,
        related=tuple(k for k in related if isinstance(k, str) and k != issue)[:50],
        message=_text(seg, "commit_message", "message"), note=note if state == "unattributed" else None,
        first_ts=first, last_ts=last, parts=parts, host=_text(entry, "host", "host"),
        author=_text(entry, "author", "author"), cwd=_text(entry, "cwd", "cwd"), recorded_at=None,
    )
    from costattr.ledger.records import from_json

    return from_json(rec.to_json())  # type: ignore[return-value]  # validated like any record read back


def _parts(seg: dict[str, Any], bucket: str) -> list[Part]:
    total = _money(seg.get("cost_usd", 0) or 0, "v1 cost")
    auth_left = _money(seg.get("authoritative_usd", 0) or 0, "v1 authoritative cost")
    models = seg.get("models") if isinstance(seg.get("models"), dict) else {}
    rows: list[list[Any]] = []
    for name, mu in sorted((models or {}).items()):
        if not isinstance(mu, dict):
            continue
        rows.append([cap(str(name), "model"), mu.get("requests", 0), mu.get("unpriced_requests", 0),
                     _tokens(mu.get("tokens")), _money(mu.get("cost_usd", 0) or 0, "v1 model cost")])
    if not rows:
        rows = [["(unknown)", seg.get("requests", 0), seg.get("unpriced_requests", 0), _tokens(seg.get("tokens")),
                 total]]
    # Each model's cost was rounded on its own when v1 wrote it: the costliest takes the remainder,
    # so the parts add up to the segment's cost exactly.
    biggest = max(range(len(rows)), key=lambda i: (rows[i][4], rows[i][0]))
    rows[biggest][4] += total - sum((r[4] for r in rows), Decimal(0))
    out: list[Part] = []
    for model, requests, unpriced, tokens, cost in rows:
        cost = max(cost, Decimal(0))
        auth = min(auth_left, cost)
        auth_left -= auth
        out.append(Part(bucket, model, int(requests or 0), int(unpriced or 0), tokens, cost, auth))
    return out


def _tokens(raw: Any) -> Tokens:
    if not isinstance(raw, dict):
        return Tokens()
    values = []
    for name in TOKEN_FIELDS:
        v = raw.get(name, 0) or 0
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise RecordError(f"a v1 token count ({name}) is not a whole number")
        values.append(v)
    return Tokens(*values)


def v1_entries(doc: Any) -> dict[str, Any]:
    """The raw entries of a v1 document ({"path", "schema_version": 1, "data": {...}})."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise RecordError("not a ledger document (no 'data' object)")
    return doc["data"]


def convert(entries: dict[str, Any], set_aside: SetAside, where: str) -> tuple[list[AnyRecord], list[tuple]]:
    """Records and watermarks (session, repo, cwd, last_ts) from v1 entries; bad entries set aside alone."""
    records: list[AnyRecord] = []
    marks: list[tuple[str, str | None, str | None, str]] = []
    for key, raw in entries.items():
        try:
            recs = v1_records(raw)
        except RecordError as e:
            set_aside.add(str(e), f"{where} entry {str(key)[:60]}")
            continue
        records += recs
        last = raw.get("last_ts")
        if isinstance(last, str):
            repo = raw.get("repo") if isinstance(raw.get("repo"), str) and raw.get("repo") else None
            marks.append((raw["session_id"], repo, raw.get("cwd") if isinstance(raw.get("cwd"), str) else None, last))
    return records, marks


def migrate_v1_if_needed(store: Any) -> str | None:
    """Convert the 0.1 `ledger.json` next to the store, once; a line to show, or None."""
    v1 = Path(store.path).with_suffix(".json")
    if not v1.is_file():
        return None
    try:
        raw = v1.read_bytes()
        doc = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as e:
        return (f"the 0.1 ledger {v1} could not be read ({' '.join(str(e).split())[:120]}); it was left as it is "
                "and nothing was taken from it")
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if isinstance(version, int) and version > V1_SCHEMA:
        return f"{v1} has schema version {version}, newer than 0.1's; it was left as it is"
    set_aside = SetAside()
    try:
        records, marks = convert(v1_entries(doc), set_aside, str(v1))
    except RecordError as e:
        return f"the 0.1 ledger {v1} is not a ledger ({e}); it was left as it is"
    with store.write() as tx:
        first_time = tx.meta("migrated_v1") is None
        if first_time:
            tx.insert(records)
            tx.set_legacy(marks)
            tx.set_meta("migrated_v1", str(v1))
    kept = v1.with_name(v1.name + MIGRATED_SUFFIX)
    if kept.exists():
        kept = v1.with_name(f"{v1.name}{MIGRATED_SUFFIX}-{os.getpid()}")
    try:
        os.replace(v1, kept)
    except OSError:
        pass
    if not first_time:
        return (f"a 0.1 ledger {v1} appeared after the conversion to {store.path}; it was not merged again "
                f"(its figures would count twice) and is kept as {kept}")
    line = f"converted the 0.1 ledger {v1} to {store.path} ({len(marks)} sessions; the old file is kept as {kept})"
    if set_aside.count:
        line += f"; {set_aside.summary()}"
    return line


def records_of_v1_documents(entries: Iterable[tuple[str, Any]], set_aside: SetAside, where: str) -> list[AnyRecord]:
    """Records of v1 entries met in a shared ledger (memory API), same ids as the local migration."""
    records, _marks = convert(dict(entries), set_aside, where)
    return records
