"""GitHub for the PR comment bot, through PyGithub: where the token, repository, API and PR number
come from, reading a pull request, the sticky-comment upsert, and errors a CI log makes obvious.

The token is a secret: it is held by PyGithub's Auth object and by nothing we print. Every error
message goes through `_scrub` before it reaches a user, in case a server ever echoes it back.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
from github import Auth, Github, GithubException
from github.GithubException import BadCredentialsException, RateLimitExceededException, UnknownObjectException
from github.Requester import HTTPRequestsConnectionClass, HTTPSRequestsConnectionClass
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from costattr.errors import CostattrError
from costattr.pr_comment import MARKER
from costattr.secrets import redact

DEFAULT_API_URL = "https://api.github.com"
TOKEN_VARS = ("GITHUB_TOKEN", "GH_TOKEN")
PER_PAGE = 100  # GitHub's maximum: a busy PR's comments in as few requests as possible
TIMEOUT_S = 20  # per connect / read; the deadline below bounds everything together
DEADLINE_VAR = "COSTATTR_GITHUB_TIMEOUT"
DEFAULT_DEADLINE_S = 30.0
MAX_DEADLINE_S = 3600.0
LOGIN_VAR = "COSTATTR_GITHUB_LOGIN"
ACTIONS_BOT = "github-actions[bot]"  # who comments with the Actions GITHUB_TOKEN
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_T = TypeVar("_T")

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
    raise NoPullRequest(
        "which pull request? pass --pr N",
        hint="e.g. `costattr comment --pr 412`; in GitHub Actions (on: pull_request) the number is read from the event",
    )


class NoPullRequest(GitHubError):
    """Neither --pr nor a GitHub Actions event: a usage problem to fix, not a GitHub failure."""


# ------------------------------------------------------------------------------------------------
# Pull requests and comments


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


def _retry(guard: _Guard) -> _DeadlineRetry:
    # PyGithub's default retry sleeps through rate limits (up to an hour: a hung CI job). Retry
    # only brief server hiccups on idempotent requests; POST is never retried (a second POST
    # would be a second comment), and Retry-After is not obeyed. No retry starts, and no back-off
    # sleeps, past the run's deadline.
    retry = _DeadlineRetry(
        total=2,
        connect=2,
        read=1,
        backoff_factor=0.5,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "PATCH"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    retry.guard = guard
    return retry


# ------------------------------------------------------------------------------------------------
# Where the token may go, and for how long


def resolve_deadline(env: Mapping[str, str]) -> float:
    """Seconds all of one run's GitHub calls may take together (COSTATTR_GITHUB_TIMEOUT)."""
    raw = env.get(DEADLINE_VAR, "").strip()
    if not raw:
        return DEFAULT_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_DEADLINE_S):
        raise GitHubError(
            f"{DEADLINE_VAR} must be a number of seconds above 0 and at most {MAX_DEADLINE_S:g}, not {raw!r}",
            hint=f"unset it for the default ({DEFAULT_DEADLINE_S:g} s), or set e.g. {DEADLINE_VAR}=60",
        )
    return value


def resolve_login(env: Mapping[str, str]) -> str | None:
    """COSTATTR_GITHUB_LOGIN: the account the token comments as, when GitHub cannot say (a GitHub
    App's installation token: `my-app[bot]`)."""
    return env.get(LOGIN_VAR, "").strip() or None


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in; never the userinfo."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _show(url: str, *, path: bool = False) -> str:
    """scheme://host[:port] (and the path when asked) of a URL, for a message: no userinfo, no query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" + (parts.path.rstrip("/") if path else "")


class _Deadline:
    """The seconds one run's GitHub calls share: the clock runs while a call is in progress (not
    while the ledger is read in between), and every request, retry and back-off is cut at it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cancelled = False  # set when a call was given up: its thread may send nothing more
        self._spent = 0.0
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.monotonic()

    def stop(self) -> None:
        if self._since is not None:
            self._spent += time.monotonic() - self._since
            self._since = None

    def remaining(self) -> float:
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.seconds - self._spent - running


class _Guard:
    """What every request PyGithub makes for us goes through (see `_install_guard`): the token is
    sent only to the origin of GITHUB_API_URL, redirects to another host are refused, and nothing
    is sent or waited for past the deadline."""

    def __init__(self, api_url: str, deadline: _Deadline, client: GitHubClient) -> None:
        self.api_url = api_url
        self.api_origin = _origin(api_url)
        self.api_prefix = urllib.parse.urlsplit(api_url).path.rstrip("/")
        self.deadline = deadline
        self._client = client

    def check_time(self) -> float:
        """The seconds left; raises the deadline error when there are none."""
        left = self.deadline.remaining()
        if self.deadline.cancelled or left <= 0:
            raise self._client.timed_out()
        return left

    def clamp(self, timeout: Any) -> tuple[float, float]:
        """A requests timeout no longer than what is left of the deadline."""
        left = self.check_time()
        if isinstance(timeout, tuple):
            connect, read = timeout
        else:
            connect = read = timeout
        return min(connect or left, left), min(read or left, left)

    def check_url(self, url: str) -> None:
        """A URL PyGithub is about to request: a path, or an absolute URL that GitHub handed back
        (a pagination link, an object's `url`), which must be on the API itself."""
        if url.startswith("/"):
            return
        path = urllib.parse.urlsplit(url).path
        on_api = path == self.api_prefix or path.startswith(self.api_prefix + "/") or not self.api_prefix
        if _origin(url) != self.api_origin or not on_api:
            raise self._off_host(url)

    def before_send(self, url: str) -> None:
        """The last word before bytes leave: the API's origin only, and only in time."""
        self.check_time()
        if _origin(url) != self.api_origin:
            raise self._off_host(url)

    def check_redirect(self, method: str, url: str, status: int, target: str) -> None:
        if _origin(target) != self.api_origin:
            path = urllib.parse.urlsplit(url).path
            raise GitHubError(
                f"the GitHub API redirected {method} {path} ({status}) to {_show(target)}, another host: not "
                "followed, so the token is not sent there",
                hint="set GITHUB_API_URL to the API root that answers without redirecting (github.com: unset it; "
                "GitHub Enterprise Server: https://HOST/api/v3)",
            )

    def _off_host(self, url: str) -> GitHubError:
        return GitHubError(
            f"GitHub's answer pointed costattr at {_show(url, path=_origin(url) == self.api_origin)}, which is "
            f"not the GitHub API at {_show(self.api_url, path=True)} (GITHUB_API_URL), while "
            f"{self._client.doing}: refused, so the token is not sent there",
            hint="GITHUB_API_URL must be the API root the server itself links to (GitHub Enterprise Server: "
            "https://HOST/api/v3); a proxy that rewrites GitHub's links to another host is misconfigured",
        )


class _DeadlineRetry(Retry):
    """urllib3's Retry, which starts no retry and sleeps no back-off past the run's deadline."""

    guard: _Guard | None = None

    def new(self, **kw: Any) -> _DeadlineRetry:
        retry = super().new(**kw)
        retry.guard = self.guard
        return retry

    def increment(self, *args: Any, **kwargs: Any) -> _DeadlineRetry:
        if self.guard is not None:
            self.guard.check_time()
        return super().increment(*args, **kwargs)  # type: ignore[return-value]

    def get_backoff_time(self) -> float:
        wait = super().get_backoff_time()
        return max(0.0, min(wait, self.guard.deadline.remaining())) if self.guard is not None else wait


class _GuardedAdapter(HTTPAdapter):
    """requests' adapter for every connection PyGithub opens for us: each request is checked by
    the guard before it is sent, its timeouts are cut to the deadline, and redirects are followed
    here, on the API's own origin only (PyGithub would follow only a 301, and take any other 3xx
    answer for data)."""

    def __init__(self, guard: _Guard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: bool | str = True, cert: Any = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        method, first = request.method or "GET", request.url or ""
        for _ in range(MAX_REDIRECTS + 1):
            self._guard.before_send(request.url or "")
            response = super().send(request, stream=stream, timeout=self._guard.clamp(timeout), verify=verify,
                                    cert=cert, proxies=proxies)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECT_STATUSES or not location:
                return response
            target = urllib.parse.urljoin(request.url or "", location)
            self._guard.check_redirect(request.method or "GET", request.url or "", response.status_code, target)
            response.close()
            request = request.copy()
            if response.status_code == 303 and request.method != "HEAD":
                request.method, request.body = "GET", None
                for header in ("Content-Length", "Content-Type"):
                    request.headers.pop(header, None)
            request.prepare_url(target, None)
        raise GitHubError(
            f"the GitHub API redirected {method} {urllib.parse.urlsplit(first).path} more than {MAX_REDIRECTS} times",
            hint="check GITHUB_API_URL; the server may be misconfigured",
        )


def _guarded_connection_classes(guard: _Guard) -> tuple[type[Any], type[Any]]:
    def mount(cnx: Any) -> None:
        cnx.adapter = _GuardedAdapter(guard, max_retries=cnx.retry, pool_connections=cnx.pool_size,
                                      pool_maxsize=cnx.pool_size)
        for prefix in ("http://", "https://"):  # a Session mounts both: neither is left unguarded
            cnx.session.mount(prefix, cnx.adapter)

    class GuardedHTTP(HTTPRequestsConnectionClass):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            mount(self)

    class GuardedHTTPS(HTTPSRequestsConnectionClass):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            mount(self)

    return GuardedHTTP, GuardedHTTPS


_REQUESTER_SLOTS = ("_Requester__connectionClass", "_Requester__httpConnectionClass",
                    "_Requester__httpsConnectionClass", "_Requester__connection")


def _install_guard(gh: Github, guard: _Guard) -> None:
    """Route every connection of this client (PyGithub opens one per origin, lazily) through the
    guard, and check each absolute URL before PyGithub uses it. PyGithub has no public hook for
    its transport, so this sets its connection classes on this Requester only; a PyGithub whose
    Requester is built differently is refused rather than used unguarded."""
    requester = gh.requester
    if not all(hasattr(requester, slot) for slot in _REQUESTER_SLOTS) or requester._Requester__connection is not None:
        raise GitHubError(
            "this version of PyGithub cannot be used safely: costattr could not check where it sends the token",
            hint="install a PyGithub 2.x release: pip install 'PyGithub>=2.3,<3'",
        )
    http_class, https_class = _guarded_connection_classes(guard)
    requester._Requester__httpConnectionClass = http_class
    requester._Requester__httpsConnectionClass = https_class
    requester._Requester__connectionClass = https_class if guard.api_origin[0] == "https" else http_class
    request_json = requester.requestJsonAndCheck

    def checked(verb: str, url: str, *args: Any, **kwargs: Any) -> Any:
        guard.check_url(url)
        return request_json(verb, url, *args, **kwargs)

    requester.requestJsonAndCheck = checked  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------------
# Talking to GitHub


class GitHubClient:
    """The few GitHub calls the comment bot makes. Errors come out as GitHubError.

    All calls of one client share one deadline (`deadline_s`, COSTATTR_GITHUB_TIMEOUT), PyGithub's
    retries and waits included: each call runs in a worker thread that is given up when the time
    is over (a server that drips one byte a second defeats any per-read timeout), and a thread
    given up can send nothing more."""

    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, *, token_var: str = "GITHUB_TOKEN",
                 deadline_s: float = DEFAULT_DEADLINE_S, login: str | None = None) -> None:
        self._secret = token  # only for scrubbing messages
        self.api_url = api_url
        self.token_var = token_var
        self.doing = "talking to GitHub"  # what the current call is doing, for messages
        self._writing = False
        self._deadline = _Deadline(deadline_s)
        self._guard = _Guard(api_url, self._deadline, self)
        self._gh = Github(
            auth=Auth.Token(token),
            base_url=api_url,
            timeout=TIMEOUT_S,
            per_page=PER_PAGE,
            retry=_retry(self._guard),
            seconds_between_requests=None,  # a handful of serial requests: no throttle needed
        )
        _install_guard(self._gh, self._guard)
        self._login = login  # the account the token comments as; None: ask GitHub when needed

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self.api_url!r}, token=<from {self.token_var}>)"

    def close(self) -> None:
        self._deadline.cancelled = True
        self._gh.close()

    @contextmanager
    def _calling(self, doing: str, *, repo: str, pr: int | None = None, stage: str) -> Iterator[None]:
        self.doing, self._writing = doing, stage == "write"
        try:
            yield
        except GitHubError as e:  # the guard's refusals and the deadline
            raise self._scrubbed(e) from None
        except GithubException as e:
            err = github_error(e, doing=doing, repo=repo, pr=pr, stage=stage, token_var=self.token_var)
            raise self._scrubbed(err) from None
        except requests.exceptions.RequestException as e:
            raise self._scrubbed(
                GitHubError(
                    f"could not reach the GitHub API at {_show(self.api_url, path=True)} while {doing} "
                    f"({type(e).__name__})",
                    hint="check GITHUB_API_URL and the network; on GitHub Enterprise Server use https://HOST/api/v3",
                )
            ) from None

    def _scrubbed(self, err: GitHubError) -> GitHubError:
        err.message = _scrub(err.message, self._secret)
        err.hint = _scrub(err.hint, self._secret) if err.hint else err.hint
        err.args = (err.message,)
        return err

    def timed_out(self) -> GitHubError:
        seconds = f"{self._deadline.seconds:g}"
        message = f"GitHub did not answer within {seconds} s ({DEADLINE_VAR}) while {self.doing}"
        if self._writing:
            message += "; the comment may have been posted (the next run updates it in place, never a second one)"
        return self._scrubbed(GitHubError(
            message,
            hint=f"the API at {_show(self.api_url, path=True)} is slow or not answering: re-run the job, or allow "
            f"longer with {DEADLINE_VAR}=SECONDS (default {DEFAULT_DEADLINE_S:g})",
        ))

    def _bounded(self, work: Callable[[], _T]) -> _T:
        """`work()` in a worker thread, given what is left of the deadline."""
        left = self._guard.check_time()
        done: list[_T] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                done.append(work())
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                failed.append(e)

        worker = threading.Thread(target=run, name="costattr-github", daemon=True)
        self._deadline.start()
        try:
            worker.start()
            worker.join(left)
        except BaseException:
            self._deadline.cancelled = True
            raise
        finally:
            self._deadline.stop()
        if worker.is_alive():
            self._deadline.cancelled = True  # whatever it is waiting for, it sends nothing more
            raise self.timed_out()
        if failed:
            raise failed[0]
        return done[0]

    def pull_request(self, repo: str, number: int) -> PullRequestInfo:
        self.doing = "reading the repository"
        return self._bounded(lambda: self._pull_request(repo, number))

    def _pull_request(self, repo: str, number: int) -> PullRequestInfo:
        with self._calling("reading the repository", repo=repo, stage="repo"):
            gh_repo = self._gh.get_repo(repo)
        with self._calling(f"reading pull request #{number}", repo=repo, pr=number, stage="pull"):
            pr = gh_repo.get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else None
            info_head, info_base, html_url = pr.head.ref, pr.base.ref, pr.html_url
        with self._calling(f"listing the commits of pull request #{number}", repo=repo, pr=number, stage="pull"):
            shas = tuple(c.sha for c in pr.get_commits())
        return PullRequestInfo(repo, number, info_head, info_base, head_repo, shas, html_url, pr)

    def pulls_by_head(self, repo: str, branches: Iterable[str]) -> dict[str, list[int]]:
        """The pull requests (open or closed) whose head is each branch of `repo` itself (a fork's
        branch of the same name is another branch): one request per branch, for backfill."""
        wanted = sorted(set(branches))
        self.doing = "listing pull requests by branch"
        return self._bounded(lambda: self._pulls_by_head(repo, wanted))

    def _pulls_by_head(self, repo: str, branches: list[str]) -> dict[str, list[int]]:
        with self._calling("reading the repository", repo=repo, stage="repo"):
            gh_repo = self._gh.get_repo(repo)
        owner = repo.split("/", 1)[0]
        out: dict[str, list[int]] = {}
        for branch in branches:
            with self._calling(f"listing the pull requests of branch {branch}", repo=repo, stage="pull"):
                numbers = sorted(p.number for p in gh_repo.get_pulls(state="all", head=f"{owner}:{branch}"))
            if numbers:
                out[branch] = numbers
        return out

    def login(self, repo: str) -> str:
        """The account the token comments as: GET /user for a user's token; for an integration's
        token, which GitHub refuses to answer ("Resource not accessible by integration"), the
        Actions bot, `github-actions[bot]` (a GitHub App's token: name it with COSTATTR_GITHUB_LOGIN)."""
        if self._login is None:
            with self._calling("finding out which account the token comments as (GET /user)", repo=repo,
                               stage="user"):
                try:
                    self._login = str(self._gh.get_user().login)
                except GithubException as e:
                    if not _is_integration_token(e):
                        raise
                    self._login = ACTIONS_BOT
        return self._login

    def is_ours(self, comment: Any, repo: str) -> bool:
        """Marker AND written by the token's own account. Another bot's comment (renovate[bot]
        copying the marker) or a person's is never ours."""
        if not is_marked(comment.body):
            return False
        user = comment.user
        if user is None or not user.login:
            return False
        return str(user.login).casefold() == self.login(repo).casefold()

    def find_comment(self, info: PullRequestInfo) -> Any | None:
        doing = f"listing the comments of pull request #{info.number}"
        with self._calling(doing, repo=info.repo, pr=info.number, stage="pull"):
            for comment in info.handle.get_issue_comments():  # PaginatedList: walks every page
                if self.is_ours(comment, info.repo):
                    return comment
                self.doing = doing  # is_ours may have asked GET /user
        return None

    def upsert_comment(self, info: PullRequestInfo, body: str, *, create: bool = True) -> UpsertResult:
        """Edit our comment in place when its body changed, create it when there is none (and
        `create`), and leave every other comment alone."""
        self.doing = f"listing the comments of pull request #{info.number}"
        return self._bounded(lambda: self._upsert(info, body, create))

    def _upsert(self, info: PullRequestInfo, body: str, create: bool) -> UpsertResult:
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
    return redact(text, secret, mask="***")


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


def _is_integration_token(e: GithubException) -> bool:
    """GET /user refused as it is to the Actions GITHUB_TOKEN and GitHub Apps' installation tokens."""
    return e.status == 403 and not _is_rate_limited(e) and "not accessible by integration" in _server_message(e).lower()


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
    if stage == "user":
        return GitHubError(
            f"could not tell which account the token in {token_var} comments as: GET /user answered {status}{said}",
            hint="costattr edits only a comment written by the token's own account, so it must know which that "
            "is: use the Actions GITHUB_TOKEN or a personal token (both can say), or name the account in "
            f"{LOGIN_VAR} (a GitHub App: {LOGIN_VAR}='my-app[bot]')",
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
