"""What a pull request cost, as one sticky Markdown comment. Pure: no network, no git, no click.

Two steps, both plain functions over ledger data:

* `select_pr_spend` picks the visible spend records that belong to PR N: linked to N, made on the
  PR's head branch, or attributed to one of the PR's commits (after rewrites). Each counts once.
* `render_comment` turns them into the comment body: total and cache hit rate first, linked
  issues, the budgets the PR's spend counts against (`budget_status`), a per-session table,
  per-commit and per-model tables folded in <details>, and a footer saying how much is estimated
  vs authoritative, unpriced and unattributed.

`RepoScope` says which repositories' records are candidates at all: inside a repository, only
that repository's (and the PR's own repositories on GitHub).

Everything that came from a developer's machine (branch names, commit messages, model names,
session ids, issue keys) is untrusted text in a comment the bot signs: it goes through
`md_escape`, so it cannot break a table, inject HTML or links, forge our marker, or ping anyone.
The body never contains a timestamp, so an unchanged ledger renders the same body and the
sticky comment is left alone instead of being re-edited on every push.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal

from costattr.ledger.records import AnyRecord, LinkRecord
from costattr.ledger.view import Spend
from costattr.markdown import md_escape
from costattr.models import Tokens
from costattr.report import rollup as _rollup

MARKER = "<!-- costattr:pr-cost v1 -->"
GITHUB_BODY_LIMIT = 65_536  # GitHub answers 422 "Body is too long" above this
MAX_BODY_CHARS = 60_000  # our cap, with room to spare (the changesets action uses the same)

IssueUrl = Callable[[str], "str | None"]
BudgetFor = Callable[[str, str], "Decimal | None"]  # (grouping, key) -> budget: report.budget.budget_lookup

TOOL_NAMES = {"claude": "Claude Code", "codex": "Codex"}

# Rows shown per table before anything else is considered; render_comment shrinks them further
# when the body would not fit.
DEFAULT_LIMITS: dict[str, int] = {"sessions": 50, "commits": 100, "models": 25, "issues": 20}

# Caps on single fields, applied before escaping so an entity is never cut in half.
BRANCH_CHARS = 100
MESSAGE_CHARS = 120
MODEL_CHARS = 60
ISSUE_CHARS = 40
MODELS_PER_SESSION = 3
PERIODS_OVER_SHOWN = 5  # per kind of period; the rest are counted
BUDGET_ISSUES_SHOWN = 10


# ------------------------------------------------------------------------------------------------
# Escaping


def code_or_text(text: str, pattern: re.Pattern[str]) -> str:
    """`text` as a code span when it is harmless (matches `pattern`), else escaped plain text.

    Backticks cannot be escaped inside a code span, so only text known not to contain any may
    be put in one.
    """
    return f"`{text}`" if pattern.fullmatch(text) else md_escape(text, 40)


_HEX_SHA = re.compile(r"[0-9a-f]{7,40}")
_SESSION_SHORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,15}")
_GITHUB_ISSUE = re.compile(r"#[0-9]{1,9}")


def safe_url(url: str | None) -> str | None:
    """An http(s) URL fit for a Markdown link target, or None.

    Other schemes (javascript:, data:) are refused; characters that could end the link target
    or start markup are percent-encoded.
    """
    if not url:
        return None
    url = url.strip()
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return urllib.parse.quote(url, safe=":/?#@!$&'*+,;=%-._~")


# ------------------------------------------------------------------------------------------------
# Selection


class CommitMatcher:
    """Is a ledger commit one of the PR's commits? Full SHAs, or prefixes of at least 7 chars
    either way (ledgers may hold short SHAs; the API gives full ones)."""

    MIN_PREFIX = 7

    def __init__(self, shas: Iterable[str]) -> None:
        self._by_prefix: dict[str, list[str]] = {}
        for sha in shas:
            s = sha.strip().lower()
            if len(s) >= self.MIN_PREFIX:
                self._by_prefix.setdefault(s[: self.MIN_PREFIX], []).append(s)

    def __contains__(self, commit: object) -> bool:
        if not isinstance(commit, str):
            return False
        c = commit.strip().lower()
        if len(c) < self.MIN_PREFIX:
            return False  # too short to tell commits apart
        return any(full.startswith(c) or c.startswith(full) for full in self._by_prefix.get(c[: self.MIN_PREFIX], ()))


_SLUG_TAIL = re.compile(r"([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/*$")
_LOCAL_PATH = re.compile(r"^(?:/|~|\\|[A-Za-z]:[\\/]|file:)")


def repo_slug(value: str | None) -> str | None:
    """`owner/name` (lower case) from a slug, `host/owner/name`, or a remote URL; None when the
    value is not recognisably a hosted repository (a local path, say)."""
    if not value:
        return None
    v = value.strip()
    if _LOCAL_PATH.match(v):
        return None
    m = _SLUG_TAIL.search(v)
    return f"{m[1]}/{m[2]}".lower() if m else None


def _repo_matches(record_repo: str, wanted: set[str]) -> bool:
    # A shared ledger (memory API) spans every repository a developer works in, and PR numbers
    # and branch names repeat across repositories: a record that names another repository is
    # not this PR's. Records of a repository without a hosted remote are kept: hiding spend is
    # worse than showing it.
    slug = repo_slug(record_repo) if not record_repo.startswith("path:") else None
    return slug is None or slug in wanted


def _slugs(repos: Iterable[str]) -> set[str]:
    return {s for s in (repo_slug(r) for r in repos) if s}


def _repo_key(repo: str) -> str:
    # GitHub's owner/name (and a remote URL) are case-insensitive; a work tree's path is not.
    return repo if repo.startswith("path:") else repo.casefold()


class RepoScope:
    """Which repositories' records can be the PR's at all.

    Inside a repository (`here`: its `GitContext.repo_id`) a record counts only when its `repo` is
    that repository, or one of `repos` (the PR's base and head repository on GitHub, or the one
    named by --repo): the local ledger holds every repository of the machine, and PR numbers and
    branch names repeat across them. Outside one (CI without a checkout) nothing is known of the
    records' own repository: a record naming another hosted repository than `repos` is left out,
    the rest are kept (hiding spend is worse than showing it), and without `repos` all are kept.
    """

    def __init__(self, here: str | None, repos: Iterable[str] = ()) -> None:
        self.here = here
        self.repos = tuple(r for r in repos if r)
        self._ids = {_repo_key(r) for r in (here, *self.repos) if r}
        self._slugs = _slugs(self.repos)

    def keeps(self, repo: str) -> bool:
        if self.here is not None:
            return _repo_key(repo) in self._ids
        return not self._slugs or _repo_matches(repo, self._slugs)

    def select(self, records: Iterable[AnyRecord]) -> tuple[list[AnyRecord], int]:
        """The records in scope, and how many were left out."""
        kept: list[AnyRecord] = []
        out = 0
        for r in records:
            if self.keeps(r.repo):
                kept.append(r)
            else:
                out += 1
        return kept, out

    def describe(self) -> str:
        names = sorted({r.removeprefix("path:") for r in (self.here, *self.repos) if r}, key=str.casefold)
        return " and ".join(names) if names else "every repository"


def select_pr_spend(
    spends: Iterable[Spend],
    pr_number: int,
    head_branch: str | None,
    pr_commit_shas: Iterable[str],
    *,
    repos: Collection[str] = (),
    base_branch: str | None = None,
) -> list[Spend]:
    """The visible spend records that belong to PR `pr_number`, each once.

    A record belongs when it is linked to the PR (`upload --pr`, a `pr-link`), when it was made on
    the head branch, or when its commit is one of the PR's commits. `repos` (owner/name of the
    base and head repository) excludes records of other repositories. A head branch equal to
    `base_branch` matches nothing by name: a fork PR from the contributor's `main` must not
    collect all of `main`'s spend.
    """
    commits = CommitMatcher(pr_commit_shas)
    branch = head_branch if head_branch and head_branch != base_branch else None
    wanted = _slugs(repos)
    out: list[Spend] = []
    for spend in spends:
        if wanted and not _repo_matches(spend.record.repo, wanted):
            continue
        if pr_number in spend.prs or (branch is not None and spend.branch == branch) or spend.commit in commits:
            out.append(spend)
    return out


def linked_branches(records: Iterable[AnyRecord], pr_number: int, *, repos: Collection[str] = ()) -> list[str]:
    """The branches that `upload --pr` (or a `pr-link`) linked to PR `pr_number`, in `repos`.

    Without the GitHub API this is the best word on the PR's head branch: the branch checked out
    where the comment runs may be any other (issue 12: after a commit on another branch, the PR
    collected that branch's spend)."""
    wanted = _slugs(repos)
    return sorted({r.branch for r in records if isinstance(r, LinkRecord) and r.pr == pr_number
                   and (not wanted or _repo_matches(r.repo, wanted))})


def unattributed_spend(spends: Iterable[Spend], selected: Sequence[Spend]) -> list[Spend]:
    """Spend of the PR's sessions that is tied to no branch and no commit (no recorded branch,
    or spent before `upload --base`) and was not selected: shown in the footer, never dropped
    silently, not added to the total."""
    chosen = {s.record.id for s in selected}
    sessions = {s.session_id for s in selected}
    return [s for s in spends if s.session_id in sessions and s.record.state == "unattributed"
            and s.record.id not in chosen]


def price_table_dates(selected: Sequence[Spend]) -> str | None:
    """The price table date(s) the selected records were priced with: "2025-09-30", or a range
    when developers ran different versions, or None when the ledger does not say."""
    dates = sorted({s.record.prices for s in selected if s.record.prices})
    if not dates:
        return None
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


# ------------------------------------------------------------------------------------------------
# Aggregation


@dataclass
class Totals:
    cost: Decimal = Decimal(0)
    authoritative: Decimal = Decimal(0)
    requests: int = 0
    unpriced: int = 0
    tokens: Tokens = field(default_factory=Tokens)

    def add(self, spend: Spend) -> None:
        for p in spend.parts:
            self.cost += p.cost
            self.authoritative += p.authoritative
            self.requests += p.requests
            self.unpriced += p.unpriced
            self.tokens.add(p.tokens)

    @property
    def estimated(self) -> Decimal:
        return self.cost - self.authoritative

    @property
    def cache_pct(self) -> float:
        return self.tokens.cache_pct()


@dataclass
class SessionRow:
    session_id: str
    tool: str
    totals: Totals = field(default_factory=Totals)
    commits: set[str] = field(default_factory=set)
    model_cost: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class CommitRow:
    commit: str | None  # None: spend on the branch not committed yet
    message: str | None
    first_ts: str
    totals: Totals = field(default_factory=Totals)
    sessions: set[str] = field(default_factory=set)


@dataclass
class ModelRow:
    model: str
    requests: int = 0
    unpriced: int = 0
    cost: Decimal = Decimal(0)
    tokens: Tokens = field(default_factory=Tokens)


@dataclass
class PrSpend:
    """Everything the comment shows, computed once from the selected segments."""

    totals: Totals
    sessions: list[SessionRow]
    commits: list[CommitRow]
    models: list[ModelRow]
    issues: list[str]
    unattributed: Totals
    unattributed_sessions: int


def summarise(selected: Sequence[Spend], unattributed: Sequence[Spend] = ()) -> PrSpend:
    totals = Totals()
    sessions: dict[str, SessionRow] = {}
    commits: dict[str | None, CommitRow] = {}
    models: dict[str, ModelRow] = {}
    issues: list[str] = []
    for spend in selected:
        rec = spend.record
        totals.add(spend)
        srow = sessions.setdefault(rec.session_id, SessionRow(rec.session_id, rec.tool))
        srow.totals.add(spend)
        if spend.commit:
            srow.commits.add(spend.commit)
        crow = commits.get(spend.commit)
        if crow is None:
            crow = commits[spend.commit] = CommitRow(spend.commit, spend.message, rec.first_ts)
        crow.totals.add(spend)
        crow.sessions.add(rec.session_id)
        crow.message = crow.message or spend.message
        crow.first_ts = min(crow.first_ts, rec.first_ts)
        for p in spend.parts:
            mrow = models.setdefault(p.model, ModelRow(p.model))
            mrow.requests += p.requests
            mrow.unpriced += p.unpriced
            mrow.cost += p.cost
            mrow.tokens.add(p.tokens)
            srow.model_cost[p.model] = srow.model_cost.get(p.model, Decimal(0)) + p.cost
        for key_ in (spend.issue, *spend.related):
            if key_ and key_ not in issues:
                issues.append(key_)
    un = Totals()
    for spend in unattributed:
        un.add(spend)
    return PrSpend(
        totals=totals,
        sessions=sorted(sessions.values(), key=lambda r: (-r.totals.cost, r.session_id)),
        # Chronological, which is commit order for one branch; uncommitted spend comes last.
        commits=sorted(commits.values(), key=lambda r: (r.commit is None, r.first_ts, r.commit or "")),
        models=sorted(models.values(), key=lambda r: (-r.cost, r.model)),
        issues=issues,
        unattributed=un,
        unattributed_sessions=len({s.session_id for s in unattributed}),
    )


# ------------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class BudgetLine:
    """One budget the PR's spend counts against, and what has been spent against it.

    kind: issue | branch | day | week | month; key: the issue key, the branch, or the period
    (`2026-01-05`, `2026-01-05 (W02)`, `2026-01`). `busiest_of`: for a period within its budget,
    the number of periods the PR spent in (this line is the busiest of them); `more_over`: periods
    over budget not listed."""

    kind: str
    key: str
    spent: Decimal
    budget: Decimal
    busiest_of: int = 0
    more_over: int = 0

    @property
    def over(self) -> bool:
        return self.spent > self.budget


def budget_status(selected: Sequence[Spend], scope: Sequence[Spend], budget_for: BudgetFor, *,
                  head_branch: str | None = None, base_branch: str | None = None) -> list[BudgetLine]:
    """The configured budgets (`[budgets]`) the PR's spend counts against, as `costattr report`
    compares them: each of the PR's issues against all the spend filed under that issue, the head
    branch against all the spend on that branch, and the days / weeks / months (UTC) in which the PR
    spent against all the spend of that period. `scope` is every visible spend record in the PR's
    repository scope (see RepoScope). Periods over budget are all listed (the first few, then a
    count); when none is over, the busiest period stands for them. No budget set: no lines."""
    lines: list[BudgetLine] = []
    if not selected:
        return lines
    issues: list[str] = []
    for spend in selected:
        for key in (spend.issue, *spend.related):
            if key and key.upper() not in (k.upper() for k in issues):
                issues.append(key)
    budgeted = [(key, b) for key in issues if (b := budget_for("issue", key)) is not None]
    if budgeted:
        spent: dict[str, Decimal] = {}
        for spend in scope:
            if spend.issue:
                spent[spend.issue.upper()] = spent.get(spend.issue.upper(), Decimal(0)) + spend.record.cost
        lines += [BudgetLine("issue", key, spent.get(key.upper(), Decimal(0)), b)
                  for key, b in budgeted[:BUDGET_ISSUES_SHOWN]]
    branch = head_branch if head_branch and head_branch != base_branch else None
    if branch is not None and (b := budget_for("branch", branch)) is not None:
        on_branch = sum((s.record.cost for s in scope if s.branch == branch), Decimal(0))
        lines.append(BudgetLine("branch", branch, on_branch, b))
    utc = _rollup.Filters(tz=UTC)
    for by in ("day", "week", "month"):
        if budget_for(by, "") is None:
            continue
        touched = {row.key for row in _rollup.rollup(selected, by, utc).rows}
        periods = [row for row in _rollup.rollup(scope, by, utc, budget_for).rows if row.key in touched]
        over = sorted((row for row in periods if row.over_budget), key=lambda row: row.key)
        if over:
            shown = over[:PERIODS_OVER_SHOWN]
            lines += [BudgetLine(by, row.key, row.cost, row.budget or Decimal(0),
                                 more_over=len(over) - len(shown) if i == len(shown) - 1 else 0)
                      for i, row in enumerate(shown)]
        elif periods:
            busiest = max(periods, key=lambda row: (row.cost, row.key))
            lines.append(BudgetLine(by, busiest.key, busiest.cost, busiest.budget or Decimal(0),
                                    busiest_of=len(periods)))
    return lines


_PERIOD_NOUN = {"day": "day", "week": "week", "month": "month"}
_PERIOD_KEY = re.compile(r"[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?(?: \(W[0-9]{2}\))?")


def _budget_label(line: BudgetLine, issue_url: IssueUrl | None) -> str:
    if line.kind == "issue":
        return f"Issue {issue_link(line.key, issue_url)}, all its spend"
    if line.kind == "branch":
        return f"Branch {md_escape(line.key, BRANCH_CHARS)}, all its spend"
    noun = _PERIOD_NOUN[line.kind]
    key = line.key if _PERIOD_KEY.fullmatch(line.key) else md_escape(line.key, 40)  # ours: dates
    period = f"{noun.capitalize()} {key} UTC"
    if line.busiest_of > 1:
        return f"{period}, all spend that {noun} (the busiest of the {line.busiest_of} {noun}s this PR spent in)"
    return f"{period}, all spend that {noun}"


def _budget_status_cell(line: BudgetLine) -> str:
    if line.over:
        return f"⚠️ **over** by {usd(line.spent - line.budget)}"
    if line.budget > 0:
        return f"within ({line.spent / line.budget:.0%})"
    return "within"


def _budget_section(lines: Sequence[BudgetLine], issue_url: IssueUrl | None) -> list[str]:
    if not lines:
        return []
    over = sum(1 for line in lines if line.over) + sum(line.more_over for line in lines)
    total = len(lines) + sum(line.more_over for line in lines)
    verdict = f"⚠️ {over} of {total} over" if over else "all within"
    out = [f"**Budgets** (`[budgets]` in the repository's costattr config) · {verdict}", ""]
    out += ["| Budget | Spent | Limit | Status |", "|---|--:|--:|---|"]
    out += [f"| {_budget_label(line, issue_url)} | {usd(line.spent)} | {usd(line.budget)} | "
            f"{_budget_status_cell(line)} |" for line in lines]
    more = [f"{line.more_over:,} more {_PERIOD_NOUN[line.kind]}s over budget" for line in lines if line.more_over]
    if more:
        out += ["", "_…and " + ", ".join(more) + " (`costattr report --by day|week|month` lists them)._"]
    return out + [""]


# ------------------------------------------------------------------------------------------------
# Formatting


def usd(value: Decimal) -> str:
    """$1,234.57 for amounts worth rounding to cents, $0.0041 below a cent, so small spend shows."""
    if value == 0:
        return "$0.00"
    if abs(value) < Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:,.2f}"


def count(n: int) -> str:
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def tool_name(tool: str) -> str:
    return TOOL_NAMES.get(tool, md_escape(tool, 30))


def session_label(session_id: str) -> str:
    return code_or_text(session_id[:8], _SESSION_SHORT)


def commit_label(commit: str | None) -> str:
    if not commit:
        return "_not committed yet_"
    c = commit.strip().lower()
    # Plain, not a code span: GitHub turns a bare SHA into a link to the commit.
    return c[:7] if _HEX_SHA.fullmatch(c) else md_escape(commit, 12)


def issue_link(key: str, issue_url: IssueUrl | None) -> str:
    url = safe_url(issue_url(key)) if issue_url is not None else None
    if url is not None:
        return f"[{md_escape(key, ISSUE_CHARS)}]({url})"
    if _GITHUB_ISSUE.fullmatch(key):
        return key  # GitHub links #123 itself, in this repository
    return md_escape(key, ISSUE_CHARS)


def _table(header: Sequence[str], align: str, rows: Sequence[Sequence[str]], limit: int, what: str) -> list[str]:
    """A Markdown table of at most `limit` rows, plus a line saying how many were left out."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows[:limit]]
    omitted = len(rows) - min(limit, len(rows))
    if omitted > 0:
        # The blank line matters: a text line right after a table would become one more row.
        shown = min(limit, len(rows))
        noun = what if omitted == 1 else what + "s"
        lines += ["", f"_…and {omitted:,} more {noun} not shown ({shown:,} of {len(rows):,} listed)._"]
    return lines


def _session_rows(spend: PrSpend) -> list[list[str]]:
    rows = []
    for r in spend.sessions:
        names = sorted(r.model_cost, key=lambda m: (-r.model_cost[m], m))
        shown = ", ".join(md_escape(m, MODEL_CHARS) for m in names[:MODELS_PER_SESSION])
        if len(names) > MODELS_PER_SESSION:
            shown += f" +{len(names) - MODELS_PER_SESSION}"
        cost = usd(r.totals.cost)
        rows.append([session_label(r.session_id), tool_name(r.tool), shown or "–", str(len(r.commits)), cost])
    return rows


def _commit_rows(spend: PrSpend) -> list[list[str]]:
    rows = []
    for r in spend.commits:
        sessions = ", ".join(session_label(s) for s in sorted(r.sessions)[:3])
        if len(r.sessions) > 3:
            sessions += f" +{len(r.sessions) - 3}"
        message = md_escape(r.message, MESSAGE_CHARS) if r.message else ""
        rows.append([commit_label(r.commit), sessions, usd(r.totals.cost), message])
    return rows


def _model_rows(spend: PrSpend) -> list[list[str]]:
    rows = []
    for r in spend.models:
        cost = usd(r.cost) if not r.unpriced else f"{usd(r.cost)} + {plural(r.unpriced, 'unpriced request')}"
        cache = f"{r.tokens.cache_pct():.1f}%"
        rows.append([md_escape(r.model, MODEL_CHARS), f"{r.requests:,}", count(r.tokens.total), cache, cost])
    return rows


@dataclass(frozen=True)
class _Context:
    pr_number: int
    head_branch: str | None
    price_table_date: str | None
    issue_url: IssueUrl | None
    budgets: Sequence[BudgetLine] = ()


def _assemble(spend: PrSpend, ctx: _Context, limits: Mapping[str, int]) -> str:
    t = spend.totals
    title = f"### 🤖 AI assistant cost: PR #{ctx.pr_number}"
    if ctx.head_branch:
        title += f" · {md_escape(ctx.head_branch, BRANCH_CHARS)}"
    out = [MARKER, title, ""]
    if not spend.sessions:
        out += [
            "No AI-assistant spend found for this pull request in the costattr ledger.",
            "",
            "<sub>Spend is recorded by the costattr post-commit hook on developers' machines. If you "
            "expected some, check that this job can read the shared ledger (git notes fetched, or "
            "the memory-API key set). Updated on every push.</sub>",
        ]
        return "\n".join(out) + "\n"

    n_commits = sum(1 for r in spend.commits if r.commit)
    out.append(
        f"**{usd(t.cost)}** · cache hit rate **{t.cache_pct:.1f}%** · {plural(len(spend.sessions), 'session')}"
        f" · {plural(n_commits, 'commit')} · {count(t.tokens.total)} tokens · {plural(t.requests, 'request')}"
    )
    if spend.issues:
        shown = [issue_link(k, ctx.issue_url) for k in spend.issues[: limits["issues"]]]
        more = len(spend.issues) - len(shown)
        label = "Linked issue" if len(spend.issues) == 1 else "Linked issues"
        out.append("")
        out.append(f"{label}: " + ", ".join(shown) + (f" and {more:,} more" if more > 0 else ""))
    out.append("")
    out += _budget_section(ctx.budgets, ctx.issue_url)
    out += _table(
        ("Session", "Tool", "Models", "Commits", "Cost"), "lllrr", _session_rows(spend), limits["sessions"], "session"
    )
    out += ["", f"<details><summary>Per commit ({len(spend.commits):,})</summary>", ""]
    out += _table(("Commit", "Sessions", "Cost", "Message"), "llrl", _commit_rows(spend), limits["commits"], "commit")
    out += ["", "</details>", ""]
    if spend.models:
        out += [f"<details><summary>Per model ({len(spend.models):,})</summary>", ""]
        out += _table(
            ("Model", "Requests", "Tokens", "Cache hit", "Cost"), "lrrrr", _model_rows(spend), limits["models"], "model"
        )
        out += ["", "</details>", ""]
    out.append(_footer(spend, ctx))
    return "\n".join(out) + "\n"


def _footer(spend: PrSpend, ctx: _Context) -> str:
    t = spend.totals
    date = "price table date not recorded"
    if ctx.price_table_date:
        date = f"price table of {md_escape(ctx.price_table_date, 40)}"
    if t.authoritative == 0:
        parts = [f"Estimated at list prices ({date}) from the assistants' local transcripts; not an invoice."]
    elif t.estimated == 0:
        parts = ["All of it is the cost the assistants recorded themselves (authoritative)."]
    else:
        parts = [
            f"{usd(t.estimated)} estimated at list prices ({date}), {usd(t.authoritative)} as recorded "
            "by the assistants themselves; not an invoice."
        ]
    if t.unpriced:
        unpriced = [m.model for m in spend.models if m.unpriced]
        names = ", ".join(md_escape(m, MODEL_CHARS) for m in unpriced[:5]) + (" …" if len(unpriced) > 5 else "")
        parts.append(
            f"⚠️ {plural(t.unpriced, 'request')} used models with no known price"
            + (f" ({names})" if names else "")
            + " and are **not** in the total."
        )
    if spend.unattributed_sessions:
        parts.append(
            f"{usd(spend.unattributed.cost)} of these sessions' spend "
            f"({plural(spend.unattributed.requests, 'request')}) is unattributed (no branch recorded, or "
            "spent before `--base`) and not counted here."
        )
    parts.append("Updated by costattr on every push.")
    return "<sub>" + " ".join(parts) + "</sub>"


def _shrink(limits: dict[str, int], sizes: Mapping[str, int]) -> bool:
    """Halve the table currently showing the most rows; False when nothing is left to cut."""
    shown = {k: min(limits[k], sizes[k]) for k in limits}
    key = max(shown, key=lambda k: (shown[k], k))
    if shown[key] <= 1:
        return False
    limits[key] = shown[key] // 2
    return True


def _hard_cut(body: str, max_chars: int) -> str:
    note = "\n\n_The comment was cut to fit GitHub's size limit; `costattr report` has everything._\n"
    cut = body[: max_chars - len(note) - len("\n</details>")]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n</details>"
    return cut + note


def render_comment(
    selected: Sequence[Spend],
    *,
    pr_number: int,
    head_branch: str | None = None,
    price_table_date: str | None = None,
    issue_url: IssueUrl | None = None,
    unattributed: Sequence[Spend] = (),
    budgets: Sequence[BudgetLine] = (),
    max_chars: int = MAX_BODY_CHARS,
    limits: Mapping[str, int] | None = None,
) -> str:
    """The sticky comment body (starting with MARKER), never longer than `max_chars`.

    `issue_url` maps an issue key to its tracker URL (None: no link); `price_table_date` is the
    date of the price table the estimates use; `unattributed` is the PR's sessions' branchless
    spend (see `unattributed_spend`); `budgets` the budget lines to show (see `budget_status`).
    Tables that do not fit are cut, saying how many rows were left out.
    """
    spend = summarise(selected, unattributed)
    ctx = _Context(pr_number, head_branch, price_table_date, issue_url, tuple(budgets))
    current = dict(DEFAULT_LIMITS)
    current.update(limits or {})
    sizes = {
        "sessions": len(spend.sessions),
        "commits": len(spend.commits),
        "models": len(spend.models),
        "issues": len(spend.issues),
    }
    while True:
        body = _assemble(spend, ctx, current)
        if len(body) <= max_chars or not _shrink(current, sizes):
            break
    return body if len(body) <= max_chars else _hard_cut(body, max_chars)
