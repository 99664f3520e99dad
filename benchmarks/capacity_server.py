"""A local asynchronous web server simulating many feeds on many sites, for bench_capacity.

Run as its own process (``python -m benchmarks.capacity_server SPEC.json``) so its CPU is
not the contenders'. It listens on ``hosts`` loopback addresses (127.0.1.1, 127.0.1.2,
...), one port each; feed ``n`` (path ``/f/<n>``) lives on host ``n % hosts``. Every
response waits a delay drawn between ``min_delay`` and ``max_delay`` seconds, as a remote
site over the internet would. A feed changes once every ``change_every`` cycles (feeds
take turns, so ``1 / change_every`` of them change in each cycle), except in cycles listed
as ``quiet``; it answers 304 to a request carrying its current ETag. Every request is
logged (feed, arrival time, status) and the log is written to ``log`` when ``duration``
has passed; then the server exits. POSTs (alerts) are accepted and counted.

A minimal HTTP/1.1 keep-alive server on asyncio's protocol level: the benchmark should
measure the clients, not the server.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_match import GENERIC

ITEMS = 25


def host_address(index: int) -> str:
    return f"127.0.1.{index + 1}"


class Simulation:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.start: float = spec["start"]  # wall-clock time of cycle 0
        self.interval: float = spec["interval"]
        self.change_every: int = spec["change_every"]
        self.quiet: set[int] = set(spec["quiet"])
        self.rng = random.Random(7)
        self.log: list[tuple[int, float, int]] = []
        self.alerts = 0
        paragraphs = [f"<p>{line}</p>" for line in GENERIC]
        # One item body per slot: items differ in title, link and guid, share their text.
        self.descriptions = [
            "".join(paragraphs[(k + j) % len(paragraphs)] for j in range(8)).replace("<", "&lt;")
            for k in range(ITEMS)
        ]

    def version(self, feed: int, now: float) -> int:
        """How many times the feed has changed by ``now`` (its ETag and newest item)."""
        cycle = int((now - self.start) // self.interval)
        # Changes happen in cycles c with (c + feed) % change_every == 0, not quiet ones.
        changes = 0
        for c in range(max(cycle, 0) + 1):
            if (c + feed) % self.change_every == 0 and c not in self.quiet:
                changes += 1
        return changes

    def body(self, feed: int, version: int) -> bytes:
        items = []
        for k in range(version, version - ITEMS, -1):
            link = f"https://site{feed % 997}.example/{feed}/story-{k}/"
            items.append(
                f"<item><title>Feed {feed} story {k}: {GENERIC[(feed + k) % len(GENERIC)][:80]}"
                f"</title><link>{link}</link><guid>{link}</guid>"
                f"<description>{self.descriptions[k % ITEMS]}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Feed {feed}</title><link>https://site{feed % 997}.example/</link>"
            f"<description>Simulated feed {feed}</description>{''.join(items)}</channel></rss>"
        ).encode()


class FeedProtocol(asyncio.Protocol):
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        if self.busy or b"\r\n\r\n" not in self.buffer:
            return
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        self.busy = True
        now = time.time()
        if method == "POST":
            self.sim.alerts += 1
            self._send(200, {}, b"")
            return
        try:
            feed = int(path.rsplit("/", 1)[1])
        except ValueError:
            self._send(404, {}, b"")
            return
        version = self.sim.version(feed, now)
        etag = f'"{feed}-{version}"'
        status = 304 if headers.get("if-none-match") == etag else 200
        self.sim.log.append((feed, now, status))
        body = self.sim.body(feed, version) if status == 200 else b""
        delay = self.sim.rng.uniform(self.sim.spec["min_delay"], self.sim.spec["max_delay"])
        extra = {"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"}
        asyncio.get_running_loop().call_later(delay, self._send, status, extra, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if status != 304:
            lines.append(f"Content-Length: {len(body)}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.busy = False
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(spec: dict[str, Any]) -> None:
    sim = Simulation(spec)
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(
            lambda: FeedProtocol(sim), host_address(n), spec["port"], backlog=1024
        )
        for n in range(spec["hosts"])
    ]
    Path(spec["ready"]).touch()
    await asyncio.sleep(max(0.0, spec["start"] + spec["duration"] - time.time()))
    for server in servers:
        server.close()
    Path(spec["log"]).write_text(json.dumps({"requests": sim.log, "alerts": sim.alerts}))


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))
