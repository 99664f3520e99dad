"""Real servers on 127.0.0.1 for the tests: a feed server, an alert receiver and an SMTP
server; and ports held for the tests' use.

The HTTP servers run ``http.server`` in a background thread on an ephemeral port, the SMTP
server aiosmtpd on a socket bound here. Nothing here is a mock: feed-monitor talks to
them over real sockets, through aiohttp and Apprise.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A handler's exception (most often a client that went away mid-answer) goes to
        the process's own stderr: ``sys.stderr`` may be a command's, run in process by
        CliRunner, whose output must hold only what the command wrote."""
        print(f"{type(self).__name__} on {self.server_address}:", file=sys.__stderr__)
        traceback.print_exc(file=sys.__stderr__)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[int]:
    """Run ``handler`` on an ephemeral port of ``host`` in a thread; yield the port."""
    server = _Server((host, 0), handler)
    # serve_forever notices shutdown() only between polls: its default of 0.5 s made every
    # test that used a server wait up to that long in its teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Mailbox:
    """An SMTP server's mailbox (aiosmtpd's handler), without AUTH."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 20) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} emails, got {len(self.messages)}"
                self.arrived.wait(left)
            return list(self.messages)


class _SocketController(Controller):
    """aiosmtpd's threaded controller, serving on a socket bound by the caller (so the
    port is never closed and looked up again between choosing it and serving on it)."""

    def __init__(self, handler: Any, sock: socket.socket) -> None:
        self._sock = sock
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1])

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on an ephemeral 127.0.0.1 port: its mailbox and the port."""
    sock = socket.create_server(("127.0.0.1", 0))
    mailbox = Mailbox()
    controller = _SocketController(mailbox, sock)
    controller.start()
    try:
        yield mailbox, sock.getsockname()[1]
    finally:
        controller.stop()
        sock.close()


@contextmanager
def held_port() -> Iterator[int]:
    """A 127.0.0.1 port bound here and held while inside, not listening: a connection to
    it is refused, bind(0) hands it to nobody else, and a server that binds it with
    SO_REUSEADDR (asyncio's servers do) may listen on it. Unlike a port bound, closed and
    then used, it cannot be taken by someone else in between."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
