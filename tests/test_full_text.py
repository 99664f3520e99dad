"""Full article text and pages without a feed, through the whole pipeline (`once`): a
teaser feed whose article pages sit on a real local site, and a ministry press room
read by CSS selectors. The steps themselves are tested in test_article.py and
test_scrape.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import cli as feed_monitor
from tests.helpers import edit_config, rss, write_config
from tests.news_pages import (
    BOILERPLATE,
    news_site_page,
    press_list_page,
    press_releases,
    seed_article,
    wordpress_page,
)
from tests.servers import AlertSink, FeedServer

HTML = "text/html; charset=utf-8"
AUTO = "{interval: 15m, timeout: 5s, max_age: 7d, jitter: 0.1s, full_text: auto}"  # the default


def once(config: Path) -> dict[str, object]:
    result = CliRunner().invoke(feed_monitor, ["once", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def teaser_feed(feeds: FeedServer, pages: dict[str, str]) -> str:
    """A feed of teasers (the first sentence, cut off), one item per article page."""
    seed = seed_article()
    items = [
        {"title": seed.headline if n == 0 else f"{seed.headline} ({n})",
         "link": feeds.url(path), "guid": path, "description": seed.teaser,
         "published": time.time() - 600}
        for n, path in enumerate(pages)
    ]  # fmt: skip
    for path, page in pages.items():
        feeds.serve(path, page, content_type=HTML)
    return feeds.serve("/feed.xml", rss(items, title="BulgarianMilitary"))


def test_a_term_only_in_the_article_body_alerts_with_the_articles_sentence(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = teaser_feed(feeds, {"/2020/08/s400-turkey/": news_site_page(seed_article())})
    assert "F-35" not in seed_article().teaser  # the feed alone would miss it
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], keywords=["F-35"], defaults=AUTO
    )
    report = once(config)
    assert report["alerts_queued"] == 1
    [alert] = sink.wait_for(1)
    assert "F-35" in alert["message"]
    for boilerplate in BOILERPLATE:
        assert boilerplate not in alert["message"]
    # Only new stories: a re-poll of the same feed opens no page again.
    feeds.serve("/feed.xml", feeds.routes["/feed.xml"].body + b" ")  # a new body, same items
    once(config)
    assert len(feeds.hits("/2020/08/s400-turkey/")) == 1


def test_a_failed_page_falls_back_to_the_feed_text_and_is_shown_in_status(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = teaser_feed(feeds, {"/gone/": "x"})
    feeds.routes["/gone/"].status = 404
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], keywords=["S-400"], defaults=AUTO
    )
    report = once(config)
    assert report["alerts_queued"] == 1  # the teaser's own term still alerts
    assert "S-400" in sink.wait_for(1)[0]["title"]
    status = CliRunner().invoke(feed_monitor, ["status", "--json", "--config", str(config)])
    [feed] = json.loads(status.stdout)["feeds"]
    assert feed["article_failures"] == 1 and "404" in feed["last_article_error"]


def test_full_text_never_opens_no_page(tmp_path: Path, feeds: FeedServer, sink: AlertSink) -> None:
    url = teaser_feed(feeds, {"/a/": wordpress_page(seed_article())})
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], keywords=["F-35"],
        defaults="{interval: 15m, timeout: 5s, max_age: 7d, jitter: 0.1s, full_text: never}",
    )  # fmt: skip
    assert once(config)["alerts_queued"] == 0
    assert feeds.hits("/a/") == []


def test_a_press_room_without_a_feed_alerts_like_a_feed(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/press/", press_list_page(press_releases()), content_type=HTML)
    config = write_config(
        tmp_path, feeds=[], notify=[sink.url], keywords=["F-35"],
        defaults="{interval: 15m, timeout: 5s, max_age: 3650d, jitter: 0.1s, full_text: never}",
    )  # fmt: skip
    scrape = {"item": "div.release", "title": "h2", "link": "h2 a", "date": "time", "summary": "p"}
    edit_config(config, lambda c: c.update(feeds=[{"url": url, "name": "Ministry press",
                                                   "scrape": scrape}]))  # fmt: skip
    report = once(config)
    assert report["new_stories"] == 3 and report["alerts_queued"] == 1
    [alert] = sink.wait_for(1)
    assert alert["title"] == "[turkey-air-defense] Statement on the F-35 training detachment"
    assert feeds.url("/press/2026/11/f35-detachment") in alert["message"]
    # An unchanged page is not read again (conditional GET).
    assert once(config)["new_stories"] == 0
    assert feeds.hits("/press/")[-1].get("if-none-match")
