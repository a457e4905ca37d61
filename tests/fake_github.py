"""A small, real GitHub REST server for tests: a ThreadingHTTPServer on 127.0.0.1 (port 0).

PyGithub talks to it over HTTP through `base_url` (GITHUB_API_URL), exactly as it talks to
api.github.com, so the tests exercise the real client: URLs, pagination by `Link` header,
error statuses and headers. It speaks just enough of the API for `costattr comment`:

    GET   {prefix}/user
    GET   {prefix}/repos/{o}/{r}
    GET   {prefix}/repos/{o}/{r}/pulls?head=owner:branch                 (paginated)
    GET   {prefix}/repos/{o}/{r}/pulls/{n}
    GET   {prefix}/repos/{o}/{r}/pulls/{n}/commits                  (paginated)
    GET   {prefix}/repos/{o}/{r}/issues/{n}/comments                (paginated, 30 per page default)
    POST  {prefix}/repos/{o}/{r}/issues/{n}/comments
    PATCH {prefix}/repos/{o}/{r}/issues/comments/{id}

Modes: a wrong token gets 401 "Bad credentials"; `mode="forbidden"` answers writes with 403
"Resource not accessible by integration" (a fork PR's read-only token); `mode="rate_limited"`
answers everything with 403 + X-RateLimit-Remaining: 0 + X-RateLimit-Reset; `app_token=True`
makes GET /user 403 "Resource not accessible by integration", as it is for the Actions
GITHUB_TOKEN (whose comments are by `github-actions[bot]`). Every request is recorded.

Misbehaviours, for the client's defences:
- `redirects`: `Redirect(method, path, status, location)` answers that request with a 3xx and a
  `Location` (another port or host, or this one), `times` times (None: always);
- `link_base`: the base URL written into pagination `Link` headers (another host's, say);
- `user_error`: (status, message) answered to GET /user;
- `drip`: `Drip(per_byte_s, match=...)` writes the matching responses one byte at a time, from
  the status line on (`body_only=True`: headers at once, then the body), until the server stops.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


@dataclass
class Recorded:
    method: str
    path: str  # without the prefix and query
    query: dict[str, str]
    headers: dict[str, str]
    body: str


@dataclass
class Redirect:
    method: str
    path: str  # without the prefix and query
    status: int  # 301, 302, 307, 308
    location: str
    times: int | None = None  # None: every time


@dataclass
class Drip:
    per_byte_s: float = 1.0
    match: str | None = None  # a regex on "METHOD /path"; None: every response
    body_only: bool = False  # True: status line and headers at once, then the body byte by byte


@dataclass
class FakeComment:
    id: int
    body: str
    login: str
    user_type: str = "User"  # "User" or "Bot"


@dataclass
class FakePull:
    number: int
    head_ref: str
    base_ref: str
    commits: list[str]
    head_repo: str | None
    comments: list[FakeComment] = field(default_factory=list)


@dataclass
class FakeRepo:
    full_name: str
    pulls: dict[int, FakePull] = field(default_factory=dict)


class FakeGitHub:
    def __init__(
        self,
        token: str = "ghs_TESTTOKEN0123456789abcdef",
        *,
        viewer: str = "github-actions[bot]",
        viewer_type: str = "Bot",
        prefix: str = "",
    ) -> None:
        self.token = token
        self.viewer = viewer
        self.viewer_type = viewer_type
        self.prefix = prefix.rstrip("/")
        self.mode: str | None = None  # None | "forbidden" | "rate_limited"
        self.app_token = viewer_type == "Bot"  # GET /user is refused to Actions/App tokens
        self.rate_limit_reset = int(time.time()) + 900
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Recorded] = []
        self.redirects: list[Redirect] = []
        self.link_base: str | None = None  # None: this server's own URL
        self.drip: Drip | None = None
        self.user_error: tuple[int, str] | None = None  # (status, message) for GET /user
        self.stopping = threading.Event()
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # dripping handlers give up and close their connections
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """The API base URL, for GITHUB_API_URL."""
        return self.host + self.prefix

    # -- data ----------------------------------------------------------------------------------

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        head_ref: str,
        base_ref: str = "main",
        commits: list[str] | None = None,
        head_repo: str | None = None,
    ) -> FakePull:
        with self._lock:
            r = self.repos.setdefault(repo, FakeRepo(repo))
            pull = FakePull(number, head_ref, base_ref, list(commits or []), head_repo or repo)
            r.pulls[number] = pull
            return pull

    def add_comment(self, repo: str, number: int, body: str, *, login: str = "someone", user_type: str = "User") -> int:
        with self._lock:
            return self._add_comment(self.repos[repo].pulls[number], body, login, user_type)

    def _add_comment(self, pull: FakePull, body: str, login: str, user_type: str) -> int:
        self._next_id += 1
        pull.comments.append(FakeComment(self._next_id, body, login, user_type))
        return self._next_id

    def comments(self, repo: str, number: int) -> list[FakeComment]:
        with self._lock:
            return list(self.repos[repo].pulls[number].comments)

    def calls(self, method: str | None = None, path_re: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r for r in self.requests
                if (method is None or r.method == method) and (path_re is None or re.search(path_re, r.path))
            ]

    # -- JSON shapes (the fields PyGithub reads, with absolute URLs like the real API) ---------

    def _user_json(self, login: str, user_type: str) -> dict[str, Any]:
        return {
            "login": login, "id": abs(hash(login)) % 10**8, "type": user_type,
            "url": f"{self.url}/users/{urllib.parse.quote(login)}", "html_url": f"https://github.com/{login}",
        }

    def _repo_json(self, full_name: str) -> dict[str, Any]:
        owner, name = full_name.split("/")
        return {
            "id": abs(hash(full_name)) % 10**8, "name": name, "full_name": full_name, "private": False,
            "owner": self._user_json(owner, "User"),
            "url": f"{self.url}/repos/{full_name}", "html_url": f"https://github.com/{full_name}",
        }

    def _pull_json(self, repo: str, pull: FakePull) -> dict[str, Any]:
        base_url = f"{self.url}/repos/{repo}"
        head_sha = pull.commits[-1] if pull.commits else "0" * 40
        return {
            "id": pull.number * 7, "number": pull.number, "state": "open", "title": f"PR {pull.number}",
            "url": f"{base_url}/pulls/{pull.number}", "issue_url": f"{base_url}/issues/{pull.number}",
            "comments_url": f"{base_url}/issues/{pull.number}/comments",
            "commits_url": f"{base_url}/pulls/{pull.number}/commits",
            "html_url": f"https://github.com/{repo}/pull/{pull.number}",
            "user": self._user_json("author", "User"),
            "head": {"ref": pull.head_ref, "sha": head_sha, "label": f"x:{pull.head_ref}",
                     "repo": self._repo_json(pull.head_repo) if pull.head_repo else None},
            "base": {"ref": pull.base_ref, "sha": "f" * 40, "label": f"x:{pull.base_ref}",
                     "repo": self._repo_json(repo)},
        }

    def _comment_json(self, repo: str, pull: FakePull, c: FakeComment) -> dict[str, Any]:
        return {
            "id": c.id, "body": c.body, "user": self._user_json(c.login, c.user_type),
            "url": f"{self.url}/repos/{repo}/issues/comments/{c.id}",
            "issue_url": f"{self.url}/repos/{repo}/issues/{pull.number}",
            "html_url": f"https://github.com/{repo}/pull/{pull.number}#issuecomment-{c.id}",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }

    # -- routing -------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: str) -> tuple[int, dict[str, str], Any]:
        parts = urllib.parse.urlsplit(raw_path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        path = parts.path
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix):]
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            return self._route(method, path, query, headers, body)

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, str], Any]:
        auth = headers.get("authorization", "")
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        if self.mode == "rate_limited":
            return 403, {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0",
                         "X-RateLimit-Reset": str(self.rate_limit_reset)}, {
                "message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}
        if method != "GET" and self.mode == "forbidden":
            return 403, {}, {"message": "Resource not accessible by integration"}
        for rule in self.redirects:
            if rule.method == method and rule.path == path and rule.times != 0:
                if rule.times is not None:
                    rule.times -= 1
                return rule.status, {"Location": rule.location}, {
                    "message": "Temporary Redirect" if rule.status in (302, 307) else "Moved Permanently",
                    "url": rule.location, "documentation_url": "https://docs.github.com/rest/guides/best-practices"}

        if path == "/user" and method == "GET":
            if self.user_error is not None:
                return self.user_error[0], {}, {"message": self.user_error[1]}
            if self.app_token:
                return 403, {}, {"message": "Resource not accessible by integration"}
            return 200, {}, self._user_json(self.viewer, self.viewer_type)

        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m or m[1] not in self.repos:
            return 404, {}, {"message": "Not Found"}
        repo, rest = self.repos[m[1]], m[2] or ""
        if rest == "" and method == "GET":
            return 200, {}, self._repo_json(repo.full_name)

        if rest == "/pulls" and method == "GET":  # ?state=all&head=owner:branch, as backfill asks
            owner, _, ref = query.get("head", ":").partition(":")
            found = [self._pull_json(repo.full_name, p) for p in sorted(repo.pulls.values(), key=lambda p: p.number)
                     if (not ref or p.head_ref == ref) and (not owner or (p.head_repo or "").split("/")[0] == owner)]
            return self._page(path, query, found)

        if (pm := re.fullmatch(r"/pulls/(\d+)(/commits)?", rest)) and method == "GET":
            pull = repo.pulls.get(int(pm[1]))
            if pull is None:
                return 404, {}, {"message": "Not Found"}
            if pm[2]:
                items = [{"sha": s, "url": f"{self.url}/repos/{repo.full_name}/commits/{s}",
                          "commit": {"message": f"commit {s[:7]}"}} for s in pull.commits]
                return self._page(path, query, items)
            return 200, {}, self._pull_json(repo.full_name, pull)

        if cm := re.fullmatch(r"/issues/(\d+)/comments", rest):
            pull = repo.pulls.get(int(cm[1]))
            if pull is None:
                return 404, {}, {"message": "Not Found"}
            if method == "GET":
                return self._page(path, query, [self._comment_json(repo.full_name, pull, c) for c in pull.comments])
            if method == "POST":
                text = json.loads(body)["body"]
                if len(text) > 65536:
                    return 422, {}, {"message": "Validation Failed",
                                     "errors": [{"message": "Body is too long (maximum is 65536 characters)"}]}
                self._add_comment(pull, text, self.viewer, self.viewer_type)
                return 201, {}, self._comment_json(repo.full_name, pull, pull.comments[-1])

        if (em := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            for pull in repo.pulls.values():
                for c in pull.comments:
                    if c.id == int(em[1]):
                        c.body = json.loads(body)["body"]
                        return 200, {}, self._comment_json(repo.full_name, pull, c)
            return 404, {}, {"message": "Not Found"}
        return 404, {}, {"message": "Not Found"}

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> tuple[int, dict[str, str], Any]:
        per_page = max(1, min(int(query.get("per_page", DEFAULT_PER_PAGE)), MAX_PER_PAGE))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]

        def link(p: int) -> str:
            q = urllib.parse.urlencode({"per_page": per_page, "page": p})
            return f"<{self.link_base or self.url}{path}?{q}>"

        rels = []
        if page < last:
            rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
        if page > 1:
            rels += [f'{link(1)}; rel="first"', f'{link(page - 1)}; rel="prev"']
        return 200, ({"Link": ", ".join(rels)} if rels else {}), chunk


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.fake.handle(self.command, self.path, headers, body)
        data = json.dumps(payload).encode()
        drip = self.fake.drip
        if drip is not None and (drip.match is None or re.search(drip.match, f"{self.command} {self.path}")):
            self._drip(drip, status, extra, data)
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drip(self, drip: Drip, status: int, extra: dict[str, str], data: bytes) -> None:
        """One byte at a time: every read the client makes gets something, so a per-read timeout
        never fires; only an overall deadline ends the wait."""
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                "Content-Type: application/json; charset=utf-8", f"Content-Length: {len(data)}",
                *(f"{k}: {v}" for k, v in extra.items())]
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode()
        if drip.body_only:
            self.wfile.write(raw_head)
            self.wfile.flush()
            slow = data
        else:
            slow = raw_head + data
        self.close_connection = True
        try:
            for i in range(len(slow)):
                if self.fake.stopping.wait(drip.per_byte_s):
                    return
                self.wfile.write(slow[i:i + 1])
                self.wfile.flush()
        except OSError:  # the client gave up: what the test wants
            return

    do_GET = do_POST = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass
