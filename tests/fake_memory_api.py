"""A real HTTP server speaking the memory API, for tests (no mocks: costattr talks TCP to it).

    GET /u/{user}/memory/file?path=P        -> 200 {"path", "data"} + ETag | 404
    PUT /u/{user}/memory/file?path=P        body {"data": {...}}; If-Match / If-None-Match: * -> 200/201 | 412

X-API-Key is checked (401). `mode` switches failure behaviour: "ok", "error" (HTTP 503),
"forbidden" (HTTP 403),
"slow" (sleeps `delay` before answering), "malformed" (200 with broken JSON), "null" (200 with
`{"data": null}`, as a server with a damaged file answers), "huge" (a body bigger than any sane
cap), "hang" (never answers), "header-drip" (the status line and headers one byte every `drip`
seconds, never finishing them), "body-drip" (headers at once, then the body one byte every
`drip` seconds), "no-etag" (a 200 without an ETag, as a server with no concurrency control
answers), "raw" (200 with `raw_body` and an ETag, whatever it holds). `fail_paths` answers 503 to
any request for those file paths only. stop()/start() keep the same port, so a client sees "down" and then "back"; stop()
also ends every hanging or dripping answer. `records()` lists the costattr records the file's
entries carry (what the truth is).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_KEY = "sk-test-7f3a9c1e5b2d4f60-SECRET"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeMemoryApi:
    def __init__(self, user: str = "dkr", key: str = API_KEY) -> None:
        self.user = user
        self.key = key
        self.mode = "ok"
        self.delay = 5.0
        self.drip = 1.5  # seconds between two bytes of a dripping answer
        self.raw_body = b""  # what mode "raw" answers
        self.fail_paths: set[str] = set()  # file paths answered with 503
        self.stopping = threading.Event()  # set by stop(): hanging and dripping handlers return
        self.files: dict[str, tuple[int, dict[str, Any]]] = {}  # path -> (version, data)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int]] = []  # (method, status) in order
        self.seen_headers: list[dict[str, str]] = []
        # Called (outside the lock) just before a PUT is checked: lets a test write "concurrently".
        self.before_put: Callable[[FakeMemoryApi], None] | None = None
        self.put_delay = 0.0  # widens the read-modify-write window for concurrency tests
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeMemoryApi:
        self.stopping = threading.Event()  # a new one: handlers of the last run still see theirs set
        self._server = _Server(("127.0.0.1", self.port), self._handler_class())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- state helpers for tests --------------------------------------------------------------------

    def data(self, path: str = "agent-costs") -> dict[str, Any]:
        with self.lock:
            return dict(self.files.get(path, (0, {}))[1])

    def write_direct(self, sid: str, entry: dict[str, Any], path: str = "agent-costs") -> None:
        """Another client's write: bumps the version so an outstanding If-Match goes stale."""
        with self.lock:
            version, data = self.files.get(path, (0, {}))
            data = dict(data)
            data[sid] = entry
            self.files[path] = (version + 1, data)

    def delete(self, path: str = "agent-costs") -> None:
        """The file removed on the server (an admin, a reset): GET answers 404 again."""
        with self.lock:
            self.files.pop(path, None)

    def records(self, path: str = "agent-costs") -> list[dict[str, Any]]:
        """Every raw record in the file's entries, duplicates included (a test counts them)."""
        return [r for entry in self.data(path).values() if isinstance(entry, dict)
                for r in entry.get("records") or [] if isinstance(r, dict)]

    def count(self, method: str, status: int | None = None) -> int:
        return sum(1 for m, s in self.requests if m == method and (status is None or s == status))

    # -- HTTP -------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                api.requests.append((self.command, status))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                try:
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (its deadline) and closed the connection
                    self.close_connection = True

            def _route(self) -> str | None:
                parts = urlsplit(self.path)
                if unquote(parts.path) != f"/u/{api.user}/memory/file":
                    return None
                return parse_qs(parts.query).get("path", [None])[0]

            def _drip(self, data: bytes, stopping: threading.Event) -> None:
                """Send `data` one byte every `api.drip` seconds, until done, the client goes or stop()."""
                for i in range(len(data)):
                    if stopping.wait(api.drip if i else 0):
                        break
                    try:
                        self.wfile.write(data[i: i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up and closed the connection
                        break
                self.close_connection = True

            def _failure_mode(self) -> bool:
                mode, stopping = api.mode, api.stopping
                if mode == "hang":
                    stopping.wait(3600)
                    self.close_connection = True
                    return True
                if mode == "slow":
                    stopping.wait(api.delay)
                    return False
                if mode == "header-drip":
                    api.requests.append((self.command, 200))
                    # A header that never ends: every byte restarts a per-read timeout.
                    self._drip(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 100_000, stopping)
                    return True
                if mode == "body-drip":
                    body = json.dumps({"path": "agent-costs", "data": {}}).encode() + b" " * 100_000
                    api.requests.append((self.command, 200))
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("ETag", '"1"')
                    self.end_headers()
                    self.wfile.flush()
                    self._drip(body, stopping)
                    return True
                if mode == "error":
                    self._send(503, b'{"error": "maintenance"}')
                    return True
                if mode == "forbidden":
                    self._send(403, b'{"error": "key not valid for this user"}')
                    return True
                if mode == "malformed":
                    self._send(200, b'{"path": "agent-costs", "data": {"s1": ')
                    return True
                if mode == "raw":
                    self._send(200, api.raw_body, {"ETag": '"7"'})
                    return True
                if self._route() in api.fail_paths:
                    self._send(503, b'{"error": "this file is unavailable"}')
                    return True
                if mode == "null":
                    self._send(200, b'{"path": "agent-costs", "data": null}', {"ETag": '"7"'})
                    return True
                if mode == "huge":
                    chunk = b" " * (1 << 20)
                    api.requests.append((self.command, 200))
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()  # no Content-Length: the client must cap while reading
                    try:
                        for _ in range(64):
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                    self.close_connection = True
                    return True
                return False

            def _authorised(self) -> bool:
                api.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.headers.get("X-API-Key") != api.key:
                    self._send(401, b'{"error": "invalid api key"}')
                    return False
                return True

            def do_GET(self) -> None:
                if self._failure_mode() or not self._authorised():
                    return
                path = self._route()
                if path is None:
                    self._send(404, b'{"error": "no such user"}')
                    return
                with api.lock:
                    found = api.files.get(path)
                if found is None:
                    self._send(404, b'{"error": "not found"}')
                    return
                version, data = found
                body = json.dumps({"path": path, "data": data, "version": version}).encode()
                self._send(200, body, {} if api.mode == "no-etag" else {"ETag": f'"{version}"'})

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self._failure_mode() or not self._authorised():
                    return
                path = self._route()
                if path is None:
                    self._send(404, b'{"error": "no such user"}')
                    return
                if api.before_put is not None:
                    api.before_put(api)
                if api.put_delay:
                    time.sleep(api.put_delay)
                try:
                    data = json.loads(raw)["data"]
                    assert isinstance(data, dict)
                except (ValueError, KeyError, AssertionError):
                    self._send(400, b'{"error": "body must be {\\"data\\": {...}}"}')
                    return
                if_match = self.headers.get("If-Match")
                if_none = self.headers.get("If-None-Match")
                with api.lock:
                    current = api.files.get(path)
                    stale = if_match is not None and (current is None or if_match != f'"{current[0]}"')
                    if (if_none == "*" and current is not None) or stale:
                        status = 412
                    elif if_match is None and if_none is None and api.mode != "no-etag":
                        status = 428  # a server without ETags ("no-etag") takes any write, as it must
                    else:
                        version = (current[0] if current else 0) + 1
                        api.files[path] = (version, data)
                        status = 201 if current is None else 200
                if status in (200, 201):
                    self._send(status, json.dumps({"path": path, "version": version}).encode(),
                               {"ETag": f'"{version}"'})
                else:
                    self._send(status, b'{"error": "precondition"}')

        return Handler
