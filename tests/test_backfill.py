"""`costattr backfill` on a real history: branches created, commits made, one branch merged and
deleted, one rebased, transcripts written during it by the generator. Every expected figure is
the ground truth of the lines written (list price of the tokens each response carries), never
read back from costattr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from costattr import issue_keys
from costattr.attribution import Where
from costattr.backfill import attribute_history
from costattr.gitctx import CommitInfo
from costattr.models import Tokens, UsageEvent
from costattr.testing.gitrepo import git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter

# claude-sonnet-4-5 list prices per million tokens
PRICE = {"input": Decimal(3), "output": Decimal(15), "cache_write_5m": Decimal("3.75"), "cache_read": Decimal("0.30")}
T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


def price(tokens: Tokens) -> Decimal:
    return sum((Decimal(getattr(tokens, k)) * p for k, p in PRICE.items()), Decimal(0)) / 1_000_000


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "costattr", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def by_issue(repo: Path) -> dict[str, Decimal]:
    doc = json.loads(cli("report", "--by", "issue", "--format", "json", cwd=repo).stdout)
    out = {r["key"]: Decimal(str(r["cost_usd"])) for r in doc["rows"]}
    if doc["unattributed"]["requests"]:
        out["(unattributed)"] = Decimal(str(doc["unattributed"]["cost_usd"]))
    return out


def dated(repo: Path, when: datetime, *args: str) -> str:
    """A git command whose commits are dated `when` (author and committer)."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
    return git(repo, *args, env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})


def commit_at(repo: Path, when: datetime, message: str) -> None:
    (repo / f"{message.replace(' ', '-')}.txt").write_text(message + "\n", encoding="utf-8")  # no conflicts
    git(repo, "add", "-A")
    dated(repo, when, "commit", "-q", "--no-verify", "-m", message)


@dataclass
class Truth:
    """What the test wrote, per issue key (or report label), as ground truth."""

    cost: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    outside: Decimal = Decimal(0)  # lines of these sessions that ran outside the repository

    def add(self, key: str, tokens: Tokens) -> None:
        if key == "(outside)":
            self.outside += price(tokens)
        else:
            self.cost[key] += price(tokens)


class Sessions:
    """Transcript writers, one per session, each response dated and charged to a truth key."""

    def __init__(self, projects: Path, cwd: Path, truth: Truth) -> None:
        self.projects, self.cwd, self.truth = projects, cwd, truth
        self.writers: dict[str, ClaudeSessionWriter] = {}

    def say(self, session: str, branch: str | None, when: datetime, key: str, *, output: int = 400,
            cwd: Path | None = None) -> None:
        w = self.writers.get(session)
        if w is None:
            w = self.writers[session] = ClaudeSessionWriter(self.projects, session, str(self.cwd), branch=branch,
                                                            start=when, seed=len(self.writers))
        w.branch = branch
        w.cwd = str(cwd or self.cwd)  # the file stays the session's; the line records where it ran
        w.clock.now = when
        resp = w.response(input=20, output=output, cache_write_5m=2000, cache_read=8000)
        self.truth.add(key, resp.tokens)


@pytest.fixture
def history(tmp_path: Path, env_dirs: dict[str, Path]) -> tuple[Path, Truth, Sessions]:
    """A month of work made before any hook: see the comments for what each request's truth is."""
    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    truth = Truth()
    s = Sessions(env_dirs["claude"] / "projects", repo, truth)
    commit_at(repo, at(0), "initial")

    # PROJ-1: two commits on a feature branch, merged into main with a merge commit, then deleted.
    git(repo, "checkout", "-q", "-b", "feature/PROJ-1-login")
    s.say("s1", "feature/PROJ-1-login", at(10), "PROJ-1")
    s.say("s1", "feature/PROJ-1-login", at(20), "PROJ-1", output=900)
    commit_at(repo, at(30), "login form")
    s.say("s1", "feature/PROJ-1-login", at(35), "(outside)", cwd=tmp_path / "elsewhere")  # another project
    s.say("s1", "feature/PROJ-1-login", at(40), "PROJ-1")
    commit_at(repo, at(50), "login api")
    s.writers["s1"].pr_link(7, "acme/app", ts=at(51).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    git(repo, "checkout", "-q", "main")
    dated(repo, at(60), "merge", "-q", "--no-ff", "--no-edit", "feature/PROJ-1-login")
    git(repo, "branch", "-q", "-D", "feature/PROJ-1-login")

    # ENG-2: two commits, then main moves on and the branch is rebased onto it (new committer times).
    git(repo, "checkout", "-q", "-b", "eng-2-cache")
    s.say("s2", "eng-2-cache", at(70), "ENG-2")
    commit_at(repo, at(80), "cache layer")
    s.say("s2", "eng-2-cache", at(90), "ENG-2", output=1500)
    s.say("s2", "eng-2-cache", at(95), "ENG-2")
    commit_at(repo, at(100), "cache eviction")
    git(repo, "checkout", "-q", "main")
    s.say("s3", "main", at(105), "(main)")  # main's own work: no issue key anywhere
    commit_at(repo, at(110), "fix typo in README")
    git(repo, "checkout", "-q", "eng-2-cache")
    dated(repo, at(120), "rebase", "-q", "main")
    # ENG-2 spend after its last commit stays open on the branch (still ENG-2, by its name).
    s.say("s2", "eng-2-cache", at(130), "ENG-2")

    # Spend with nothing to tie it to: no branch recorded; a branch git never knew.
    s.say("s4", None, at(140), "(unattributed)")
    s.say("s5", "spike/never-pushed", at(150), "(unattributed)", output=50)
    return repo, truth, s


def expected(truth: Truth) -> dict[str, Decimal]:
    out = dict(truth.cost)
    # main's own spend has no issue key: `--by issue` shows it with the spend tied to no issue
    out["(unattributed)"] += out.pop("(main)")
    return out


def test_backfill_reports_the_truth_per_issue_and_a_second_run_changes_nothing(history) -> None:  # type: ignore[no-untyped-def]
    repo, truth, _s = history
    first = json.loads(cli("backfill", "--format", "json", cwd=repo).stdout)
    assert first["sessions"] == 5
    assert first["unattributed"].keys() == {"no branch recorded", "branch not in history", "outside the repo"}
    assert first["unattributed"]["outside the repo"]["requests"] == 1
    assert Decimal(str(first["unattributed"]["outside the repo"]["cost_usd"])) == truth.outside
    assert first["open"].keys() == {"eng-2-cache"}
    assert first["links"] == 1
    assert first["branches"]["feature/PROJ-1-login"] == "reflog"  # deleted: known from HEAD's reflog
    report = by_issue(repo)
    assert report == expected(truth)
    branches = json.loads(cli("report", "--by", "branch", "--format", "json", cwd=repo).stdout)
    assert {r["key"]: Decimal(str(r["cost_usd"])) for r in branches["rows"]}["main"] == truth.cost["(main)"]

    # PR #7 (the transcript's pr-link) holds PROJ-1's spend; the tree marks backfilled records.
    pr = json.loads(cli("report", "--by", "pr", "--format", "json", cwd=repo).stdout)
    assert {r["key"]: Decimal(str(r["cost_usd"])) for r in pr["rows"]}["#7"] == truth.cost["PROJ-1"]
    assert "(backfilled)" in cli("report", "--tree", cwd=repo).stdout
    issues = json.loads(cli("report", "--by", "issue", "--format", "json", cwd=repo).stdout)
    assert all(r["backfilled_usd"] == r["cost_usd"] for r in issues["rows"])

    again = json.loads(cli("backfill", "--format", "json", cwd=repo).stdout)
    assert (again["requests"], again["sessions"], again["links"], again["unattributed"]) == (0, 0, 0, {})
    assert by_issue(repo) == report


def test_a_rebased_branch_is_charged_to_its_commits_as_they_are_now(history) -> None:  # type: ignore[no-untyped-def]
    repo, truth, _s = history
    originals = set(git(repo, "log", "-g", "--format=%H", "HEAD").split()) - set(git(repo, "rev-list", "--all").split())
    cli("backfill", cwd=repo)
    doc = json.loads(cli("report", "--by", "commit", "--format", "json", cwd=repo).stdout)
    eng = {r["key"]: Decimal(str(r["cost_usd"])) for r in doc["rows"] if r["related"] == ["ENG-2"]}
    rebased = git(repo, "rev-list", "main..eng-2-cache").split()
    assert originals and set(eng) == set(rebased) and not set(eng) & originals
    # the last request is after the rebased tip: open, still ENG-2's
    assert sum(eng.values()) < truth.cost["ENG-2"]


def test_hook_after_backfill_adds_only_new_spend_and_the_reverse_order_gives_the_same_totals(  # type: ignore[no-untyped-def]
        history, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, truth, s = history
    cli("backfill", cwd=repo)
    before = by_issue(repo)
    cli("install", cwd=repo)
    git(repo, "checkout", "-q", "main")
    recent = datetime.now(UTC) - timedelta(minutes=5)
    s.say("s6", "main", recent, "(main)")
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "after the hook"], cwd=repo, check=True,
                   capture_output=True)
    after = by_issue(repo)
    new = sum(truth.cost.values()) - sum(before.values())
    assert new > 0 and after == {**before, "(unattributed)": before["(unattributed)"] + new}
    assert json.loads(cli("backfill", "--format", "json", cwd=repo).stdout)["requests"] == 0
    # The next commit on eng-2-cache closes backfill's open record there, as any open record.
    git(repo, "checkout", "-q", "eng-2-cache")
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "cache stats"], cwd=repo, check=True,
                   capture_output=True)
    assert by_issue(repo) == after
    branches = json.loads(cli("report", "--by", "branch", "--format", "json", cwd=repo).stdout)
    tip = git(repo, "rev-parse", "HEAD")
    assert tip in next(r for r in branches["rows"] if r["key"] == "eng-2-cache")["commits"]
    after = by_issue(repo)

    # The same transcripts, another ledger: the hook first (one more commit), then backfill.
    monkeypatch.setenv("COSTATTR_HOME", str(tmp_path / "second-home"))
    assert os.environ["COSTATTR_HOME"].endswith("second-home")
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "hook first"], cwd=repo, check=True,
                   capture_output=True)
    cli("backfill", cwd=repo)
    reverse = by_issue(repo)
    assert sum(reverse.values()) == sum(after.values()) == sum(truth.cost.values())


def test_dry_run_writes_nothing(history) -> None:  # type: ignore[no-untyped-def]
    repo, truth, _s = history
    dry = json.loads(cli("backfill", "--dry-run", "--format", "json", cwd=repo).stdout)
    assert dry["dry_run"] and Decimal(str(dry["cost_usd"])) == sum(truth.cost.values())
    assert by_issue(repo) == {}
    table = cli("backfill", "--dry-run", cwd=repo).stdout
    assert "would record" in table and "unattributed: branch not in history" in table


def test_a_deleted_branch_is_found_from_its_merge_where_no_reflog_remembers_it(history, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from costattr.gitctx import branch_history

    repo, _truth, _s = history
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))  # a clone's reflog starts at the clone
    mine, theirs = branch_history(repo), branch_history(clone)
    assert mine.evidence["feature/PROJ-1-login"] == "reflog" and theirs.evidence["feature/PROJ-1-login"] == "merged"
    assert theirs.commits["feature/PROJ-1-login"] == mine.commits["feature/PROJ-1-login"]
    assert [c.message.strip() for c in mine.commits["feature/PROJ-1-login"]][-2:] == ["login form", "login api"]


def test_a_codex_session_goes_by_its_sessions_branch(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit_at(repo, at(0), "initial")
    git(repo, "checkout", "-q", "-b", "feature/ABC-9-export")
    rollout = CodexRolloutWriter(env_dirs["codex"], cwd=str(repo), branch="feature/ABC-9-export", start=at(5))
    rollout.turn()
    rollout.token_count()
    rollout.token_count(input=15000, cached=12000, output=700)
    rollout.close()
    commit_at(repo, at(30), "export to CSV")
    git(repo, "checkout", "-q", "main")
    cli("backfill", cwd=repo)
    sessions = json.loads(cli("sessions", "--format", "json", cwd=repo).stdout)
    spent = Decimal(str(sessions["totals"]["cost_usd"]))
    assert spent > 0 and by_issue(repo) == {"ABC-9": spent}


def test_with_a_token_the_prs_whose_head_is_a_branch_get_its_spend(history, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from fake_github import FakeGitHub

    repo, truth, _s = history
    with FakeGitHub() as fake:
        fake.add_pull("acme/app", 12, head_ref="eng-2-cache")
        fake.add_pull("acme/app", 13, head_ref="eng-2-cache", head_repo="someone/fork")  # a fork's branch
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        first = json.loads(cli("backfill", "--format", "json", cwd=repo).stdout)
        asked = [c.query.get("head") for c in fake.calls("GET", r"/pulls$")]
        cli("backfill", cwd=repo)
        again = len(fake.calls("GET", r"/pulls$"))
    # one request per branch the new requests ran on, none once nothing is left to backfill
    assert sorted(asked) == ["acme:eng-2-cache", "acme:feature/PROJ-1-login", "acme:main", "acme:spike/never-pushed"]
    assert again == len(asked) and first["links"] == 2  # PR #12 for s2, and the transcript's pr-link #7
    pr = json.loads(cli("report", "--by", "pr", "--format", "json", cwd=repo).stdout)
    assert {r["key"]: Decimal(str(r["cost_usd"])) for r in pr["rows"]} == {"#12": truth.cost["ENG-2"],
                                                                            "#7": truth.cost["PROJ-1"]}


def test_a_github_that_fails_costs_the_links_not_the_backfill(history, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    repo, truth, _s = history
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong")
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # nothing listens there
    proc = cli("backfill", "--format", "json", cwd=repo)
    assert "pull requests not looked up on GitHub" in proc.stderr and "ghp_wrong" not in proc.stderr
    assert by_issue(repo) == expected(truth)


def _event(session: str, key: str, ts: str, branch: str | None, cost: str = "0.01") -> UsageEvent:
    return UsageEvent("claude", session, key, ts, "claude-sonnet-4-5-20250929", "/src/app", branch, Tokens(1, 2),
                      cost=Decimal(cost))


def test_attribution_is_pure_same_inputs_same_ids_and_the_hooks_second_bound() -> None:
    history = {"feat/ABC-1": [CommitInfo("a" * 40, "2026-10-05T10:00:00Z", "first\n"),
                              CommitInfo("b" * 40, "2026-10-05T11:00:00Z", "second ABC-2\n")]}
    events = {"s": [_event("s", "k1", "2026-10-05T10:00:00.900Z", "feat/ABC-1"),  # in the commit's second
                    _event("s", "k2", "2026-10-05T10:00:01.000Z", "feat/ABC-1"),  # after it: the next commit
                    _event("s", "k3", "2026-10-05T11:30:00.000Z", "feat/ABC-1"),  # after the last: open
                    _event("s", "k4", "2026-10-05T11:30:00.000Z", None)],
              "t": [_event("t", "k5", "2026-10-05T09:00:00.000Z", "gone")]}

    def find(branch: str | None, message: str | None) -> tuple[str | None, tuple[str, ...]]:
        refs = issue_keys.extract(branch, message, None)
        return refs.primary, tuple(refs.related)

    where = Where(repo="acme/app", recorded_at="2026-12-01T00:00:00.000Z")
    one = attribute_history(events, history, find, where, now="2026-12-01T00:00:00.000Z")
    shuffled = {sid: list(reversed(evs)) for sid, evs in reversed(events.items())}
    two = attribute_history(shuffled, history, find, Where(repo="acme/app", recorded_at="2027-01-01T00:00:00.000Z"),
                            now="2027-01-01T00:00:00.000Z")
    assert [r.id for r in one.records] == [r.id for r in two.records]
    got = {(r.session_id, r.state, r.commit and r.commit[0], r.note): (r.requests, r.issue, r.related)
           for r in one.records}
    assert got == {("s", "closed", "a", None): (1, "ABC-1", ()),
                   ("s", "closed", "b", None): (1, "ABC-1", ("ABC-2",)),
                   ("s", "open", None, None): (1, "ABC-1", ()),
                   ("s", "unattributed", None, "no branch recorded"): (1, None, ()),
                   ("t", "unattributed", None, "branch not in history"): (1, None, ())}
    assert all(r.backfilled for r in one.records)
