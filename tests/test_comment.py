"""`costattr comment`: PR spend selection, the Markdown body, and the sticky upsert against a real
HTTP server speaking GitHub REST (tests/fake_github.py), through the real PyGithub client."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fake_github import FakeGitHub  # tests/ is on sys.path (rootdir conftest)

from costattr.cli import main
from costattr.github import describe_reset, is_marked, parse_remote_slug, pr_number_from_event, same_body
from costattr.ledger import JsonLedger
from costattr.models import LedgerEntry, ModelUsage, Segment, TokensModel
from costattr.pr_comment import (
    GITHUB_BODY_LIMIT,
    MARKER,
    MAX_BODY_CHARS,
    CommitMatcher,
    md_escape,
    render_comment,
    repo_slug,
    safe_url,
    select_pr_segments,
    unattributed_segments,
)

ROOT = Path(__file__).resolve().parent.parent
REPO = "acme/app"
BRANCH = "feature/PROJ-123-payment-retries"
SHA1 = "b6fdb5a" + "1" * 33
SHA2 = "c0ffee0" + "2" * 33
SHA_MAIN = "deadbee" + "3" * 33
HOSTILE_BRANCH = "x|y`<script>alert(1)</script>](javascript:alert(1))@octocat*_~#1\nnext"
HOSTILE_MESSAGE = "feat: **bold** | pipe <img src=x onerror=alert(1)> [click](javascript:alert(1)) @here\r\n`rm -rf`"


# ------------------------------------------------------------------------------------------------
# builders


def seg(
    branch: str | None = BRANCH,
    commit: str | None = SHA1,
    cost: float = 1.25,
    *,
    prs: tuple[int, ...] = (),
    issue: str | None = "PROJ-123",
    message: str | None = "feat: add retry policy",
    model: str = "claude-sonnet-4-5-20250929",
    requests: int = 4,
    unpriced: int = 0,
    authoritative: float = 0.0,
    ts: str = "2026-01-05T10:00:00Z",
    note: str | None = None,
) -> Segment:
    tokens = TokensModel(input=100, output=200, cache_write_5m=100, cache_read=800)
    return Segment(
        branch=branch, commit=commit, issue=issue, prs=list(prs), commit_message=message, tokens=tokens,
        cost_usd=cost, requests=requests, unpriced_requests=unpriced, authoritative_usd=authoritative,
        first_ts=ts, last_ts=ts, note=note,
        models={model: ModelUsage(requests=requests, cost_usd=cost, unpriced_requests=unpriced, tokens=tokens)},
    )


def entry(sid: str, *segments: Segment, tool: str = "claude", prs: tuple[int, ...] = (), repo: str | None = REPO,
          price_date: str | None = "2026-01-15", branch: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        session_id=sid, tool=tool, prs=list(prs), repo=repo, segments=list(segments), updated_at=1.0, branch=branch,
        cost_usd=sum(s.cost_usd for s in segments), price_table_date=price_date,
    )


def write_ledger(*entries: LedgerEntry) -> None:
    JsonLedger().upsert(entries)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["comment", *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("|")]


# ------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA1, SHA2])
        yield server


@pytest.fixture
def gh_env(fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGitHub:
    monkeypatch.chdir(tmp_path)  # not a git repository: default config, JSON ledger
    for var in ("GITHUB_ACTIONS", "GITHUB_HEAD_REF", "GITHUB_BASE_REF", "GITHUB_EVENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    return fake


@pytest.fixture
def pr_ledger() -> None:
    write_ledger(
        entry("3e80164a-aaaa-bbbb-cccc-000000000001", seg(commit=SHA1, cost=5.12),
              seg(commit=SHA2, cost=0.5, message="fix: backoff", ts="2026-01-06T10:00:00Z")),
        entry("16b3488a-aaaa-bbbb-cccc-000000000002", seg(commit=SHA2, cost=1.90, model="gpt-5"), tool="codex"),
        entry("99999999-main-only", seg(branch="main", commit=SHA_MAIN, cost=40.0)),
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


def test_hostile_branch_and_message_cannot_break_the_comment() -> None:
    hostile = entry("sess-1", seg(branch=HOSTILE_BRANCH, message=HOSTILE_MESSAGE, model="m|<b>@x", prs=(12,)))
    selected = select_pr_segments([hostile], 12, HOSTILE_BRANCH, [])
    body = render_comment(selected, pr_number=12, head_branch=HOSTILE_BRANCH)
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


# ------------------------------------------------------------------------------------------------
# selection


def test_commit_matcher_full_and_prefix() -> None:
    m = CommitMatcher([SHA1, SHA2])
    assert SHA1 in m and SHA1[:7] in m and SHA1[:12].upper() in m
    assert SHA1[:6] not in m, "6 characters are too short to tell commits apart"
    assert SHA_MAIN not in m and None not in m
    assert SHA1 in CommitMatcher([SHA1[:7]]), "a short SHA from the API side matches a full one"


def test_select_by_pr_branch_and_commit_each_segment_once() -> None:
    by_seg_pr = seg(branch="other", commit=None, prs=(12,))
    by_entry_pr = seg(branch="elsewhere", commit=None)
    other_pr = seg(branch="next-branch", commit=None, prs=(13,))
    by_branch = seg(branch=BRANCH, commit=None)
    by_commit = seg(branch="renamed", commit=SHA2[:7])
    all_rules = seg(branch=BRANCH, commit=SHA1, prs=(12,))
    unrelated = seg(branch="main", commit=SHA_MAIN)
    entries = {
        "a": entry("a", by_seg_pr, by_branch, by_commit, all_rules, unrelated),
        # `upload --pr` links the entry's branch (where the session was when it was linked)
        "b": entry("b", by_entry_pr, other_pr, prs=(12, 13), branch="elsewhere"),
    }
    picked = [s for _, s in select_pr_segments(entries, 12, BRANCH, [SHA1, SHA2])]
    assert picked == [by_seg_pr, by_branch, by_commit, all_rules, by_entry_pr]
    assert len({id(s) for s in picked}) == len(picked)


def test_select_ignores_other_repositories_but_keeps_unknown_ones() -> None:
    entries = [
        entry("mine", seg(), repo="https://github.com/Acme/App.git"),
        entry("theirs", seg(), repo="other/app"),
        entry("unknown", seg(), repo=None),
        entry("local-path", seg(), repo="/home/dev/src/app"),
    ]
    picked = {e.session_id for e, _ in select_pr_segments(entries, 12, BRANCH, [], repos=[REPO])}
    assert picked == {"mine", "unknown", "local-path"}


def test_fork_pr_from_main_does_not_collect_all_of_main() -> None:
    entries = [entry("main-work", seg(branch="main", commit=SHA_MAIN)),
               entry("pr-work", seg(branch="main", commit=SHA1))]
    picked = select_pr_segments(entries, 12, "main", [SHA1], repos=[REPO, "contrib/app"], base_branch="main")
    assert [e.session_id for e, _ in picked] == ["pr-work"]


def test_unattributed_is_branchless_spend_of_the_prs_sessions() -> None:
    lost = seg(branch=None, commit=None, cost=0.4)
    detached = seg(branch=None, commit=SHA_MAIN)
    entries = [entry("s", seg(), lost, detached), entry("other", seg(branch=None, commit=None))]
    selected = select_pr_segments(entries, 12, BRANCH, [])
    assert unattributed_segments(entries, selected) == [(entries[0], lost)]


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
    entries = [
        entry("3e80164a-1111", seg(commit=SHA1, cost=5.12, authoritative=1.0),
              seg(commit=SHA2, cost=0.5, issue="#42", message="fix: backoff"),
              seg(branch=None, commit=None, cost=0.4)),
        entry("16b3488a-2222", seg(commit=SHA2, cost=1.9, model="mystery-model", unpriced=3, message=None),
              tool="codex"),
    ]
    selected = select_pr_segments(entries, 12, BRANCH, [SHA1, SHA2])
    urls = {"PROJ-123": "https://acme.atlassian.net/browse/PROJ-123", "#42": "javascript:alert(1)"}
    body = render_comment(selected, pr_number=12, head_branch=BRANCH, price_table_date="2026-01-15",
                          issue_url=urls.get, unattributed=unattributed_segments(entries, selected))
    lines = body.splitlines()
    assert lines[0] == MARKER
    assert lines[1].startswith("### ") and "PR #12" in lines[1] and BRANCH in lines[1]
    assert lines[3].startswith("**$7.52** · cache hit rate **80.0%**")
    assert "2 sessions" in lines[3] and "2 commits" in lines[3]
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
    assert "$0.40" in body and "unattributed" in body
    assert len(body) < MAX_BODY_CHARS


def test_render_is_stable_so_unchanged_spend_means_no_edit() -> None:
    entries = [entry("s1", seg()), entry("s2", seg(commit=SHA2))]
    a = render_comment(select_pr_segments(entries, 12, BRANCH, []), pr_number=12, head_branch=BRANCH)
    b = render_comment(select_pr_segments(list(reversed(entries)), 12, BRANCH, []), pr_number=12, head_branch=BRANCH)
    assert a == b


def test_render_stays_under_github_limit_with_5000_segments() -> None:
    entries = [
        entry(f"{i:08x}-session", *[
            seg(commit=f"{i:04x}{j:03x}" + "a" * 33, cost=0.01 * (j + 1), message=HOSTILE_MESSAGE * 3,
                model=f"model-{j % 40}-" + "x" * 50, ts=f"2026-01-{1 + j % 28:02d}T00:00:00Z")
            for j in range(50)
        ])
        for i in range(100)
    ]
    selected = select_pr_segments(entries, 12, BRANCH, [])
    assert len(selected) == 5000
    body = render_comment(selected, pr_number=12, head_branch=BRANCH * 5)
    assert len(body) <= MAX_BODY_CHARS < GITHUB_BODY_LIMIT
    assert re.search(r"…and [\d,]+ more commits not shown \([\d,]+ of 5,000 listed\)", body)
    assert re.search(r"…and [\d,]+ more sessions not shown", body)
    assert body.count("<details>") == body.count("</details>")


def test_render_shrinks_tables_to_fit_before_cutting() -> None:
    entries = [entry(f"s{i:03d}", *[seg(commit=f"{i:03x}{j:04x}" + "c" * 33, message="m" * 200) for j in range(20)])
               for i in range(30)]
    body = render_comment(select_pr_segments(entries, 12, BRANCH, []), pr_number=12, max_chars=8000)
    assert len(body) <= 8000
    assert "cut to fit" not in body, "shrinking the tables was enough"
    shown = int(re.search(r"more commits not shown \(([\d,]+) of 600 listed\)", body)[1])  # type: ignore[index]
    assert 1 <= shown < 100
    assert body.rstrip().endswith("</sub>"), "the footer survives"


def test_render_hard_cap_never_exceeded() -> None:
    entries = [entry("s", *[seg(commit=f"{j:07x}" + "b" * 33, message="m" * 200) for j in range(300)])]
    selected = select_pr_segments(entries, 12, BRANCH, [])
    for cap in (3000, 1500, 900):
        body = render_comment(selected, pr_number=12, max_chars=cap)
        assert len(body) <= cap and body.startswith(MARKER)
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

    # New spend on the branch: the same comment is edited, nothing is posted.
    write_ledger(entry("new-session", seg(commit=None, cost=2.0)))
    code, out, err = cli(capsys, "--pr", "12")
    assert code == 0, err
    assert "updated the cost comment" in out
    assert len(fake.calls("POST")) == 1
    patches = fake.calls("PATCH")
    assert [p.path for p in patches] == [f"/repos/{REPO}/issues/comments/{ours.id}"]
    after = fake.comments(REPO, 12)
    assert len(after) == len(before) + 1
    assert "$9.52" in after[-1].body
    for c in after[:-1]:  # nobody else's comment changed, the copied marker included
        assert c.body == before[c.id]
    assert {quoted, bot_other} <= {c.id for c in after}

    # Nothing changed: no write at all.
    code, out, _ = cli(capsys, "--pr", "12")
    assert code == 0 and "already up to date" in out
    assert len(fake.calls("PATCH")) == 1 and len(fake.calls("POST")) == 1


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


def test_dry_run_with_token_reads_but_never_writes(gh_env: FakeGitHub, pr_ledger: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--pr", "12", "--dry-run")
    assert code == 0, err
    assert out.startswith(MARKER)
    assert gh_env.requests and all(r.method == "GET" for r in gh_env.requests)


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
    write_ledger(entry("s", seg()))
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
    assert "pip install costattr" in runs
    assert "costattr comment --pr ${{ github.event.pull_request.number }}" in runs
    comment_step = next(s for s in steps if "costattr comment" in str(s.get("run", "")))
    assert comment_step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert comment_step["env"]["COSTATTR_API_KEY"] == "${{ secrets.COSTATTR_API_KEY }}"
    text = (ROOT / "examples" / "github-actions-costattr.yml").read_text()
    assert "workflow_run" in text and "fork" in text and "COSTATTR_LEDGER" in text
