"""Shared fixtures: real local servers, feed documents and config files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from email.utils import formatdate
from html import escape
from pathlib import Path
from typing import Any

import pytest

from tests.servers import AlertSink, FeedServer, alert_sink, feed_server

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with feed_server() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    with alert_sink() as server:
        yield server


def rss(items: Sequence[dict[str, Any]], title: str = "Test Feed") -> str:
    """An RSS 2.0 document; each item may have title, link, guid, description, published,
    source."""
    parts = []
    for item in items:
        fields = []
        for tag in ("title", "link", "guid", "description"):
            if tag in item:
                fields.append(f"<{tag}>{escape(item[tag])}</{tag}>")
        if "source" in item:  # an aggregator's source element: (name, url)
            name, url = item["source"]
            fields.append(f'<source url="{escape(url)}">{escape(name)}</source>')
        if "published" in item:
            fields.append(f"<pubDate>{formatdate(item['published'], usegmt=True)}</pubDate>")
        parts.append("<item>" + "".join(fields) + "</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        f"<description>test</description>{''.join(parts)}</channel></rss>"
    )


def seed_article_item(
    link: str = "https://bulgarianmilitary.com/2020/08/s400-turkey/",
) -> dict[str, Any]:
    """The sample article (tests/data/seed-article.txt) as a feed item published just now."""
    text = (DATA / "seed-article.txt").read_text(encoding="utf-8")
    headline, _, rest = text.partition("\n")
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in rest.split("\n") if p.strip())
    return {
        "title": headline.strip(),
        "link": link,
        "guid": link,
        "description": paragraphs,
        "published": time.time() - 3600,
    }


def numbered_items(title: str, count: int, key: str = "") -> list[dict[str, Any]]:
    """``count`` fresh stories, ``title`` with ``{n}`` filled in as 0, 1, ..."""
    now = time.time()
    return [
        {"title": title.format(n=n), "link": f"https://e.org/{key}{n}", "guid": f"{key or 'g'}{n}",
         "published": now - 60}
        for n in range(count)
    ]  # fmt: skip


def write_config(
    directory: Path,
    *,
    feeds: Sequence[str],
    notify: Sequence[str] = (),
    keywords: Sequence[str] = ("S-400", "CAATSA", "F-35"),
    extra: str = "",
    defaults: str = "{interval: 15m, timeout: 5s, max_age: 7d, jitter: 0.1s}",
) -> Path:
    if "full_text" not in defaults:
        # Test feeds link to made-up hosts (e.org): opening their article pages would only
        # wait for DNS. The tests of full text (test_full_text.py) say what they want.
        defaults = defaults.rstrip().removesuffix("}") + ", full_text: never}"
    lines = [
        "database: monitor.db",
        f"defaults: {defaults}",
        "feeds:" + ("" if feeds else " []"),
        *(f"  - url: {url}" for url in feeds),
        "watchlists:",
        "  - name: turkey-air-defense",
        f"    keywords: [{', '.join(keywords)}]",
        "notify:" + ("" if notify else " []"),
        *(f'  - "{url}"' for url in notify),
        extra,
    ]
    path = directory / "monitor.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*args: str | Path, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``python -m monitor ARGS`` as a user would, and capture what it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FEED_MONITOR_CONFIG", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "monitor", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kwargs.pop("cwd", REPO),
        env=env,
        check=False,
        **kwargs,
    )
