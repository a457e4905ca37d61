"""Plain data shared by every stage of the pipeline.

Hot-path records (one per API call) are slotted dataclasses; the ledger's records live in
`costattr.ledger.records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Literal

TOKEN_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "reasoning")

CostSource = Literal["estimated", "authoritative"]


@dataclass(slots=True)
class Tokens:
    """Token counts with one meaning across assistants.

    `input` never includes cached tokens; `output` includes reasoning; `reasoning` is informational.
    """

    input: int = 0
    output: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    reasoning: int = 0

    def add(self, other: Tokens) -> None:
        self.input += other.input
        self.output += other.output
        self.cache_write_5m += other.cache_write_5m
        self.cache_write_1h += other.cache_write_1h
        self.cache_read += other.cache_read
        self.reasoning += other.reasoning

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def prompt_total(self) -> int:
        """Everything the model read: the long-context threshold applies to this."""
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read

    @property
    def total(self) -> int:
        return self.prompt_total + self.output

    def cache_pct(self) -> float:
        return cache_pct(self.input, self.cache_write, self.cache_read)

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "cache_read": self.cache_read,
            "reasoning": self.reasoning,
        }

    @classmethod
    def from_dict(cls, d: dict[str, int] | None) -> Tokens:
        if not d:
            return cls()
        return cls(**{k: int(d.get(k, 0) or 0) for k in TOKEN_FIELDS})


def cache_pct(input_tokens: int, cache_write: int, cache_read: int) -> float:
    """Share of prompt tokens served from cache, in percent, one decimal (CloudClawer's cache_pct)."""
    prompt = input_tokens + cache_write + cache_read
    return round(100.0 * cache_read / prompt, 1) if prompt else 0.0


@dataclass(slots=True)
class UsageEvent:
    """One API call, deduplicated, as any assistant's adapter reports it."""

    tool: str
    session_id: str
    key: str  # stable dedup key: same request seen in several lines or files -> same key
    ts: str  # ISO-8601 UTC, ending in Z
    model: str
    cwd: str
    git_branch: str | None
    tokens: Tokens
    is_sidechain: bool = False
    agent_id: str | None = None
    speed: str | None = None  # "fast" bills at a multiplier
    recorded_cost: str | None = None  # costUSD written by the tool itself (old Claude Code)
    file: str = ""
    offset: int = 0
    # Filled in by pricing:
    cost: Decimal | None = None  # None = unpriced (unknown model), never a silent $0
    cost_source: CostSource = "estimated"

    @property
    def priced(self) -> bool:
        return self.cost is not None


@dataclass(slots=True)
class ScanStats:
    files: int = 0
    bytes_read: int = 0
    lines: int = 0
    skipped_lines: int = 0
    cached_files: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    skipped_where: list[str] = field(default_factory=list)  # "file:line: reason", capped

    def skip(self, reason: str, where: str | None = None) -> None:
        self.skipped_lines += 1
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + 1
        if where is not None and len(self.skipped_where) < 200:
            self.skipped_where.append(f"{where}: {reason}")


# ----------------------------------------------------------------------------------------------
# Money at the JSON edge (ledger records keep exact Decimal text: see costattr.ledger.records)


def money(value: float | Decimal | int | str) -> Decimal:
    """A JSON number back into exact Decimal (through repr, so 0.1 stays 0.1)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def to_json_money(value: Decimal) -> float:
    """Decimal to the JSON edge; 10 decimal places keeps every sub-cent figure exact in practice."""
    return float(value.quantize(Decimal("1e-10")))


def parse_ts(ts: str) -> datetime:
    """A transcript or ledger timestamp (ISO-8601, UTC with Z) as an aware datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def local_day(ts: str, tz: tzinfo | None) -> date:
    """The calendar day of a UTC timestamp in the user's time zone (None: the machine's)."""
    return parse_ts(ts).astimezone(tz).date()


# ----------------------------------------------------------------------------------------------
# Session-level facts some transcripts record besides requests (Claude Code 2026).


@dataclass(frozen=True, slots=True)
class SessionCost:
    """Claude Code's own priced total of a session: its largest `cost-state` snapshot.

    Authoritative for the session as a whole (it includes auxiliary model calls that never
    appear as assistant lines), never for any one line: the difference with the priced lines is
    a residual within the session, not attributable to a line."""

    session_id: str
    cost: Decimal  # totalCostUSD, exact through repr
    models: dict[str, Decimal] = field(default_factory=dict)  # modelUsage[model].costUSD
    has_unknown_model_cost: bool = False  # Claude Code's own flag: it could not price everything
    counts: dict[str, int] = field(default_factory=dict)  # modelUsage token counts, summed, as recorded


@dataclass(frozen=True, slots=True)
class PrLink:
    """A `pr-link` record: this session created or worked on this PR (earliest copy per
    session and URL; Claude Code re-emits it on every resume and compaction)."""

    session_id: str
    number: int | None
    url: str
    repository: str | None  # "owner/name" as Claude Code wrote it
    timestamp: str | None  # ISO-8601 UTC
    branch: str | None = None  # the record's gitBranch, when it carries one
    cwd: str | None = None
