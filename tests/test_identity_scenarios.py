"""Multi-round, multi-feed scenarios through the CLI: exactly one alert per real story."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from tests.helpers import cli, rss, write_config
from tests.servers import AlertSink, FeedServer

NOW = time.time()


def atom(entries: list[dict[str, Any]]) -> str:
    parts = []
    for entry in entries:
        fields = [f"<title>{escape(entry['title'])}</title>"]
        if "id" in entry:
            fields.append(f"<id>{escape(entry['id'])}</id>")
        if "link" in entry:
            fields.append(f'<link href="{escape(entry["link"])}"/>')
        fields.append("<updated>2026-11-24T10:00:00Z</updated>")
        parts.append("<entry>" + "".join(fields) + "</entry>")
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Atom Wire</title><id>urn:feed</id><updated>2026-11-24T10:00:00Z</updated>"
        + "".join(parts)
        + "</feed>"
    )


class Scenario:
    """Feeds on a local server, polled round after round with `feed-monitor once`."""

    def __init__(self, tmp_path: Path, feeds: FeedServer, sink: AlertSink, paths: list[str]):
        self.feeds, self.sink, self.tmp_path = feeds, sink, tmp_path
        for path in paths:
            feeds.serve(path, rss([]))
        self.config = write_config(
            tmp_path, feeds=[feeds.url(p) for p in paths], notify=[sink.url], keywords=["S-400"]
        )

    def round(self, **documents: str) -> None:
        for path, body in documents.items():
            self.feeds.serve(f"/{path}", body, content_type="application/xml")
        result = cli("once", "--config", self.config)
        assert result.returncode == 0, result.stderr
        assert " 0 failed, " in result.stdout, result.stdout + result.stderr

    def alerts(self) -> Counter[str]:
        """Alerts received so far, by story title."""
        return Counter(a["title"].removeprefix("[turkey-air-defense] ") for a in self.sink.received)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.tmp_path / "monitor.db")


def item(title: str, **fields: Any) -> dict[str, Any]:
    return {"title": title, "published": NOW - 600, **fields}


def test_same_story_across_rss_atom_and_tracking_links(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    s = Scenario(tmp_path, feeds, sink, ["/a", "/b"])
    url = "https://www.defensenews.com/2026/11/24/s-400-turkey/"
    s.round(a=rss([item("S-400 deal signed", link=url, guid="a-1")]))
    s.round(
        b=atom([{"title": "S-400 deal signed", "id": "urn:b-9",
                 "link": "http://defensenews.com/2026/11/24/s-400-turkey?utm_source=rss#top"}])
    )  # fmt: skip
    s.round()  # everything again, nothing new
    assert s.alerts() == Counter({"S-400 deal signed": 1})
    with s.db() as db:
        assert db.execute("SELECT count(*) FROM stories").fetchone()[0] == 1
        feeds_seen = db.execute("SELECT count(DISTINCT feed_id) FROM story_sources").fetchone()
        assert feeds_seen[0] == 2


def test_aggregator_copies_with_opaque_links_are_matched_by_title(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    s = Scenario(tmp_path, feeds, sink, ["/agg", "/pub"])
    # Google News names each copy's source in <source>; its title ends with that name.
    google = "https://news.google.com/rss/articles/CBMi{}?oc=5"
    s.round(
        agg=rss([
            item("Russia to deliver second S-400 batch to Turkey - Reuters",
                 link=google.format("AaBbCcDdEeFfGgHhIiJjKkLl1"), guid="g1",
                 source=("Reuters", "https://www.reuters.com")),
            item("Russia to deliver second S-400 batch to India - TASS",
                 link=google.format("ZzYyXxWwVvUuTtSsRrQqPp22"), guid="g2",
                 source=("TASS", "https://tass.com")),
        ])
    )  # fmt: skip
    s.round(
        pub=rss([item("Russia to deliver second S-400 batch to Turkey",
                      link="https://reuters.example/world/russia-s400-turkey-2026-11-24/")])
    )  # fmt: skip
    assert s.alerts() == Counter(
        {
            "Russia to deliver second S-400 batch to Turkey - Reuters": 1,
            "Russia to deliver second S-400 batch to India - TASS": 1,
        }
    )


def test_edited_recycled_and_returning_entries_do_not_alert_again(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    s = Scenario(tmp_path, feeds, sink, ["/f"])
    link = "https://bulgarianmilitary.com/2026/11/24/s-400-second-batch/"
    s.round(f=rss([item("S-400 second batch", link=link, guid="wp-101")]))
    # The publisher edits the title and text.
    s.round(f=rss([item("S-400 second batch for Turkey (updated)", link=link, guid="wp-101",
                        description="Now with a statement from Rostec.")]))  # fmt: skip
    with s.db() as db:
        [(title, summary)] = db.execute(
            "SELECT title, summary FROM stories WHERE link = ?", [link]
        ).fetchall()
    assert title == "S-400 second batch for Turkey (updated)"
    assert summary == "Now with a statement from Rostec."
    # The CMS regenerates the guid of the same article.
    s.round(f=rss([item("S-400 second batch for Turkey (updated)", link=link, guid="wp-9f3e2")]))
    # The story drops out of the feed, then comes back.
    s.round(f=rss([item("Other S-400 news", link="https://bulgarianmilitary.com/x/", guid="x")]))
    s.round(f=rss([item("S-400 second batch for Turkey (updated)", link=link, guid="wp-101")]))
    assert s.alerts() == Counter({"S-400 second batch": 1, "Other S-400 news": 1})
    with s.db() as db:
        sources = db.execute("SELECT count(*) FROM story_sources").fetchone()[0]
    assert sources == 3  # wp-101, the regenerated wp-9f3e2, and the other story


def test_a_feed_reusing_one_link_for_every_item_keeps_its_stories_apart(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    s = Scenario(tmp_path, feeds, sink, ["/press"])
    page = "https://mod.example/press-releases"
    releases = [item(f"S-400 statement no. {n}", link=page) for n in (1, 2, 3, 4)]
    s.round(press=rss(releases[:2]))
    s.round(press=rss(releases[:3]))
    s.round(press=rss(releases[3:]))  # one item alone: the link is still known to be shared
    s.round(press=rss(releases[:1]))
    assert s.alerts() == Counter({f"S-400 statement no. {n}": 1 for n in (1, 2, 3, 4)})


def test_entries_without_guid_or_link_are_fingerprinted(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    s = Scenario(tmp_path, feeds, sink, ["/bare"])
    bare = [item("S-400 radar spotted"), item("S-400 radar spotted near Ankara")]
    s.round(bare=rss(bare))
    s.round(bare=rss(list(reversed(bare))))
    assert s.alerts() == Counter({"S-400 radar spotted": 1, "S-400 radar spotted near Ankara": 1})
