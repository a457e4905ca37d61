"""`costattr comment` against a GitHub that is not on our side: comments that only look like ours,
redirects and pagination links to another host, and an API that drips its answers.

Every test talks to real HTTP servers on 127.0.0.1 (tests/fake_github.py) through the real
PyGithub client; "another host" is a second fake server, which records whatever reaches it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from builders import part, spend, store_with
from fake_github import Drip, FakeGitHub, Redirect

from costattr.cli import main
from costattr.pr_comment import MARKER

REPO = "acme/app"
BRANCH = "feature/PROJ-7-retries"
SHA = "b6fdb5a" + "1" * 33
ACTIONS_BOT = "github-actions[bot]"
OLD = MARKER + "\nold figures"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["comment", "--pr", "12", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ledger() -> None:
    """PR #12's spend: $3.25 on its head branch."""
    store_with([spend("s1", branch=BRANCH, commit=SHA, issue="PROJ-7",
                      parts=[part("2026-01-05T10:00:00Z", cost="3.25")])]).close()


def serve(monkeypatch: pytest.MonkeyPatch, tmp_path: object, fake: FakeGitHub) -> FakeGitHub:
    fake.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA])
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]  # not a repository: the local ledger, no repo scope
    for var in ("GITHUB_ACTIONS", "GITHUB_HEAD_REF", "GITHUB_BASE_REF", "GITHUB_EVENT_NAME",
                "COSTATTR_GITHUB_TIMEOUT", "COSTATTR_GITHUB_LOGIN", "GH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    return fake


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch, tmp_path: object, ledger: None) -> Iterator[FakeGitHub]:
    """GitHub as the Actions GITHUB_TOKEN sees it: GET /user is refused, comments are by the bot."""
    with FakeGitHub() as fake:
        yield serve(monkeypatch, tmp_path, fake)


@pytest.fixture
def elsewhere() -> Iterator[FakeGitHub]:
    """Another host: a server that would accept the same token, and records what reaches it."""
    with FakeGitHub() as other:
        other.add_pull(REPO, 12, head_ref=BRANCH, commits=[SHA])
        yield other


def bodies(fake: FakeGitHub) -> dict[int, str]:
    return {c.id: c.body for c in fake.comments(REPO, 12)}


# ------------------------------------------------------------------------------------------------
# Only the token's own comment is ever edited


def test_actions_token_edits_the_actions_bots_comment_never_another_bots(
    actions: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = actions
    renovate = fake.add_comment(REPO, 12, OLD + " (renovate copied our marker)", login="renovate[bot]",
                                user_type="Bot")
    human = fake.add_comment(REPO, 12, OLD + " (quoted by a person)", login="mallory")
    ours = fake.add_comment(REPO, 12, OLD, login=ACTIONS_BOT, user_type="Bot")
    before = bodies(fake)

    code, out, err = cli(capsys)
    assert code == 0, err
    assert "updated the cost comment" in out
    after = bodies(fake)
    assert after[renovate] == before[renovate] and after[human] == before[human]
    assert after[ours].startswith(MARKER) and "$3.25" in after[ours]
    assert [p.path for p in fake.calls("PATCH")] == [f"/repos/{REPO}/issues/comments/{ours}"]
    assert fake.calls("GET", r"^/user$"), "who the token is was asked (and refused, as for GITHUB_TOKEN)"


def test_actions_token_with_only_a_foreign_marked_comment_posts_its_own(
    actions: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    renovate = actions.add_comment(REPO, 12, OLD, login="renovate[bot]", user_type="Bot")
    code, out, err = cli(capsys)
    assert code == 0 and "created the cost comment" in out, err
    comments = actions.comments(REPO, 12)
    assert [(c.id, c.body) for c in comments[:1]] == [(renovate, OLD)]
    assert len(comments) == 2 and comments[1].login == ACTIONS_BOT and "$3.25" in comments[1].body
    assert not actions.calls("PATCH")

    # The next run finds its own comment behind renovate's, and leaves both alone (same figures).
    code, out, err = cli(capsys)
    assert code == 0 and "already up to date" in out, err
    assert len(actions.comments(REPO, 12)) == 2 and not actions.calls("PATCH")


def test_personal_token_edits_its_users_comment_never_a_bots(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, ledger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeGitHub(token="ghp_PERSONALTOKEN987654321", viewer="alice", viewer_type="User") as fake:
        serve(monkeypatch, tmp_path, fake)
        renovate = fake.add_comment(REPO, 12, OLD, login="renovate[bot]", user_type="Bot")
        actions_bot = fake.add_comment(REPO, 12, OLD, login=ACTIONS_BOT, user_type="Bot")
        alice = fake.add_comment(REPO, 12, OLD, login="alice")
        code, out, err = cli(capsys)
        assert code == 0 and "updated" in out, err
        after = bodies(fake)
    assert after[renovate] == OLD and after[actions_bot] == OLD
    assert "$3.25" in after[alice]


def test_app_token_comments_as_the_login_it_is_told(
    actions: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A GitHub App's installation token: GET /user is refused as for GITHUB_TOKEN, but its comments
    # are by the App's own bot account, which only the user can name.
    monkeypatch.setenv("COSTATTR_GITHUB_LOGIN", "costbot[bot]")
    actions_bot = actions.add_comment(REPO, 12, OLD, login=ACTIONS_BOT, user_type="Bot")
    app = actions.add_comment(REPO, 12, OLD, login="costbot[bot]", user_type="Bot")
    code, out, err = cli(capsys)
    assert code == 0 and "updated" in out, err
    after = bodies(actions)
    assert after[actions_bot] == OLD and "$3.25" in after[app]
    assert not actions.calls("GET", r"^/user$")


@pytest.mark.parametrize("strict", [False, True])
def test_a_token_that_cannot_say_who_it_is_touches_nothing(
    actions: FakeGitHub, capsys: pytest.CaptureFixture[str], strict: bool
) -> None:
    # GET /user refused for another reason than "an integration": costattr cannot tell which
    # marked comment is its own, so it neither edits one nor posts a duplicate.
    actions.user_error = (403, "Must have admin rights to Repository.")
    actions.add_comment(REPO, 12, OLD, login=ACTIONS_BOT, user_type="Bot")
    code, out, err = cli(capsys, *(["--strict"] if strict else []))
    assert code == (1 if strict else 0)
    assert "could not tell which account the token in GITHUB_TOKEN comments as" in err
    assert "COSTATTR_GITHUB_LOGIN" in err and "this is a bug" not in err
    assert bodies(actions) == {c.id: OLD for c in actions.comments(REPO, 12)}
    assert not actions.calls("POST") and not actions.calls("PATCH")


# ------------------------------------------------------------------------------------------------
# Redirects and pagination links to another host


def _no_bug_and_nothing_leaked(fake: FakeGitHub, other: FakeGitHub, out: str, err: str) -> None:
    assert "a bug" not in err and "Error(" not in err, err
    assert other.requests == [], "nothing, and so not the token, was sent to the other host"
    assert fake.token not in out + err
    assert not fake.calls("POST") and not fake.calls("PATCH")


@pytest.mark.parametrize(("status", "other_host"), [(307, "127.0.0.1"), (301, "localhost"), (308, "127.0.0.1")])
def test_redirect_to_another_host_is_refused(
    actions: FakeGitHub, elsewhere: FakeGitHub, capsys: pytest.CaptureFixture[str], status: int, other_host: str
) -> None:
    target = elsewhere.url.replace("127.0.0.1", other_host)
    actions.redirects.append(Redirect("GET", f"/repos/{REPO}/pulls/12", status, f"{target}/repos/{REPO}/pulls/12"))
    code, out, err = cli(capsys)
    assert code == 0
    assert f"redirected GET /repos/{REPO}/pulls/12 ({status}) to {target}" in err
    assert "another host: not followed" in err and "GITHUB_API_URL" in err
    _no_bug_and_nothing_leaked(actions, elsewhere, out, err)
    code, out, err = cli(capsys, "--strict")
    assert code == 1 and "another host: not followed" in err
    _no_bug_and_nothing_leaked(actions, elsewhere, out, err)


def test_redirect_on_the_same_host_is_followed(actions: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    # GitHub answers a write to a renamed repository with 307 to its new address on the same API:
    # the request is repeated there, the body included.
    ours = actions.add_comment(REPO, 12, OLD, login=ACTIONS_BOT, user_type="Bot")
    path = f"/repos/{REPO}/issues/comments/{ours}"
    actions.redirects.append(Redirect("PATCH", path, 307, f"{actions.url}{path}", times=1))
    code, out, err = cli(capsys)
    assert code == 0 and "updated the cost comment" in out, err
    assert [p.path for p in actions.calls("PATCH")] == [path, path]
    assert "$3.25" in bodies(actions)[ours]


@pytest.mark.parametrize("other_host", ["127.0.0.1", "localhost"])
def test_pagination_link_to_another_host_is_refused(
    actions: FakeGitHub, elsewhere: FakeGitHub, capsys: pytest.CaptureFixture[str], other_host: str
) -> None:
    for i in range(130):  # two pages of 100
        actions.add_comment(REPO, 12, f"review comment {i}", login="dev")
    actions.link_base = elsewhere.url.replace("127.0.0.1", other_host)
    code, out, err = cli(capsys)
    assert code == 0
    assert f"pointed costattr at {actions.link_base}, which is not the GitHub API at {actions.url}" in err, err
    assert "refused, so the token is not sent there" in err
    assert "while listing the comments of pull request #12" in err
    # Page 2 was never read, so whether a cost comment exists is unknown: none is posted.
    _no_bug_and_nothing_leaked(actions, elsewhere, out, err)
    code, _, err = cli(capsys, "--strict")
    assert code == 1 and "which is not the GitHub API" in err and elsewhere.requests == []


# ------------------------------------------------------------------------------------------------
# One deadline for all of a run's GitHub calls


@pytest.mark.timeout(25)
@pytest.mark.parametrize(("drip", "strict"), [(Drip(1.0), False), (Drip(1.0, body_only=True), True)])
def test_a_dripping_api_is_bounded_by_the_deadline(
    actions: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], drip: Drip,
    strict: bool
) -> None:
    # One byte a second: every read gets something, so no per-read timeout ever fires.
    monkeypatch.setenv("COSTATTR_GITHUB_TIMEOUT", "2")
    actions.drip = drip
    started = time.monotonic()
    code, out, err = cli(capsys, *(["--strict"] if strict else []))
    elapsed = time.monotonic() - started
    assert code == (1 if strict else 0)
    assert 1.5 < elapsed < 5, elapsed
    assert "GitHub did not answer within 2 s (COSTATTR_GITHUB_TIMEOUT)" in err
    assert "while reading the repository" in err and "this is a bug" not in err
    assert ("not failing the build" in err) is not strict
    assert not actions.calls("POST")


@pytest.mark.timeout(25)
def test_a_write_cut_by_the_deadline_is_never_posted_twice(
    actions: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COSTATTR_GITHUB_TIMEOUT", "1.5")
    actions.drip = Drip(1.0, match=r"^POST ")  # the server takes the comment, then drips its answer
    started = time.monotonic()
    code, out, err = cli(capsys)
    assert code == 0 and time.monotonic() - started < 4.5
    assert "GitHub did not answer within 1.5 s" in err and "while commenting on pull request #12" in err
    assert "the comment may have been posted" in err
    assert len(actions.comments(REPO, 12)) == 1

    actions.drip = None
    code, out, err = cli(capsys)
    assert code == 0 and "already up to date" in out, err
    assert len(actions.comments(REPO, 12)) == 1 and len(actions.calls("POST")) == 1


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf"])
def test_a_bad_deadline_setting_is_named(
    actions: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("COSTATTR_GITHUB_TIMEOUT", value)
    code, out, err = cli(capsys, "--strict")
    assert code == 1
    assert re.search(rf"COSTATTR_GITHUB_TIMEOUT must be .*seconds.*not {re.escape(repr(value))}", err), err
    assert actions.requests == []
