"""Sessions straight from priced events: the figures of `costattr sessions`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from costattr.models import SessionCost, Tokens, UsageEvent, to_json_money

NO_MODEL = "(no model recorded)"  # how an unpriced request without a model name is named


@dataclass
class Spend:
    """Tokens and money of any group of events; unpriced requests are counted, not costed, and
    named by model."""

    tokens: Tokens = field(default_factory=Tokens)
    cost: Decimal = Decimal(0)
    authoritative: Decimal = Decimal(0)
    requests: int = 0
    unpriced_requests: int = 0
    unpriced_models: dict[str, int] = field(default_factory=dict)  # model -> unpriced requests

    def add_event(self, ev: UsageEvent) -> None:
        self.tokens.add(ev.tokens)
        self.requests += 1
        if ev.cost is None:
            self.unpriced_requests += 1
            name = ev.model or NO_MODEL
            self.unpriced_models[name] = self.unpriced_models.get(name, 0) + 1
        else:
            self.cost += ev.cost
            if ev.cost_source == "authoritative":
                self.authoritative += ev.cost

    def add_unpriced(self, models: dict[str, int]) -> None:
        for name, n in models.items():
            self.unpriced_models[name] = self.unpriced_models.get(name, 0) + n

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
    # Claude Code's own total for the session (its largest cost-state), when it wrote one and
    # the whole session is in view: then it is the session's cost.
    recorded: SessionCost | None = None

    @property
    def cost(self) -> Decimal:
        return self.recorded.cost if self.recorded is not None else self.spend.cost

    @property
    def residual(self) -> Decimal | None:
        """The recorded total minus the priced lines: spend within the session that no line
        accounts for (auxiliary model calls, unpriced lines), or None without a recorded total."""
        return self.recorded.cost - self.spend.cost if self.recorded is not None else None

    @property
    def authoritative(self) -> Decimal:
        return self.recorded.cost if self.recorded is not None else self.spend.authoritative

    def as_json(self) -> dict[str, Any]:
        residual = self.residual
        return {
            "session_id": self.session_id,
            "tool": self.tool,
            "cwd": self.cwd,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "requests": self.spend.requests,
            "models": self.models,
            "tokens": self.spend.tokens.as_dict(),
            "cost_usd": to_json_money(self.cost),
            "unpriced_requests": self.spend.unpriced_requests,
            "unpriced_models": dict(sorted(self.spend.unpriced_models.items())),
            "cache_pct": self.spend.tokens.cache_pct(),
            "cost_source": "authoritative" if self.recorded is not None else cost_source(self.spend),
            "residual_usd": to_json_money(residual) if residual is not None else None,
            "branches": {name: s.as_json() for name, s in self.branches.items()},
        }


NO_BRANCH = "(no branch)"


def cost_source(spend: Spend) -> str:
    if spend.authoritative == 0:
        return "estimated"
    return "authoritative" if spend.authoritative == spend.cost and not spend.unpriced_requests else "mixed"


def summarize(events: Iterable[UsageEvent], recorded: Mapping[str, SessionCost] | None = None) -> list[SessionSummary]:
    """One summary per session, newest activity first. `recorded`: the sessions' own totals
    (cost-state) to use as their cost; pass only those of sessions whose events are all here."""
    out: dict[str, SessionSummary] = {}
    for ev in sorted(events, key=lambda e: e.ts):
        s = out.get(ev.session_id)
        if s is None:
            s = out[ev.session_id] = SessionSummary(ev.session_id, ev.tool, ev.cwd, ev.ts, ev.ts)
            s.recorded = recorded.get(ev.session_id) if recorded else None
        s.last_ts = ev.ts
        s.spend.add_event(ev)
        if ev.model and ev.model not in s.models:
            s.models.append(ev.model)
        s.branches.setdefault(ev.git_branch or NO_BRANCH, Spend()).add_event(ev)
    return sorted(out.values(), key=lambda s: (s.last_ts, s.session_id), reverse=True)


@dataclass
class Totals(Spend):
    """Spend over sessions: `cost` counts each session at its own cost (recorded or priced),
    `residual` sums the recorded sessions' residuals (None when no session has one)."""

    residual: Decimal | None = None


def totals(sessions: Iterable[SessionSummary]) -> Totals:
    total = Totals()
    for s in sessions:
        total.tokens.add(s.spend.tokens)
        total.cost += s.cost
        total.authoritative += s.authoritative
        total.requests += s.spend.requests
        total.unpriced_requests += s.spend.unpriced_requests
        total.add_unpriced(s.spend.unpriced_models)
        if s.residual is not None:
            total.residual = (total.residual or Decimal(0)) + s.residual
    return total
