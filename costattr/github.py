"""GitHub for the PR comment bot, through PyGithub: where the token, repository, API and PR number
come from, reading a pull request, the sticky-comment upsert, and errors a CI log makes obvious.

The token is a secret: it is held by PyGithub's Auth object and by nothing we print. Every error
message goes through `_scrub` before it reaches a user, in case a server ever echoes it back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests
from github import Auth, Github, GithubException
from github.GithubException import BadCredentialsException, RateLimitExceededException, UnknownObjectException
from urllib3.util.retry import Retry

from costattr.errors import CostattrError
from costattr.pr_comment import MARKER

DEFAULT_API_URL = "https://api.github.com"
TOKEN_VARS = ("GITHUB_TOKEN", "GH_TOKEN")
PER_PAGE = 100  # GitHub's maximum: a busy PR's comments in as few requests as possible
TIMEOUT_S = 20

_SLUG = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_REMOTE = re.compile(r"(?:^|[:/])([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/*$")

FORK_HINT = (
    "on pull requests from forks GITHUB_TOKEN is read-only whatever `permissions:` says: post "
    "the comment from a `workflow_run` workflow instead (costattr README: \"Pull requests from forks\")"
)


class GitHubError(CostattrError):
    """GitHub refused or could not be reached; the message names the cause and the fix."""


# ------------------------------------------------------------------------------------------------
# Where things come from


def resolve_token(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(token, name of the variable it came from), or None."""
    for var in TOKEN_VARS:
        value = env.get(var, "").strip()
        if value:
            return value, var
    return None


def resolve_api_url(env: Mapping[str, str]) -> str:
    """GITHUB_API_URL (set by Actions, and on GitHub Enterprise Server `https://host/api/v3`)."""
    url = env.get("GITHUB_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    if not re.match(r"https?://[^/\s]+", url):
        raise GitHubError(
            f"GITHUB_API_URL is not an http(s) URL: {url!r}",
            hint="unset it for github.com, or set it to your server's API root, e.g. https://github.example.com/api/v3",
        )
    return url


def parse_remote_slug(url: str) -> str | None:
    """owner/name from a git remote URL (https, ssh, scp-like `git@host:owner/name.git`)."""
    m = _REMOTE.search(url.strip())
    return f"{m[1]}/{m[2]}" if m else None


def origin_slug(cwd: Path) -> str | None:
    """owner/name of the `origin` remote of the repository containing `cwd`, if any."""
    try:
        from costattr.gitctx import discover  # written alongside; optional until it lands

        slug = getattr(discover(cwd), "repo_slug", None)
        if slug:
            return str(slug)
    except Exception:  # noqa: BLE001 - any failure here just means "ask git directly"
        pass
    try:
        proc = subprocess.run(
            ["git", "config", "--get", "remote.origin.url"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_remote_slug(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def resolve_repo(explicit: str | None, env: Mapping[str, str], cwd: Path) -> str:
    """--repo, else GITHUB_REPOSITORY (Actions), else the origin remote of the repository here."""
    for value, origin in ((explicit, "--repo"), (env.get("GITHUB_REPOSITORY"), "GITHUB_REPOSITORY")):
        if value and value.strip():
            value = value.strip()
            if not _SLUG.fullmatch(value):
                raise GitHubError(f"{origin} must look like owner/name, not {value!r}")
            return value
    slug = origin_slug(cwd)
    if slug:
        return slug
    raise GitHubError(
        "could not tell which GitHub repository the pull request is in",
        hint="pass --repo owner/name, or set GITHUB_REPOSITORY, or run inside a clone whose origin is on GitHub",
    )


def pr_number_from_event(path: str | os.PathLike[str]) -> int | None:
    """The PR number in a GitHub Actions event payload (GITHUB_EVENT_PATH), if it names one.

    pull_request / pull_request_target carry `pull_request.number` (and `number`); workflow_run
    carries `workflow_run.pull_requests[].number` (empty for PRs from forks).
    """
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GitHubError(f"could not read the event payload GITHUB_EVENT_PATH={path} ({e})") from e
    if not isinstance(event, dict):
        return None
    candidates: list[Any] = [(event.get("pull_request") or {}).get("number"), event.get("number")]
    run_prs = (event.get("workflow_run") or {}).get("pull_requests") or []
    if run_prs and isinstance(run_prs[0], dict):
        candidates.append(run_prs[0].get("number"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def resolve_pr_number(explicit: int | None, env: Mapping[str, str]) -> int:
    if explicit is not None:
        return explicit
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path:
        number = pr_number_from_event(event_path)
        if number is not None:
            return number
        raise GitHubError(
            f"the {env.get('GITHUB_EVENT_NAME') or 'triggering'} event names no pull request",
            hint="run the workflow `on: pull_request`, or pass --pr N",
        )
    raise GitHubError("which pull request? pass --pr N", hint="in GitHub Actions the number is read from the event")


# ------------------------------------------------------------------------------------------------
# Talking to GitHub


@dataclass(frozen=True)
class PullRequestInfo:
    repo: str  # owner/name the PR is in (the base repository)
    number: int
    head_ref: str
    base_ref: str
    head_repo: str | None  # owner/name of the fork for fork PRs; None if the fork was deleted
    commit_shas: tuple[str, ...]
    html_url: str
    handle: Any = field(default=None, repr=False, compare=False)  # the PyGithub PullRequest

    @property
    def repos(self) -> tuple[str, ...]:
        return (self.repo,) if not self.head_repo or self.head_repo == self.repo else (self.repo, self.head_repo)


@dataclass(frozen=True)
class UpsertResult:
    action: Literal["created", "updated", "unchanged", "skipped"]
    url: str | None
    comment_id: int | None


def is_marked(body: str | None) -> bool:
    """Our comments start with the marker; a reply quoting one starts with "> " instead."""
    return body is not None and body.lstrip().startswith(MARKER)


def same_body(a: str | None, b: str | None) -> bool:
    """Equal as GitHub shows them (it may hand back CRLF line ends and drop trailing blanks)."""

    def norm(s: str | None) -> str:
        return "\n".join(line.rstrip() for line in (s or "").replace("\r\n", "\n").split("\n")).strip()

    return norm(a) == norm(b)


def _retry() -> Retry:
    # PyGithub's default retry sleeps through rate limits (up to an hour: a hung CI job). Retry
    # only brief server hiccups on idempotent requests; POST is never retried (a second POST
    # would be a second comment), and Retry-After is not obeyed.
    return Retry(
        total=2,
        connect=2,
        read=1,
        backoff_factor=0.5,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "PATCH"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )


class GitHubClient:
    """The few GitHub calls the comment bot makes. Errors come out as GitHubError."""

    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, *, token_var: str = "GITHUB_TOKEN") -> None:
        self._secret = token  # only for scrubbing messages
        self.api_url = api_url
        self.token_var = token_var
        self._gh = Github(
            auth=Auth.Token(token),
            base_url=api_url,
            timeout=TIMEOUT_S,
            per_page=PER_PAGE,
            retry=_retry(),
            seconds_between_requests=None,  # a handful of serial requests: no throttle needed
        )
        self._viewer: str | None | bool = False  # False: not asked yet

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self.api_url!r}, token=<from {self.token_var}>)"

    def close(self) -> None:
        self._gh.close()

    @contextmanager
    def _calling(self, doing: str, *, repo: str, pr: int | None = None, stage: str) -> Iterator[None]:
        try:
            yield
        except GithubException as e:
            err = github_error(e, doing=doing, repo=repo, pr=pr, stage=stage, token_var=self.token_var)
            raise self._scrubbed(err) from None
        except requests.exceptions.RequestException as e:
            raise self._scrubbed(
                GitHubError(
                    f"could not reach the GitHub API at {self.api_url} while {doing} ({type(e).__name__})",
                    hint="check GITHUB_API_URL and the network; on GitHub Enterprise Server use https://HOST/api/v3",
                )
            ) from None

    def _scrubbed(self, err: GitHubError) -> GitHubError:
        err.message = _scrub(err.message, self._secret)
        err.hint = _scrub(err.hint, self._secret) if err.hint else err.hint
        err.args = (err.message,)
        return err

    def pull_request(self, repo: str, number: int) -> PullRequestInfo:
        with self._calling("reading the repository", repo=repo, stage="repo"):
            gh_repo = self._gh.get_repo(repo)
        with self._calling(f"reading pull request #{number}", repo=repo, pr=number, stage="pull"):
            pr = gh_repo.get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else None
            info_head, info_base, html_url = pr.head.ref, pr.base.ref, pr.html_url
        with self._calling(f"listing the commits of pull request #{number}", repo=repo, pr=number, stage="pull"):
            shas = tuple(c.sha for c in pr.get_commits())
        return PullRequestInfo(repo, number, info_head, info_base, head_repo, shas, html_url, pr)

    def viewer_login(self) -> str | None:
        """The token's own login, or None when the token cannot say (an Actions or App token gets
        403 on GET /user: its comments are by a Bot account anyway)."""
        if self._viewer is False:
            try:
                self._viewer = self._gh.get_user().login
            except (GithubException, requests.exceptions.RequestException):
                self._viewer = None
        return self._viewer  # type: ignore[return-value]

    def is_ours(self, comment: Any) -> bool:
        """Marker AND an author we speak for: a Bot (github-actions[bot], an App) or the token's
        own user. A person quoting or copying our marker is never overwritten."""
        if not is_marked(comment.body):
            return False
        user = comment.user
        if user is None:
            return False
        if (user.type or "") == "Bot":
            return True
        login = self.viewer_login()
        return login is not None and user.login == login

    def find_comment(self, info: PullRequestInfo) -> Any | None:
        doing = f"listing the comments of pull request #{info.number}"
        with self._calling(doing, repo=info.repo, pr=info.number, stage="pull"):
            for comment in info.handle.get_issue_comments():  # PaginatedList: walks every page
                if self.is_ours(comment):
                    return comment
        return None

    def upsert_comment(self, info: PullRequestInfo, body: str, *, create: bool = True) -> UpsertResult:
        """Edit our comment in place when its body changed, create it when there is none (and
        `create`), and leave every other comment alone."""
        existing = self.find_comment(info)
        if existing is not None:
            if same_body(existing.body, body):
                return UpsertResult("unchanged", existing.html_url, existing.id)
            doing = f"updating the cost comment on pull request #{info.number}"
            with self._calling(doing, repo=info.repo, pr=info.number, stage="write"):
                existing.edit(body)
            return UpsertResult("updated", existing.html_url, existing.id)
        if not create:
            return UpsertResult("skipped", None, None)
        with self._calling(f"commenting on pull request #{info.number}", repo=info.repo, pr=info.number, stage="write"):
            made = info.handle.create_issue_comment(body)
        return UpsertResult("created", made.html_url, made.id)


# ------------------------------------------------------------------------------------------------
# Errors


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _server_message(e: GithubException) -> str:
    data = e.data
    msg = data.get("message") if isinstance(data, dict) else None
    return str(msg or e.message or "").strip()[:300]


def describe_reset(reset_epoch: str | None, now: dt.datetime | None = None) -> str:
    """'at 14:05:00 UTC (in 12 min)' from X-RateLimit-Reset (epoch seconds)."""
    try:
        when = dt.datetime.fromtimestamp(int(str(reset_epoch)), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "later (GitHub did not say when)"
    now = now or dt.datetime.now(tz=dt.UTC)
    minutes = max(0, round((when - now).total_seconds() / 60))
    return f"at {when:%Y-%m-%d %H:%M:%S} UTC (in {minutes} min)"


def _is_rate_limited(e: GithubException) -> bool:
    if isinstance(e, RateLimitExceededException):
        return True
    if e.status in (403, 429) and _header(e.headers, "x-ratelimit-remaining") == "0":
        return True
    return e.status == 429 or "rate limit" in _server_message(e).lower()


def github_error(
    e: GithubException, *, doing: str, repo: str, pr: int | None, stage: str, token_var: str
) -> GitHubError:
    """A PyGithub exception as a message saying what happened and what to do."""
    status, server = e.status, _server_message(e)
    said = f" (GitHub said: {server})" if server else ""
    if isinstance(e, BadCredentialsException) or status == 401:
        return GitHubError(
            f"{token_var} was rejected by GitHub (401 Bad credentials) while {doing}",
            hint=f"check that {token_var} is set to a valid, unexpired token; in Actions pass "
            "`GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` in the step's env",
        )
    if _is_rate_limited(e):
        reset = describe_reset(_header(e.headers, "x-ratelimit-reset"))
        retry_after = _header(e.headers, "retry-after")
        secondary = retry_after and _header(e.headers, "x-ratelimit-remaining") != "0"
        when = f"retry after {retry_after} s" if secondary else f"the limit resets {reset}"
        return GitHubError(
            f"GitHub API rate limit exceeded while {doing}; {when}",
            hint="re-run the job after that; the comment is updated on the next push anyway",
        )
    if status == 403:
        if stage == "write":
            return GitHubError(
                f"GitHub refused {doing} in {repo} (403 Forbidden){said}",
                hint=f"give the workflow `permissions: pull-requests: write`; {FORK_HINT}",
            )
        return GitHubError(
            f"GitHub refused {doing} in {repo} (403 Forbidden){said}",
            hint=f"the token in {token_var} cannot read {repo}: grant `contents: read` and "
            "`pull-requests: read` (or use a token with access to the repository)",
        )
    if isinstance(e, UnknownObjectException) or status == 404:
        if stage == "repo":
            return GitHubError(
                f"repository {repo} not found, or the token in {token_var} cannot see it (404)",
                hint="check --repo / GITHUB_REPOSITORY (owner/name) and, for a private repository, the token's access",
            )
        return GitHubError(
            f"pull request #{pr} not found in {repo} (404)",
            hint="check the PR number (--pr, or the event's pull_request.number) and the repository",
        )
    if status == 422:
        return GitHubError(f"GitHub rejected the request while {doing} (422){said}")
    return GitHubError(
        f"GitHub API error {status} while {doing}{said}", hint="re-run the job; if it persists, check githubstatus.com"
    )
