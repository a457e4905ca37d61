"""Sessions straight from priced events: the figures of `costattr sessions`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from costattr.models import Tokens, UsageEvent, to_json_money


@dataclass
class Spend:
    """Tokens and money of any group of events; unpriced requests are counted, not costed."""

    tokens: Tokens = field(default_factory=Tokens)
    cost: Decimal = Decimal(0)
    authoritative: Decimal = Decimal(0)
    requests: int = 0
    unpriced_requests: int = 0

    def add_event(self, ev: UsageEvent) -> None:
        self.tokens.add(ev.tokens)
        self.requests += 1
        if ev.cost is None:
            self.unpriced_requests += 1
        else:
            self.cost += ev.cost
            if ev.cost_source == "authoritative":
                self.authoritative += ev.cost

    def as_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens.as_dict(), "cost_usd": to_json_money(self.cost)}


@dataclass
class SessionSummary:
    session_id: str
    tool: str
    cwd: str
    first_ts: str
    last_ts: str
    spend: Spend = field(default_factory=Spend)
    models: list[str] = field(default_factory=list)
    branches: dict[str, Spend] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "tool": self.tool,
            "cwd": self.cwd,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "requests": self.spend.requests,
            "models": self.models,
            "tokens": self.spend.tokens.as_dict(),
            "cost_usd": to_json_money(self.spend.cost),
            "unpriced_requests": self.spend.unpriced_requests,
            "cache_pct": self.spend.tokens.cache_pct(),
            "cost_source": cost_source(self.spend),
            "branches": {name: s.as_json() for name, s in self.branches.items()},
        }


NO_BRANCH = "(no branch)"


def cost_source(spend: Spend) -> str:
    if spend.authoritative == 0:
        return "estimated"
    return "authoritative" if spend.authoritative == spend.cost and not spend.unpriced_requests else "mixed"


def summarize(events: Iterable[UsageEvent]) -> list[SessionSummary]:
    """One summary per session, newest activity first."""
    out: dict[str, SessionSummary] = {}
    for ev in sorted(events, key=lambda e: e.ts):
        s = out.get(ev.session_id)
        if s is None:
            s = out[ev.session_id] = SessionSummary(ev.session_id, ev.tool, ev.cwd, ev.ts, ev.ts)
        s.last_ts = ev.ts
        s.spend.add_event(ev)
        if ev.model and ev.model not in s.models:
            s.models.append(ev.model)
        s.branches.setdefault(ev.git_branch or NO_BRANCH, Spend()).add_event(ev)
    return sorted(out.values(), key=lambda s: (s.last_ts, s.session_id), reverse=True)


def totals(sessions: Iterable[SessionSummary]) -> Spend:
    total = Spend()
    for s in sessions:
        total.tokens.add(s.spend.tokens)
        total.cost += s.spend.cost
        total.authoritative += s.spend.authoritative
        total.requests += s.spend.requests
        total.unpriced_requests += s.spend.unpriced_requests
    return total
