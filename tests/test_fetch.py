"""HTTP fetching against a real local server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.errors import FetchError, HTTPStatusError
from monitor.fetch import Fetcher
from tests.servers import QuietHandler, serving

FEED = b"<rss version='2.0'><channel><title>t</title></channel></rss>"
BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB inflated, ~64 KiB on the wire


class Handler(QuietHandler):
    stop = threading.Event()

    def do_GET(self) -> None:
        path = self.path
        if path == "/gzip":
            self.reply(200, gzip.compress(FEED), {"Content-Encoding": "gzip", "ETag": '"v1"'})
        elif path == "/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self.reply(304, b"", {"ETag": '"v1"'})
            else:
                self.reply(
                    200, FEED, {"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 10:00:00 GMT"}
                )
        elif path == "/big-headers":
            self.reply(200, FEED, {"Content-Security-Policy": "default-src 'self' " + "x" * 20000})
        elif path == "/deflate":
            self.reply(200, zlib.compress(FEED), {"Content-Encoding": "deflate"})
        elif path == "/bomb":
            self.reply(200, BOMB, {"Content-Encoding": "gzip"})
        elif path == "/huge":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            try:
                for _ in range(64):
                    self.wfile.write(b"x" * 1024 * 1024)
            except OSError:
                pass
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                while not self.stop.wait(0.1):  # a byte every 0.1 s keeps read timeouts happy
                    self.wfile.write(b"<")
                    self.wfile.flush()
            except OSError:
                pass
        elif path == "/loop":
            self.reply(302, b"", {"Location": "/loop"})
        elif path == "/moved":
            self.reply(301, b"", {"Location": "/gzip"})
        elif path == "/error":
            self.reply(503, b"busy", {})
        else:
            self.reply(404, b"no", {})


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(Handler) as port:
        yield f"http://127.0.0.1:{port}"
        Handler.stop.set()


def fetch(url: str, **kwargs: Any) -> Any:
    async def go() -> Any:
        async with Fetcher(max_bytes=1024 * 1024) as fetcher:
            return await fetcher.fetch(url, timeout=kwargs.pop("timeout", 5), **kwargs)

    return asyncio.run(go())


def test_gzip_is_decoded(base: str) -> None:
    result = fetch(base + "/gzip")
    assert result.status == 200 and result.body == FEED and result.etag == '"v1"'


def test_long_response_headers_are_accepted(base: str) -> None:
    assert fetch(base + "/big-headers").body == FEED


def test_deflate_is_decoded(base: str) -> None:
    assert fetch(base + "/deflate").body == FEED


def test_conditional_get_gives_304(base: str) -> None:
    first = fetch(base + "/etag")
    assert first.last_modified == "Tue, 24 Nov 2026 10:00:00 GMT"
    again = fetch(base + "/etag", etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and again.body == b""


def test_redirects_are_followed_and_loops_reported(base: str) -> None:
    assert fetch(base + "/moved").url == base + "/gzip"
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(base + "/loop")


def test_body_and_inflated_size_are_capped(base: str) -> None:
    with pytest.raises(FetchError, match="larger than 1024 KiB"):
        fetch(base + "/huge")
    with pytest.raises(FetchError, match="larger than 1024 KiB"):
        fetch(base + "/bomb")


def test_a_trickling_server_hits_the_total_deadline(base: str) -> None:
    async def go() -> Any:
        # Bounded from outside too: should the fetch's own deadline not end it, this one
        # does, with a TimeoutError rather than the FetchError expected.
        async with asyncio.timeout(5), Fetcher(max_bytes=1024 * 1024) as fetcher:
            return await fetcher.fetch(base + "/trickle", timeout=1)

    with pytest.raises(FetchError, match="timed out after 1s"):
        asyncio.run(go())


def test_http_errors_carry_their_status(base: str) -> None:
    with pytest.raises(HTTPStatusError) as info:
        fetch(base + "/error")
    assert info.value.status == 503 and "HTTP 503" in str(info.value)


def test_unresolvable_host_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="cannot connect"):
        fetch("http://no-such-host.invalid/feed.xml")


def test_a_moved_feed_keeps_its_credentials_on_its_own_origin_only() -> None:
    from monitor.fetch import moved_url

    configured = "https://reader:pw-Secret@feeds.example/old.xml"
    assert moved_url(configured, None) == configured
    assert moved_url(configured, "https://feeds.example/new.xml") == (
        "https://reader:pw-Secret@feeds.example/new.xml"
    )
    # Another host, scheme or port never gets them.
    for elsewhere in ("https://other.example/new.xml", "http://feeds.example/new.xml",
                      "https://feeds.example:8443/new.xml"):  # fmt: skip
        assert moved_url(configured, elsewhere) == elsewhere
    assert moved_url("https://feeds.example/a", "https://feeds.example/b") == (
        "https://feeds.example/b"
    )


def test_a_password_protected_feed_that_moved_is_fetched_with_its_password(
    tmp_path: Any, feeds: Any
) -> None:
    from tests.helpers import cli, rss, write_config

    new = feeds.serve("/new.xml", rss([{"title": "x", "link": "https://e.org/x", "guid": "x"}]))
    feeds.serve("/old.xml", "", status=301, headers={"Location": new})
    old = feeds.url("/old.xml").replace("http://", "http://reader:pw-Secret-9@")
    config = write_config(tmp_path, feeds=[old], defaults="{interval: 1s, min_interval: 1s}")
    for _ in range(2):  # the move, then a poll of the new address
        result = cli("once", "--config", config)
        assert result.returncode == 0, result.stderr
    later = feeds.hits("/new.xml")[-1]
    assert later.get("authorization", "").startswith("Basic "), later
    assert len(feeds.hits("/old.xml")) == 1  # the move was remembered
