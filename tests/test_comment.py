"""`costattr comment`: PR spend selection over v2 records, the Markdown body, and the sticky upsert
against a real HTTP server speaking GitHub REST (tests/fake_github.py), through the real PyGithub
client. Ledgers are real: records in the isolated local store (tests/builders.py), or written by
the installed hook on real `git commit`s."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from builders import link, part, rewrite, spend, store_with
from fake_github import FakeGitHub  # tests/ is on sys.path (rootdir conftest)
from helpers_claude import append_claude, claude_line
from helpers_reliability import run_cli

from costattr.cli import main
from costattr.github import describe_reset, is_marked, parse_remote_slug, pr_number_from_event, same_body
from costattr.ledger.records import AnyRecord, SpendRecord, cap
from costattr.ledger.store import LocalStore
from costattr.ledger.view import Spend, visible
from costattr.pr_comment import (
    GITHUB_BODY_LIMIT,
    MARKER,
    MAX_BODY_CHARS,
    CommitMatcher,
    budget_status,
    linked_branches,
    md_escape,
    render_comment,
    repo_slug,
    safe_url,
    select_pr_spend,
    summarise,
    unattributed_spend,
    usd,
)
from costattr.testing import gitrepo

ROOT = Path(__file__).resolve().parent.parent
REPO = "acme/app"
BRANCH = "feature/PROJ-123-payment-retries"
SHA1 = "b6fdb5a" + "1" * 33
SHA2 = "c0ffee0" + "2" * 33
SHA_MAIN = "deadbee" + "3" * 33
SHA_OLD = "0dd0dd0" + "4" * 33
HOSTILE_BRANCH = "x|y`<script>alert(1)</script>](javascript:alert(1))@octocat*_~#1\nnext"
HOSTILE_MESSAGE = "feat: **bold** | pipe <img src=x onerror=alert(1)> [click](javascript:alert(1)) @here\r\n`rm -rf`"
S1 = "3e80164a-aaaa-bbbb-cccc-000000000001"
S2 = "16b3488a-aaaa-bbbb-cccc-000000000002"


# ------------------------------------------------------------------------------------------------
# builders


def rec(
    session: str = S1,
    *,
    branch: str | None = BRANCH,
    commit: str | None = SHA1,
    cost: str = "1.25",
    state: str | None = None,
    issue: str | None = "PROJ-123",
    message: str | None = "feat: add retry policy",
    model: str = "claude-sonnet-4-5-20250929",
    requests: int = 4,
    unpriced: int = 0,
    authoritative: str = "0",
    ts: str = "2026-01-05T10:00:00Z",
    repo: str = REPO,
    tool: str = "claude",
    note: str | None = None,
    closes: Sequence[str] = (),
    prices: str | None = "2026-01-15",
) -> SpendRecord:
    """One spend record with one part; tokens in a fixed 80% cache-hit ratio. The state follows
    from what it is attributed to unless given: a commit closes it, a branch alone leaves it open."""
    if state is None:
        state = "closed" if commit else "open" if branch else "unattributed"
    if state == "unattributed":
        issue = None
    p = part(ts, model, cost=cost, requests=requests, unpriced=unpriced, authoritative=authoritative,
             input=100, output=200, cache_write_5m=100, cache_read=800)
    return spend(session, repo=repo, state=state, branch=branch, commit=commit, issue=issue, message=message,
                 note=note, first_ts=ts, parts=[p], tool=tool, closes=closes, prices=prices)


def pick(records: Iterable[AnyRecord], pr: int = 12, head: str | None = BRANCH, shas: Iterable[str] = (),
         **kw: object) -> list[Spend]:
    """The PR's spend as `costattr comment` selects it: visible records, then the PR's rules."""
    return select_pr_spend(visible(records), pr, head, shas, **kw)  # type: ignore[arg-type]


def ids(items: Iterable[Spend | SpendRecord]) -> list[str]:
    return sorted((x.record if isinstance(x, Spend) else x).id for x in items)


def write_ledger(*records: AnyRecord) -> None:
    store_with(records).close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["comment", *args])
    out, err = capsys.readouterr()
    return code, out, err


def headline_total(body: str) -> str:
    """The PR's total as the comment's first figure shows it (`**$7.52** · cache hit rate ...`)."""
    m = re.search(r"^\*\*(\$[\d,.]+)\*\* · cache hit rate", body, re.M)
    assert m, body
    return m[1]


# ------------------------------------------------------------------------------------------------
# fixtures


def outside_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GitHub Actions variables from the machine running the tests (CI sets them)."""
    for var in ("GITHUB_ACTIONS", "GITHUB_HEAD_REF", "GITHUB_BASE_REF", "GITHUB_EVENT_NAME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA1, SHA2])
        yield server


@pytest.fixture
def gh_env(fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGitHub:
    monkeypatch.chdir(tmp_path)  # not a git repository: default config, the local ledger
    outside_actions(monkeypatch)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    return fake


@pytest.fixture
def pr_ledger() -> None:
    """PR #12's spend is $7.52 (S1: $5.12 on SHA1 and $0.50 on SHA2; S2: $1.90 on SHA2); main's $40
    is not the PR's."""
    write_ledger(
        rec(S1, commit=SHA1, cost="5.12"),
        rec(S1, commit=SHA2, cost="0.5", message="fix: backoff", ts="2026-01-06T10:00:00Z"),
        rec(S2, commit=SHA2, cost="1.90", model="gpt-5", tool="codex"),
        rec("99999999-main-only", branch="main", commit=SHA_MAIN, cost="40.0"),
    )


# ------------------------------------------------------------------------------------------------
# escaping


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "](javascript:alert(1))",
        "[x](javascript:alert(1))",
        "a | b | c",
        "`code` and ```fence```",
        "**bold** _it_ ~~gone~~ $x$",
        "@octocat please look",
        "line1\nline2\r\nline3\u2028line4",
        MARKER,
        "&lt;script&gt; already escaped",
        "trojan \u202eevil\u202c source",
        "\\|escaped pipe",
    ],
)
def test_md_escape_neutralises_hostile_text(hostile: str) -> None:
    out = md_escape(hostile)
    for raw in ("<", ">", "|", "`", "[", "]", "(", ")", "*", "_", "~", "$", "\n", "\r", "\u2028", "\u202e", "\\"):
        assert raw not in out, (hostile, out)
    assert not re.search(r"@[A-Za-z]", out), "an @mention would ping someone"
    assert "<!--" not in out, "user text must never forge our marker"


def test_md_escape_keeps_ordinary_text_readable() -> None:
    assert md_escape("feature/PROJ-123 retry policy") == "feature/PROJ-123 retry policy"
    assert md_escape("@octocat") == "@\u200boctocat"
    assert md_escape("a" * 50, 10) == "a" * 9 + "…"
    assert md_escape("  many   spaces\t\n") == "many spaces"
    assert md_escape("&lt;b&gt;") == "&amp;lt;b&amp;gt;", "entities typed by a user stay literal text"


def test_safe_url_refuses_other_schemes_and_encodes_parentheses() -> None:
    assert safe_url("javascript:alert(1)") is None
    assert safe_url("data:text/html,<script>") is None
    assert safe_url("https://acme.atlassian.net/browse/PROJ-1") == "https://acme.atlassian.net/browse/PROJ-1"
    url = safe_url("https://x.test/a b)(<c>")
    assert url is not None and not set(" ()<>") & set(url)


def _assert_safe_body(body: str) -> None:
    assert body.count(MARKER) == 1 and body.startswith(MARKER)
    for bad in ("<script", "<img", "](javascript", "@octocat", "@here", "@x", "`rm", "**bold**"):
        assert bad not in body, bad
    # Every row of every table has exactly as many cells as its header.
    for block in re.split(r"\n\s*\n", body):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            assert {r.count("|") for r in rows} == {rows[0].count("|")}, block
    # The only HTML is ours.
    assert set(re.findall(r"</?([a-z]+)", body)) <= {"details", "summary", "sub"}


def test_hostile_branch_message_model_and_issue_cannot_break_the_comment() -> None:
    # Every string a developer's machine puts in a record, at the longest a record may hold it, and
    # read back through the store's validation (a record over a cap would be set aside, not shown).
    hostile = rec("sess-1|`x`", branch=cap(HOSTILE_BRANCH * 4, "branch"), message=cap(HOSTILE_MESSAGE * 3, "message"),
                  model="m|<b>@x", issue="<b>@x|", tool="<i>evil|", prices="<script>")
    renamed = rewrite("sess-1|`x`", SHA1, SHA2, branch=hostile.branch, message=HOSTILE_MESSAGE,
                      issue="[x](javascript:1)")
    write_ledger(hostile, renamed, link("sess-1|`x`", hostile.branch or "", 12))
    with LocalStore() as store:
        read = store.read()
    assert read.set_aside.count == 0, read.set_aside.summary()
    selected = pick(read.records.values(), head=HOSTILE_BRANCH, shas=[SHA2])
    assert [s.record.id for s in selected] == [hostile.id]
    body = render_comment(selected, pr_number=12, head_branch=HOSTILE_BRANCH, price_table_date="<script>",
                          issue_url=lambda key: f"javascript:alert('{key}')")
    _assert_safe_body(body)


# ------------------------------------------------------------------------------------------------
# selection


def test_commit_matcher_full_and_prefix() -> None:
    m = CommitMatcher([SHA1, SHA2])
    assert SHA1 in m and SHA1[:7] in m and SHA1[:12].upper() in m
    assert SHA1[:6] not in m, "6 characters are too short to tell commits apart"
    assert SHA_MAIN not in m and None not in m
    assert SHA1 in CommitMatcher([SHA1[:7]]), "a short SHA from the API side matches a full one"


def test_select_by_link_head_branch_and_commit_each_record_once() -> None:
    by_link = rec("a", branch="other", commit=None)
    by_branch = rec("a", branch=BRANCH, commit=None, ts="2026-01-05T11:00:00Z")
    by_commit = rec("a", branch="renamed", commit=SHA2[:7])
    all_rules = rec("a", branch=BRANCH, commit=SHA1)
    unrelated = rec("a", branch="main", commit=SHA_MAIN)
    linked_b = rec("b", branch="elsewhere", commit=None)
    other_pr = rec("b", branch="next-branch", commit=None)
    # `upload --pr` links a session's spend on one branch: b's spend on a third branch stays out
    # even though b is linked to #12 (issue 12's "PR links drift").
    b_elsewhere = rec("b", branch="third-branch", commit=None)
    # Another repository's link to #12 for the same session and branch links nothing here.
    foreign_link = link("c", "wip", 12, repo="other/app")
    c_wip = rec("c", branch="wip", commit=None)
    records = [by_link, by_branch, by_commit, all_rules, unrelated, linked_b, other_pr, b_elsewhere, c_wip,
               link("a", "other", 12), link("a", BRANCH, 12), link("b", "elsewhere", 12), link("b", "elsewhere", 13),
               link("b", "next-branch", 13), foreign_link]
    picked = pick(records, shas=[SHA1, SHA2])
    assert ids(picked) == ids([by_link, by_branch, by_commit, all_rules, linked_b])
    assert len({s.record.id for s in picked}) == len(picked)
    assert {s.record.id: s.prs for s in picked}[linked_b.id] == (12, 13)


def test_an_open_record_closed_into_a_commit_counts_once() -> None:
    opened = rec("a", branch=BRANCH, commit=None, cost="2.00")
    closed = rec("a", branch=BRANCH, commit=SHA1, cost="2.50", closes=[opened.id], ts="2026-01-05T11:00:00Z")
    picked = pick([opened, closed], shas=[SHA1])
    assert ids(picked) == [closed.id]
    assert summarise(picked).totals.cost == Decimal("2.50")


def test_a_rewritten_commit_resolves_to_the_prs_commit() -> None:
    # Spend recorded on SHA_OLD, then amended into SHA2 (the SHA the PR lists): it is the PR's,
    # shown on SHA2 with the amended message and its issue key; the old SHA and issue do not linger.
    amended = rec("a", branch="wip-local", commit=SHA_OLD, issue="PROJ-9", message="wip")
    records = [amended, rewrite("a", SHA_OLD, SHA2, branch="wip-local", message="feat: retries for PROJ-123",
                                issue="PROJ-123")]
    picked = pick(records, head=None, shas=[SHA2])
    assert [(s.record.id, s.commit, s.issue) for s in picked] == [(amended.id, SHA2, "PROJ-123")]
    body = render_comment(picked, pr_number=12)
    assert SHA2[:7] in body and "feat: retries for PROJ-123" in body and "Linked issue: PROJ-123" in body
    assert SHA_OLD[:7] not in body and "PROJ-9" not in body and "wip" not in body
    # A rewrite in another repository says nothing about this one's commits.
    assert pick([amended, rewrite("a", SHA_OLD, SHA2, repo="other/app", branch="wip-local")], head=None,
                shas=[SHA2]) == []


def test_select_ignores_other_repositories_but_keeps_local_ones() -> None:
    mine = rec("mine", repo="Acme/App")
    theirs = rec("theirs", repo="other/app")
    local = rec("local-path", repo="path:/home/dev/src/app")
    # A work tree without a hosted remote is identified by its path, which may end in two names
    # that look like another repository's slug: still kept (hiding spend is worse than showing it).
    local_lookalike = rec("local-lookalike", repo="path:/home/dev/other/app")
    picked = pick([mine, theirs, local, local_lookalike], repos=[REPO])
    assert ids(picked) == ids([mine, local, local_lookalike])
    assert ids(pick([mine, theirs, local])) == ids([mine, theirs, local]), "no repos given: no filter"


def test_fork_pr_from_main_does_not_collect_all_of_main() -> None:
    main_work = rec("main-work", branch="main", commit=SHA_MAIN)
    pr_work = rec("pr-work", branch="main", commit=SHA1)
    picked = pick([main_work, pr_work], head="main", shas=[SHA1], repos=[REPO, "contrib/app"], base_branch="main")
    assert [s.session_id for s in picked] == ["pr-work"]


def test_unattributed_is_the_prs_sessions_spend_tied_to_no_branch() -> None:
    lost = rec("s", branch=None, commit=None, cost="0.4")
    before_base = rec("s", branch=None, commit=None, cost="0.3", note="before --base", ts="2026-01-04T10:00:00Z")
    detached = rec("s", branch="HEAD", commit=SHA_MAIN)  # a commit on a detached HEAD: attributed
    someone_elses = rec("other", branch=None, commit=None)
    records = [rec("s"), lost, before_base, detached, someone_elses]
    spends = visible(records)
    selected = select_pr_spend(spends, 12, BRANCH, [])
    assert [s.session_id for s in selected] == ["s"]
    assert ids(unattributed_spend(spends, selected)) == ids([lost, before_base])
    assert summarise(selected, unattributed_spend(spends, selected)).unattributed.cost == Decimal("0.7")


def test_linked_branches_are_this_repositorys_links_to_the_pr() -> None:
    records = [link("a", "feature/x", 7), link("b", "feature/x", 7), link("c", "feature/y", 7),
               link("a", "feature/z", 8), link("d", "feature/w", 7, repo="other/app"), rec("a")]
    assert linked_branches(records, 7, repos=[REPO]) == ["feature/x", "feature/y"]
    assert linked_branches(records, 7) == ["feature/w", "feature/x", "feature/y"]
    assert linked_branches(records, 9, repos=[REPO]) == []


def test_repo_slug_and_remote_parsing() -> None:
    assert repo_slug("git@github.com:Acme/App.git") == "acme/app"
    assert repo_slug("github.com/acme/app") == "acme/app"
    assert repo_slug("/home/dev/app") is None
    assert parse_remote_slug("https://x-access-token:abc@github.com/acme/app.git\n") == "acme/app"
    assert parse_remote_slug("ssh://git@ghe.example.com:2222/acme/app") == "acme/app"
    assert parse_remote_slug("git@github.com:acme/app.git") == "acme/app"


# ------------------------------------------------------------------------------------------------
# rendering


def test_render_shows_total_first_then_issues_sessions_and_folded_details() -> None:
    records = [
        rec("3e80164a-1111", commit=SHA1, cost="5.12", authoritative="1.0"),
        rec("3e80164a-1111", commit=SHA2, cost="0.5", issue="#42", message="fix: backoff"),
        rec("3e80164a-1111", branch=None, commit=None, cost="0.4"),
        rec("16b3488a-2222", commit=SHA2, cost="1.9", model="mystery-model", unpriced=3, message=None, tool="codex"),
    ]
    spends = visible(records)
    selected = select_pr_spend(spends, 12, BRANCH, [SHA1, SHA2])
    urls = {"PROJ-123": "https://acme.atlassian.net/browse/PROJ-123", "#42": "javascript:alert(1)"}
    body = render_comment(selected, pr_number=12, head_branch=BRANCH, price_table_date="2026-01-15",
                          issue_url=urls.get, unattributed=unattributed_spend(spends, selected))
    lines = body.splitlines()
    assert lines[0] == MARKER
    assert lines[1].startswith("### ") and "PR #12" in lines[1] and BRANCH in lines[1]
    assert lines[3].startswith("**$7.52** · cache hit rate **80.0%**")
    assert "2 sessions" in lines[3] and "2 commits" in lines[3] and "12 requests" in lines[3]
    assert "[PROJ-123](https://acme.atlassian.net/browse/PROJ-123)" in body
    assert "javascript" not in body and "#42" in body  # unsafe link dropped; GitHub links #42 itself
    assert "| `3e80164a` | Claude Code |" in body and "| `16b3488a` | Codex |" in body
    assert body.index("| `3e80164a`") < body.index("| `16b3488a`"), "costliest session first"
    assert "<details><summary>Per commit (2)</summary>" in body
    assert "<details><summary>Per model (2)</summary>" in body
    assert "b6fdb5a" in body and "fix: backoff" in body
    assert "price table of 2026-01-15" in body
    assert "$6.52 estimated" in body and "$1.00 as recorded" in body
    assert "3 requests used models with no known price (mystery-model)" in body
    assert "$0.40 of these sessions' spend (4 requests) is unattributed" in body
    assert len(body) < MAX_BODY_CHARS


def test_render_is_stable_so_unchanged_spend_means_no_edit() -> None:
    records = [rec("s1"), rec("s2", commit=SHA2), link("s1", BRANCH, 12)]
    a = render_comment(pick(records), pr_number=12, head_branch=BRANCH)
    b = render_comment(pick(list(reversed(records))), pr_number=12, head_branch=BRANCH)
    assert a == b


def test_render_stays_under_github_limit_with_5000_records() -> None:
    # Through the real store: 5,000 records written, read back, resolved and selected.
    write_ledger(*[
        rec(f"{i:08x}-session", commit=f"{i:04x}{j:03x}" + "a" * 33, cost=str(Decimal("0.01") * (j + 1)),
            message=cap(HOSTILE_MESSAGE * 3, "message"), model=f"model-{j % 40}-" + "x" * 50,
            ts=f"2026-01-{1 + j % 28:02d}T00:00:00Z")
        for i in range(100) for j in range(50)
    ])
    with LocalStore() as store:
        read = store.read()
    assert read.set_aside.count == 0 and len(read.records) == 5000
    selected = pick(read.records)
    assert len(selected) == 5000
    body = render_comment(selected, pr_number=12, head_branch=BRANCH * 5)
    assert len(body) <= MAX_BODY_CHARS < GITHUB_BODY_LIMIT
    assert re.search(r"…and [\d,]+ more commits not shown \([\d,]+ of 5,000 listed\)", body)
    assert re.search(r"…and [\d,]+ more sessions not shown", body)
    assert body.count("<details>") == body.count("</details>")
    assert headline_total(body) == "$1,275.00"  # 100 sessions × (0.01 + 0.02 + ... + 0.50)
    _assert_safe_body(body)


def test_render_shrinks_tables_to_fit_before_cutting() -> None:
    records = [rec(f"s{i:03d}", commit=f"{i:03x}{j:04x}" + "c" * 33, message="m" * 200)
               for i in range(30) for j in range(20)]
    body = render_comment(pick(records), pr_number=12, max_chars=8000)
    assert len(body) <= 8000
    assert "cut to fit" not in body, "shrinking the tables was enough"
    shown = int(re.search(r"more commits not shown \(([\d,]+) of 600 listed\)", body)[1])  # type: ignore[index]
    assert 1 <= shown < 100
    assert body.rstrip().endswith("</sub>"), "the footer survives"


def test_render_hard_cap_never_exceeded() -> None:
    selected = pick([rec("s", commit=f"{j:07x}" + "b" * 33, message="m" * 200) for j in range(300)])
    for limit in (3000, 1500, 900):
        body = render_comment(selected, pr_number=12, max_chars=limit)
        assert len(body) <= limit and body.startswith(MARKER)
        assert body.count("<details>") == body.count("</details>")
    assert "cut to fit" in body, "the last resort: cut at a line, say so"


def test_render_without_spend_says_so() -> None:
    body = render_comment([], pr_number=7)
    assert body.startswith(MARKER) and "No AI-assistant spend found" in body


# ------------------------------------------------------------------------------------------------
# GitHub plumbing (pure parts)


def test_marker_and_body_comparison() -> None:
    assert is_marked(MARKER + "\nbody") and is_marked("  " + MARKER)
    assert not is_marked("> " + MARKER + "\n\nI disagree") and not is_marked(None)
    assert same_body("a\r\nb  \n", "a\nb")


def test_describe_reset() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert describe_reset(str(int(now.timestamp()) + 600), now) == "at 2026-01-01 12:10:00 UTC (in 10 min)"
    assert "did not say" in describe_reset(None, now)


def test_pr_number_from_event(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    for event, number in [({"pull_request": {"number": 5}, "number": 5}, 5), ({"number": 6}, 6),
                          ({"workflow_run": {"pull_requests": [{"number": 7}]}}, 7), ({"push": {}}, None)]:
        path.write_text(json.dumps(event))
        assert pr_number_from_event(path) == number


# ------------------------------------------------------------------------------------------------
# end to end against the fake GitHub


def test_fake_github_paginates_like_github(fake: FakeGitHub) -> None:
    """The fake itself: 30 per page by default, `Link: rel="next"` followed by plain PyGithub."""
    from github import Auth, Github

    for i in range(35):
        fake.add_comment(REPO, 12, f"c{i}")
    gh = Github(auth=Auth.Token(fake.token), base_url=fake.url, retry=None)
    bodies = [c.body for c in gh.get_repo(REPO).get_pull(12).get_issue_comments()]
    gh.close()
    assert bodies == [f"c{i}" for i in range(35)]
    pages = [r.query.get("page") for r in fake.calls("GET", r"/issues/12/comments$")]
    assert pages == [None, "2"]


def test_first_run_creates_second_run_edits_in_place_behind_many_comments(
    gh_env: FakeGitHub, pr_ledger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = gh_env
    quoted = fake.add_comment(REPO, 12, MARKER + "\nI copied the bot's marker", login="mallory")
    bot_other = fake.add_comment(REPO, 12, "Coverage: 93%", login="coverage[bot]", user_type="Bot")
    for i in range(135):  # ours will land on page 2 (100 per page)
        fake.add_comment(REPO, 12, f"review comment {i}", login=f"dev{i % 3}")
    before = {c.id: c.body for c in fake.comments(REPO, 12)}

    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0, err
    assert "created the cost comment on PR #12" in out
    posts = fake.calls("POST")
    assert len(posts) == 1
    ours = fake.comments(REPO, 12)[-1]
    assert ours.body.startswith(MARKER) and "$7.52" in ours.body and "$40" not in ours.body
    assert any(r.query.get("page") == "2" for r in fake.calls("GET", r"/issues/12/comments$")), "walked every page"

    # New spend on the branch, not committed yet (an open record): the same comment is edited.
    opened = rec("new-session", commit=None, cost="2.0")
    write_ledger(opened)
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0, err
    assert "updated the cost comment" in out
    assert len(fake.calls("POST")) == 1
    patches = fake.calls("PATCH")
    assert [p.path for p in patches] == [f"/repos/{REPO}/issues/comments/{ours.id}"]
    after = fake.comments(REPO, 12)
    assert len(after) == len(before) + 1
    assert "$9.52" in after[-1].body and "_not committed yet_" in after[-1].body
    for c in after[:-1]:  # nobody else's comment changed, the copied marker included
        assert c.body == before[c.id]
    assert {quoted, bot_other} <= {c.id for c in after}

    # Its commit lands (a closed record absorbing the open one): edited again, the spend moves
    # to the commit and is counted once.
    write_ledger(rec("new-session", commit=SHA2, cost="2.0", closes=[opened.id], ts="2026-01-07T10:00:00Z"))
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0 and "updated the cost comment" in out, err
    body = fake.comments(REPO, 12)[-1].body
    assert headline_total(body) == "$9.52" and "_not committed yet_" not in body
    assert [p.path for p in fake.calls("PATCH")] == [f"/repos/{REPO}/issues/comments/{ours.id}"] * 2

    # Nothing changed: no write at all.
    code, out, _ = cli(capsys, "--pr", "12")
    assert code == 0 and "already up to date" in out
    assert len(fake.calls("PATCH")) == 2 and len(fake.calls("POST")) == 1


def test_pat_user_edits_own_comment_but_not_anothers_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pr_ledger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeGitHub(token="ghp_PERSONALTOKEN987654321", viewer="alice", viewer_type="User") as fake:
        fake.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA1])
        mallory = fake.add_comment(REPO, 12, MARKER + "\nold numbers, copied", login="mallory")
        alice = fake.add_comment(REPO, 12, MARKER + "\nold numbers", login="alice")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GH_TOKEN", fake.token)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        code, out, err = cli(capsys, "--pr", "12", "--repo", REPO)
        assert code == 0, err
        assert "updated" in out
        bodies = {c.id: c.body for c in fake.comments(REPO, 12)}
        assert bodies[mallory] == MARKER + "\nold numbers, copied"
        assert "$" in bodies[alice] and len(bodies) == 2
        assert fake.calls("GET", r"^/user$"), "the token's own login is checked"


def test_ghes_style_api_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pr_ledger: None,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGitHub(prefix="/api/v3") as fake:
        fake.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA1])
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        code, out, err = cli(capsys, "--pr", "12")
        assert code == 0, err
        assert len(fake.comments(REPO, 12)) == 1


def test_repo_from_origin_remote(gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 pr_ledger: None, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "clone"
    work.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "remote", "add", "origin", "git@github.com:acme/app.git"], cwd=work, check=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("GITHUB_REPOSITORY")
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0, err
    assert len(gh_env.comments(REPO, 12)) == 1


def test_pr_number_from_github_event_path(gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          pr_ledger: None, capsys: pytest.CaptureFixture[str]) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "number": 12, "pull_request": {"number": 12}}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    code, out, err = cli(capsys)
    assert code == 0, err
    assert "PR #12" in out and len(gh_env.comments(REPO, 12)) == 1

    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    code, _, err = cli(capsys, "--strict")
    assert code == 1 and "names no pull request" in err


def test_no_spend_posts_nothing(gh_env: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--pr", "12")
    assert code == 0 and "no comment posted" in out
    assert not gh_env.calls("POST")


def test_dry_run_without_token_prints_markdown_and_calls_nobody(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, pr_ledger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("GITHUB_HEAD_REF", BRANCH)
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0, err
    assert out.startswith(MARKER) and "$7.52" in out
    assert "no GitHub token" in err
    assert gh_env.requests == []


def test_dry_run_without_token_takes_the_prs_links_over_any_branch(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # #12 linked on two branches (two `upload --pr 12`): the links alone select its spend, and no
    # branch is named as the head; an unlinked branch's spend stays out.
    monkeypatch.delenv("GITHUB_TOKEN")
    write_ledger(rec(S1, branch="feat-a", commit=SHA1, cost="1.00"), rec(S2, branch="feat-b", commit=None, cost="2.00"),
                 rec(S2, branch="feat-c", commit=SHA2, cost="4.00"), link(S1, "feat-a", 12), link(S2, "feat-b", 12))
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0, err
    assert headline_total(out) == "$3.00" and "feat-" not in out.splitlines()[1]
    assert "selecting spend linked to #12 (set GITHUB_TOKEN" in err
    assert gh_env.requests == []


def test_dry_run_with_token_reads_but_never_writes(gh_env: FakeGitHub, pr_ledger: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0, err
    assert out.startswith(MARKER)
    assert gh_env.requests and all(r.method == "GET" for r in gh_env.requests)


BUDGETS_TOML = f"""[budgets]
day = 10
week = 100
month = 20
[budgets.issue]
PROJ-123 = 50
[budgets.branch]
"{BRANCH}" = 5
"""


def budget_rows(body: str) -> dict[str, list[str]]:
    """The budget table: label -> [spent, limit, status]."""
    block = body[body.index("**Budgets**"):].split("\n\n")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]
    return {r[0]: r[1:] for r in rows}


def test_budgets_crossed_by_the_prs_spend_are_shown(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pr_ledger: None,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: `[budgets]` are "for reports and PR comments to compare against". The issue's
    budget is compared with all of the issue's spend ($7.52 of the PR + $40 on main), the branch's
    with all of the head branch's, a day's with all of that day's; another repository's spend on
    the same issue and branch counts for none of them."""
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("GITHUB_REPOSITORY")
    monkeypatch.setenv("GITHUB_HEAD_REF", BRANCH)
    write_ledger(rec("elsewhere", repo="other/app", commit=SHA_OLD, cost="100"))
    bodies = {}
    for name, config in (("plain", None), ("budgets", BUDGETS_TOML)):
        work = gitrepo.make_repo(tmp_path / name, origin="git@github.com:acme/app.git")
        if config:
            (work / ".costattr.toml").write_text(config)
        monkeypatch.chdir(work)
        code, out, err = cli(capsys, "--pr", "12", "--dry-run")
        assert code == 0, err
        bodies[name] = out
    body = bodies["budgets"]
    assert headline_total(body) == "$7.52"
    assert "**Budgets** (`[budgets]` in the repository's costattr config) · ⚠️ 3 of 5 over" in body
    assert budget_rows(body) == {
        "Issue PROJ-123, all its spend": ["$47.52", "$50.00", "within (95%)"],
        f"Branch {BRANCH}, all its spend": ["$7.52", "$5.00", "⚠️ **over** by $2.52"],
        "Day 2026-01-05 UTC, all spend that day": ["$47.02", "$10.00", "⚠️ **over** by $37.02"],
        "Week 2026-01-05 (W02) UTC, all spend that week": ["$47.52", "$100.00", "within (48%)"],
        "Month 2026-01 UTC, all spend that month": ["$47.52", "$20.00", "⚠️ **over** by $27.52"],
    }
    assert "2026-01-06" not in body, "a day within its budget is not listed when another is over"
    # The budgets are a section of their own: the rest of the comment is what it is without them.
    assert re.sub(r"\*\*Budgets\*\*.*?\n\n.*?\n\n", "", body, flags=re.S) == bodies["plain"]
    assert "Budgets" not in bodies["plain"]


def test_periods_within_budget_show_the_busiest_one() -> None:
    records = [rec("a", commit=SHA1, cost="1.00", ts="2026-01-05T10:00:00Z"),
               rec("a", commit=SHA2, cost="3.00", ts="2026-01-07T10:00:00Z"),
               rec("b", branch="main", commit=SHA_MAIN, cost="2.00", ts="2026-01-07T11:00:00Z")]
    spends = visible(records)
    selected = select_pr_spend(spends, 12, BRANCH, [])
    lines = budget_status(selected, spends, lambda by, key: Decimal(6) if by == "day" else None)
    assert [(x.kind, x.key, x.spent, x.over, x.busiest_of) for x in lines] == [
        ("day", "2026-01-07", Decimal("5.00"), False, 2)]
    body = render_comment(selected, pr_number=12, budgets=lines)
    assert "| Day 2026-01-07 UTC, all spend that day (the busiest of the 2 days this PR spent in) | $5.00 |" \
           " $6.00 | within (83%) |" in body and "· all within" in body
    assert budget_status(selected, spends, lambda by, key: None) == [], "no budget set: no section"


def test_many_days_over_budget_are_counted_not_all_listed() -> None:
    records = [rec("a", commit=f"{d:07x}" + "e" * 33, cost="2", ts=f"2026-01-{d:02d}T10:00:00Z") for d in range(1, 11)]
    spends = visible(records)
    lines = budget_status(spends, spends, lambda by, key: Decimal(1) if by == "day" else None)
    assert [x.key for x in lines] == [f"2026-01-{d:02d}" for d in range(1, 6)]
    body = render_comment(spends, pr_number=12, budgets=lines)
    assert "⚠️ 10 of 10 over" in body and "_…and 5 more days over budget" in body


def _scope_ledger(work: Path) -> None:
    """PR #12's branch in three repositories: this one ($1.25), another on GitHub ($100, linked to
    a #12 of its own), and a repository without a remote elsewhere on the machine ($10)."""
    write_ledger(rec("mine", commit=SHA1, cost="1.25"),
                 rec("theirs", repo="other/app", commit=None, cost="100"), link("theirs", BRANCH, 12, repo="other/app"),
                 rec("local", repo=f"path:{work.parent / 'scratch'}", commit=None, cost="10"))


def test_inside_a_repository_only_its_spend_counts(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: the local ledger holds every repository of the machine; inside one, the PR comment
    is that repository's spend only (records whose `repo` is its id), posted or dry run."""
    work = gitrepo.make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    _scope_ledger(work)
    monkeypatch.chdir(work)
    monkeypatch.delenv("GITHUB_REPOSITORY")
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0, err
    assert headline_total(gh_env.comments(REPO, 12)[-1].body) == "$1.25"
    assert "counting only the spend of acme/app; 3 records of other repositories in the ledger left out" in err

    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("GITHUB_HEAD_REF", BRANCH)
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0 and headline_total(out) == "$1.25", err

    # Outside any repository (CI without a checkout), everything the ledger holds for the branch.
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0 and headline_total(out) == "$111.25", err


def test_a_repository_without_a_remote_counts_its_own_spend(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = gitrepo.make_repo(tmp_path / "scratch")  # `path:` + its work tree is its id
    _scope_ledger(tmp_path / "app")
    monkeypatch.chdir(work)
    for var in ("GITHUB_REPOSITORY", "GITHUB_TOKEN"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("GITHUB_HEAD_REF", BRANCH)
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0 and headline_total(out) == "$10.00", err


def test_a_fork_prs_head_repository_counts_too(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The contributor's records name their fork; the PR says the fork is its head repository.
    gh_env.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA1], head_repo="contrib/app")
    work = gitrepo.make_repo(tmp_path / "app", origin="https://github.com/acme/app")
    _scope_ledger(work)
    write_ledger(rec("fork", repo="Contrib/App", commit=None, cost="2.00"))
    monkeypatch.chdir(work)
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0 and headline_total(out) == "$3.25", err


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_comment_without_pr_outside_actions_exits_1(
    gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    extra: list[str]
) -> None:
    """Issue 15: it exited 0 locally. Not saying which PR is the user's mistake to fix, --strict or
    not; an Actions event that names no PR (a push) still never fails the build."""
    code, out, err = cli(capsys, *extra)
    assert code == 1
    assert "which pull request? pass --pr N" in err and "not failing the build" not in err
    assert gh_env.requests == []

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    code, out, err = cli(capsys, *extra)
    assert code == 0 and "the push event names no pull request" in err and "not failing the build" in err


def _ago(minutes: int) -> str:
    """A transcript timestamp `minutes` before now: the hook closes what was spent before the commit."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _report_pr_cost(repo: Path, pr: int) -> Decimal:
    proc = run_cli("report", "--by", "pr", "--format", "json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {r["key"]: Decimal(str(r["cost_usd"])) for r in json.loads(proc.stdout)["rows"]}[f"#{pr}"]


def test_pr_total_does_not_move_after_commits_on_another_branch(
    env_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, "PR links drift": `upload --pr 7` on feature/ABC-1-a, then the same session (and
    another) commits on feature/ABC-2-b. The installed hook records everything; PR #7's comment must
    show the same total, dry run or posted, whichever branch is checked out."""
    outside_actions(monkeypatch)
    repo = gitrepo.make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    gitrepo.commit(repo, "initial", {"README.md": "app\n"})
    assert run_cli("install", cwd=repo).returncode == 0
    monkeypatch.chdir(repo)
    projects, cwd = env_dirs["claude"] / "projects", str(repo)

    gitrepo.git(repo, "checkout", "-q", "-b", "feature/ABC-1-a")
    append_claude(projects, "sess-a", [claude_line("sess-a", cwd, "feature/ABC-1-a", _ago(50), out=200_000),
                                       claude_line("sess-a", cwd, "feature/ABC-1-a", _ago(45), out=100_000)])
    first = gitrepo.commit(repo, "ABC-1: first cut", {"a.py": "a = 1\n"})  # fires the installed hook

    # Not linked yet: a dry run takes the branch checked out here.
    code, unlinked, err = cli(capsys, "--pr", "7", "--dry-run")
    assert code == 0 and "or made on branch feature/ABC-1-a (checked out here)" in err, err

    up = run_cli("upload", "--pr", "7", cwd=repo)
    assert up.returncode == 0 and "linked PR #7" in up.stdout, up.stdout + up.stderr
    truth = _report_pr_cost(repo, 7)
    assert truth > Decimal(4)  # 300k output tokens of Sonnet, and nothing else
    code, before, err = cli(capsys, "--pr", "7", "--dry-run")
    assert code == 0, err
    assert headline_total(before) == headline_total(unlinked) == usd(truth)
    assert first[:7] in before and "ABC-1: first cut" in before

    with FakeGitHub() as fake:
        fake.add_pull(REPO, 7, head_ref="feature/ABC-1-a", commits=[first])
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        code, out, err = cli(capsys, "--pr", "7")
        assert code == 0 and "created the cost comment on PR #7" in out, err
        posted = fake.comments(REPO, 7)[-1].body
        assert headline_total(posted) == usd(truth)

        # The same session moves on to another branch, a second session joins it, and it commits.
        gitrepo.git(repo, "checkout", "-q", "-b", "feature/ABC-2-b")
        append_claude(projects, "sess-a", [claude_line("sess-a", cwd, "feature/ABC-2-b", _ago(30), out=150_000)])
        append_claude(projects, "sess-b", [claude_line("sess-b", cwd, "feature/ABC-2-b", _ago(25), out=120_000)])
        second = gitrepo.commit(repo, "ABC-2: other work", {"b.py": "b = 1\n"})

        code, out, err = cli(capsys, "--pr", "7")
        assert code == 0 and "already up to date" in out, err
        assert fake.comments(REPO, 7)[-1].body == posted and not fake.calls("PATCH")

        monkeypatch.delenv("GITHUB_TOKEN")
        code, after, err = cli(capsys, "--pr", "7", "--dry-run")
    assert code == 0 and "or made on branch feature/ABC-1-a (linked by `upload --pr`)" in err, err
    assert after == before
    assert second[:7] not in after and "ABC-2" not in after
    assert _report_pr_cost(repo, 7) == truth
    # The other branch's spend is recorded, just not PR #7's.
    proc = run_cli("report", "--by", "branch", "--format", "json", cwd=repo)
    branches = {r["key"]: Decimal(str(r["cost_usd"])) for r in json.loads(proc.stdout)["rows"]}
    assert branches["feature/ABC-2-b"] > Decimal(3) and branches["feature/ABC-1-a"] == truth


# ------------------------------------------------------------------------------------------------
# errors: clear, token-free, exit 0 unless --strict


def _all_output_and_bodies(fake: FakeGitHub, *texts: str) -> str:
    return "\n".join([*texts, *(r.body for r in fake.requests)])


@pytest.mark.parametrize("strict", [False, True])
def test_bad_token(gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, pr_ledger: None,
                   capsys: pytest.CaptureFixture[str], strict: bool) -> None:
    wrong = "ghs_WRONGTOKEN_abcdefghijklmnop"
    monkeypatch.setenv("GITHUB_TOKEN", wrong)
    code, out, err = cli(capsys, "--pr", "12", *(["--strict"] if strict else []))
    assert code == (1 if strict else 0)
    assert "GITHUB_TOKEN was rejected" in err and "401" in err
    assert ("not failing the build" in err) is not strict
    assert wrong not in _all_output_and_bodies(gh_env, out, err)
    assert not gh_env.comments(REPO, 12)


def test_gh_token_named_in_message(gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("GH_TOKEN", "gho_nope_nope_nope")
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0 and "GH_TOKEN was rejected" in err and "gho_nope_nope_nope" not in out + err


@pytest.mark.parametrize("strict", [False, True])
def test_forbidden_write_names_permission_and_fork_case(gh_env: FakeGitHub, pr_ledger: None,
                                                        capsys: pytest.CaptureFixture[str], strict: bool) -> None:
    gh_env.mode = "forbidden"
    code, out, err = cli(capsys, "--pr", "12", *(["--strict"] if strict else []))
    assert code == (1 if strict else 0)
    assert "403" in err and "pull-requests: write" in err
    assert "fork" in err and "workflow_run" in err
    assert gh_env.token not in out + err


@pytest.mark.parametrize(("args", "expected"), [
    (["--pr", "99"], "pull request #99 not found in acme/app (404)"),
    (["--pr", "12", "--repo", "acme/nope"], "repository acme/nope not found"),
])
def test_not_found(gh_env: FakeGitHub, pr_ledger: None, capsys: pytest.CaptureFixture[str],
                   args: list[str], expected: str) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 0 and expected in err
    code, _, err = cli(capsys, *args, "--strict")
    assert code == 1 and expected in err


def test_rate_limit_says_when_it_resets(gh_env: FakeGitHub, pr_ledger: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    gh_env.mode = "rate_limited"
    reset = dt.datetime.fromtimestamp(gh_env.rate_limit_reset, tz=dt.UTC)
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0
    assert "rate limit exceeded" in err and f"resets at {reset:%Y-%m-%d %H:%M:%S} UTC" in err
    assert len(gh_env.requests) == 1, "no retry loop sleeping through the limit"
    code, _, _ = cli(capsys, "--pr", "12", "--strict")
    assert code == 1


@pytest.mark.parametrize("strict", [False, True])
def test_missing_token(gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str], strict: bool) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    code, _, err = cli(capsys, "--pr", "12", *(["--strict"] if strict else []))
    assert code == (1 if strict else 0) and "no GitHub token" in err
    assert gh_env.requests == []


def test_actions_annotation(gh_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    gh_env.mode = "forbidden"
    write_ledger(rec("s"))
    code, out, _ = cli(capsys, "--pr", "12")
    assert code == 0
    assert re.search(r"^::warning title=costattr comment::.*pull-requests: write", out, re.M)


def test_token_never_in_output_or_request_bodies(gh_env: FakeGitHub, pr_ledger: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    texts = []
    for mode in (None, "forbidden", "rate_limited"):
        gh_env.mode = mode
        for extra in ([], ["--strict"], ["--dry-run"]):
            code, out, err = cli(capsys, "--pr", "12", *extra)
            texts += [out, err]
    gh_env.mode = None
    blob = _all_output_and_bodies(gh_env, *texts)
    assert gh_env.token not in blob
    assert any(r.body for r in gh_env.requests), "the comment bodies were checked too"


# ------------------------------------------------------------------------------------------------
# the example workflow


def test_example_workflow_parses_with_the_needed_permissions() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "github-actions-costattr.yml").read_text())
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert sorted(on["pull_request"]["types"]) == ["opened", "reopened", "synchronize"]
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = "\n".join(str(s.get("run", "")) for s in steps)
    assert "git fetch origin 'refs/notes/costattr:refs/notes/costattr' || true" in runs
    assert 'pip install "git+${{ vars.COSTATTR_GIT_URL }}@v0.2.0"' in runs  # the README's install line, pinned
    assert "costattr comment --pr ${{ github.event.pull_request.number }}" in runs
    comment_step = next(s for s in steps if "costattr comment" in str(s.get("run", "")))
    assert comment_step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert comment_step["env"]["COSTATTR_API_KEY"] == "${{ secrets.COSTATTR_API_KEY }}"
    text = (ROOT / "examples" / "github-actions-costattr.yml").read_text()
    assert "workflow_run" in text and "fork" in text and "COSTATTR_LEDGER" in text
