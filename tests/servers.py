"""Real servers on 127.0.0.1 for the tests: a feed server and an alert receiver.

Both run ``http.server`` in a background thread on an ephemeral port. Nothing here is
a mock: feed-monitor talks to them over real sockets, through aiohttp and Apprise.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: bool = True  # answer If-None-Match with 304
    headers: dict[str, str] = field(default_factory=dict)  # Location, Retry-After, ...


@dataclass
class FeedServer:
    """Serves feed documents by path, with ETags, and records every request."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes | str, **kwargs: Any) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(data, **kwargs)
        return self.url(path)

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for requested, headers in self.requests if requested == path]

    def wait_for_hits(self, path: str, count: int, timeout: float = 15.0) -> None:
        """Block until ``path`` has been requested ``count`` times (or fail at the deadline)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.hits(path)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} requests of {path} within {timeout}s, "
                        f"got {len(self.hits(path))}"
                    )
                self._cond.wait(left)


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    state = FeedServer()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            with state._cond:
                state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                state._cond.notify_all()
            route = state.routes.get(self.path)
            if route is None:
                self.reply(404)
                return
            etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
            if route.etag and route.status == 200 and self.headers.get("If-None-Match") == etag:
                self.reply(304, headers={"ETag": etag})
                return
            headers = {"Content-Type": route.content_type, "Last-Modified": formatdate(usegmt=True)}
            if route.etag:
                headers["ETag"] = etag
            self.reply(route.status, route.body, {**headers, **route.headers})

    with serving(Handler) as port:
        state.port = port
        yield state


@dataclass
class AlertSink:
    """Receives Apprise ``json://`` notifications; can be told to fail."""

    received: list[dict[str, Any]] = field(default_factory=list)
    fail_with: int | None = None  # answer every POST with this status instead of 200
    port: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Block until ``count`` alerts have arrived (or fail the test at the deadline)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} alerts within {timeout}s, got {len(self.received)}"
                    )
                self._cond.wait(left)
            return list(self.received)


@contextmanager
def alert_sink() -> Iterator[AlertSink]:
    state = AlertSink()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            payload["_path"] = self.path  # json:// and chat webhooks post to different paths
            if state.fail_with is not None:
                self.reply(state.fail_with)
                return
            with state._cond:
                state.received.append(payload)
                state._cond.notify_all()
            self.reply(200)

    with serving(Handler) as port:
        state.port = port
        yield state


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log, with a one-call reply."""

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Run ``handler`` on an ephemeral 127.0.0.1 port in a thread; yield the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
