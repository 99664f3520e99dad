"""A redirect (or a page a feed links to) may not cross from a public address into the
machine or its private network, unless the config allows it.

No test can own a public address, so the tests make 127.0.0.1 (and ::1) the only "local"
network and serve the "public" feed from 127.0.0.2 (Linux routes all of 127/8 to lo).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from monitor.config_load import load_config
from monitor.errors import FetchError
from monitor.fetch import Fetcher, RedirectPolicy
from monitor.models import FetchResult
from monitor.parser_pool import ParserPool
from monitor.pipeline import Poller
from monitor.store import Store
from tests.helpers import rss, seed_article_item, write_config
from tests.servers import QuietHandler, serving

LOCAL_ONLY_127_0_0_1 = (ip_network("127.0.0.1/32"), ip_network("::1/128"))
POLICY = RedirectPolicy(local_networks=LOCAL_ONLY_127_0_0_1)
SECRET_FEED = rss([{**seed_article_item(), "title": "S-400 internal only"}]).encode()


@contextmanager
def server_on(host: str, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> Iterator[Any]:
    """An HTTP server on ``host`` answering ``routes``; yields (base URL, requested paths)."""
    hits: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            status, headers, body = routes.get(self.path, (404, {}, b""))
            self.reply(status, body, {"Content-Type": "application/rss+xml", **headers})

    with serving(Handler, host) as port:
        yield f"http://{host}:{port}", hits


@pytest.fixture(scope="module")
def local() -> Iterator[Any]:
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        "/secret.xml": (200, {}, SECRET_FEED),
        "/moved.xml": (301, {"Location": "/secret.xml"}, b""),
    }
    with server_on("127.0.0.1", routes) as served:
        yield served


@pytest.fixture(scope="module")
def public(local: Any) -> Iterator[str]:
    local_base, _ = local
    port = local_base.rsplit(":", 1)[1]
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        "/to-ip.xml": (302, {"Location": f"{local_base}/secret.xml"}, b""),
        "/to-name.xml": (302, {"Location": f"http://localhost:{port}/secret.xml"}, b""),
        "/to-mapped.xml": (302, {"Location": f"http://[::ffff:127.0.0.1]:{port}/secret.xml"}, b""),
        "/public.xml": (200, {}, rss([seed_article_item()]).encode()),
    }
    with server_on("127.0.0.2", routes) as (base, _):
        yield base


def fetch(url: str, policy: RedirectPolicy = POLICY, **kwargs: Any) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(redirect_policy=policy) as fetcher:
            return await fetcher.fetch(url, timeout=5, **kwargs)

    return asyncio.run(go())


@pytest.mark.parametrize("path", ["/to-ip.xml", "/to-name.xml"])
def test_a_public_feed_redirecting_into_the_local_network_is_refused(
    public: str, local: Any, path: str
) -> None:
    _, hits = local
    before = len(hits)
    with pytest.raises(FetchError, match=r"redirect from a public address to .* was refused"):
        fetch(public + path)
    assert len(hits) == before  # refused before connecting: nothing was sent there


def test_configured_local_feeds_and_redirects_within_the_local_network_work(local: Any) -> None:
    base, _ = local
    assert fetch(base + "/secret.xml").body == SECRET_FEED
    moved = fetch(base + "/moved.xml")
    assert (moved.body, moved.moved_to) == (SECRET_FEED, base + "/secret.xml")


def test_the_config_can_allow_private_redirects(public: str, local: Any) -> None:
    base, _ = local
    allowing = RedirectPolicy(allow_private=True, local_networks=LOCAL_ONLY_127_0_0_1)
    result = fetch(public + "/to-ip.xml", allowing)
    assert (result.url, result.body) == (base + "/secret.xml", SECRET_FEED)


def test_a_page_linked_from_a_public_feed_is_held_to_the_same_rule(public: str, local: Any) -> None:
    base, hits = local
    public_feed = fetch(public + "/public.xml")  # its address is now known to be public
    before = len(hits)
    with pytest.raises(FetchError, match="refused"):
        fetch(base + "/secret.xml", linked_from=public_feed.url)
    assert len(hits) == before
    # Linked from a local (intranet) feed, the same page is fine.
    assert fetch(base + "/secret.xml", linked_from=base + "/moved.xml").body == SECRET_FEED


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "::", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
     "::ffff:169.254.169.254"],
)  # fmt: skip
def test_local_addresses(address: str) -> None:
    assert RedirectPolicy().is_local(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert not RedirectPolicy().is_local(address)


def test_a_poll_refuses_only_the_feed_that_redirects_inward(
    tmp_path: Path, public: str, local: Any
) -> None:
    base, _ = local
    config = load_config(
        write_config(tmp_path, feeds=[public + "/to-name.xml", base + "/secret.xml"]),
        check_notify=False,
    )
    assert config.allow_private_redirects is False  # the default

    async def poll() -> list[Any]:
        with Store.open(config.database) as store, ParserPool(workers=1) as parser:
            async with Fetcher(redirect_policy=POLICY) as fetcher:
                poller = Poller(config, store, fetcher, parser=parser)
                return await poller.poll_all()

    refused, intranet = asyncio.run(poll())
    assert not refused.ok and "refused" in (refused.error or "")
    assert "allow_private_redirects" in (refused.error or "")
    assert intranet.ok and intranet.new_stories == 1


def test_the_allow_key_is_read_from_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, feeds=[], extra="allow_private_redirects: true")
    config = load_config(path, check_notify=False)
    assert config.allow_private_redirects is True
    assert RedirectPolicy.from_config(config).allow_private
