"""Distinct stories stay distinct: the identity rules on real-world shapes (issue 12).

Pure rules first (title keys, publisher names, fingerprints), then whole polls through
`once` in process (CliRunner) against a local feed server, a real SQLite file and a
real Apprise json:// receiver.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from monitor.cli import cli
from monitor.identity import (
    entry_key,
    fingerprint,
    legacy_fingerprint,
    publisher_names,
    shared_links,
    source_keys,
    title_key,
    with_keys,
)
from monitor.models import Entry
from tests.helpers import rss, write_config
from tests.servers import AlertSink, FeedServer

NOW = time.time()
YEAR = 365 * 86400.0


def test_a_part_number_is_not_a_publisher() -> None:
    parts = [title_key(f"Lost Shows of 2007 - Part {n}") for n in (1, 2, 3)]
    assert len(set(parts)) == 3
    assert title_key("Lost Shows of 2007 - Part 2", publisher_names("Lost Shows", None)) == (
        "lost shows of 2007 part 2"
    )


def test_a_publisher_suffix_is_dropped_only_when_it_names_the_publisher() -> None:
    plain = title_key("Russia to deliver second S-400 batch to Turkey")
    reuters = publisher_names("Reuters", "https://www.reuters.com")
    for copy, names in [
        ("Russia to deliver second S-400 batch to Turkey - Reuters", reuters),
        ("Russia to deliver second S-400 batch to Turkey | Reuters.com", reuters),
        ("Russia to deliver second S-400 batch to Turkey — REUTERS", reuters),
        # the feed's own title, or its host, names the publisher too
        ("Russia to deliver second S-400 batch to Turkey | Defense News",
         publisher_names("Defense News", "https://www.defensenews.com/rss/")),
        ("Russia to deliver second S-400 batch to Turkey - Defense News",
         publisher_names(None, "https://defensenews.com/feed")),
        ("Russia to deliver second S-400 batch to Turkey - BBC News",
         publisher_names("BBC News - World", None)),
    ]:  # fmt: skip
        assert title_key(copy, names) == plain, copy
    # Without that knowledge a suffix is part of the title.
    assert title_key("Russia to deliver second S-400 batch to Turkey - Reuters") != plain
    assert title_key("Russia to deliver second S-400 batch to Turkey - Analysis", reuters) != plain


def test_the_entry_link_host_names_its_publisher() -> None:
    entry = with_keys(Entry("k", "Frigate launched - Naval News", "https://navalnews.com/a/1"))
    assert entry.title_key == "frigate launched"


def test_fingerprints_keep_the_whole_title() -> None:
    assert fingerprint("Lost Shows of 2007 - Part 1", None) != fingerprint(
        "Lost Shows of 2007 - Part 2", None
    )
    # What earlier versions stored is still recognized (no second alert after an upgrade).
    old = legacy_fingerprint("Lost Shows of 2007 - Part 1", 5.0)
    title = "Lost Shows of 2007 - Part 1"
    keys = source_keys(Entry("hash:" + fingerprint(title, 5.0), title, None, published=5.0), set())
    assert keys.legacy_key == "hash:" + old != keys.entry_key


# --- whole polls ------------------------------------------------------------------------


def once(config: Path) -> str:
    result = CliRunner().invoke(cli, ["once", "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert " 0 failed, " in result.output, result.output
    return result.output


def alerted(sink: AlertSink) -> Counter[str]:
    return Counter(a["title"].split("] ", 1)[1] for a in sink.received)


def item(title: str, **fields: Any) -> dict[str, Any]:
    return {"title": title, "published": NOW - 600, **fields}


def test_podcast_parts_linking_to_the_front_page_are_three_stories(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    parts = [
        item(f"Lost Shows of 2007 - Part {n}", guid=f"tag:radio.example,2007:{n}",
             link="https://radio.example/", description="The S-400 episode")
        for n in (1, 2, 3)
    ]  # fmt: skip
    feeds.serve("/pod", rss(parts[:1], title="Radio Example"))
    config = write_config(tmp_path, feeds=[feeds.url("/pod")], notify=[sink.url])
    once(config)
    feeds.serve("/pod", rss(parts, title="Radio Example"))  # Parts 2 and 3 arrive later
    once(config)
    assert alerted(sink) == Counter({f"Lost Shows of 2007 - Part {n}": 1 for n in (1, 2, 3)})


def test_same_title_a_year_apart_in_one_feed_is_two_stories(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    feedburner = "https://feedproxy.google.com/~r/blogspot/RLXA/~3/{}/"
    posts = [
        item("GTAC Diversity Scholarship on F-35 testing", guid="tag:blogger.com,1999:post-1",
             link=feedburner.format("AbCdEfGhIjK1"), published=NOW - YEAR),
        item("GTAC Diversity Scholarship on F-35 testing", guid="tag:blogger.com,1999:post-2",
             link=feedburner.format("ZyXwVuTsRqP2"), published=NOW - 3600),
    ]  # fmt: skip
    feeds.serve("/blog", rss(posts, title="Testing Blog"))
    config = write_config(
        tmp_path, feeds=[feeds.url("/blog")], notify=[sink.url],
        defaults="{interval: 15m, timeout: 5s, max_age: 800d, jitter: 0.1s}",
    )  # fmt: skip
    once(config)
    assert alerted(sink) == Counter({"GTAC Diversity Scholarship on F-35 testing": 2})
    once(config)  # a second poll of the same document recognizes both
    assert len(sink.received) == 2


def test_same_title_in_one_feed_within_days_is_still_two_stories(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    # A daily show with one title: distinct guids, opaque links, a day apart.
    shows = [
        item("Slow News in German", guid=f"show-{n}", description="F-35 order",
             link=f"https://feeds.feedburner.com/~r/slow/~3/Tok{n}abcdefghijklmnopqrstuvwxyz/",
             published=NOW - 86400 * n)
        for n in (1, 2)
    ]  # fmt: skip
    feeds.serve("/daily", rss(shows[:1]))
    config = write_config(tmp_path, feeds=[feeds.url("/daily")], notify=[sink.url])
    once(config)
    feeds.serve("/daily", rss(shows))
    once(config)
    assert alerted(sink) == Counter({"Slow News in German": 2})


def test_a_regenerated_guid_with_the_same_opaque_link_and_title_is_the_same_story(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    link = "https://feedproxy.google.com/~r/defense/~3/QwErTyUiOp12/"
    feeds.serve("/f", rss([item("S-400 radar moved", guid="guid-v1", link=link)]))
    config = write_config(tmp_path, feeds=[feeds.url("/f")], notify=[sink.url])
    once(config)
    feeds.serve("/f", rss([item("S-400 radar moved", guid="guid-v2-regenerated", link=link)]))
    once(config)
    assert alerted(sink) == Counter({"S-400 radar moved": 1})


def test_aggregator_copies_join_across_feeds_only_within_the_window(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    google = "https://news.google.com/rss/articles/CBMi{}?oc=5"
    agg = [
        item("Turkey tests S-400 radar - Reuters", guid="g1", source=("Reuters", "https://www.reuters.com"),
             link=google.format("AaBbCcDdEeFfGgHhIiJjKkLl1")),
        # The same words, from an archive a year old: another story.
        item("Greece buys F-35 jets - Reuters", guid="g2", source=("Reuters", "https://www.reuters.com"),
             link=google.format("ZzYyXxWwVvUuTtSsRrQqPp22"), published=NOW - YEAR),
    ]  # fmt: skip
    pub = [
        item("Turkey tests S-400 radar", guid="r1", link="https://reuters.com/world/turkey-s400/"),
        item("Greece buys F-35 jets", guid="r2", link="https://reuters.com/world/greece-f35/"),
    ]
    feeds.serve("/agg", rss(agg, title='"S-400" - Google News'))
    feeds.serve("/pub", rss(pub, title="Reuters"))
    config = write_config(
        tmp_path, feeds=[feeds.url("/agg"), feeds.url("/pub")], notify=[sink.url],
        defaults="{interval: 15m, timeout: 5s, max_age: 800d, jitter: 0.1s}",
    )  # fmt: skip
    once(config)
    titles = alerted(sink)
    assert titles["Greece buys F-35 jets"] == 1 and titles["Greece buys F-35 jets - Reuters"] == 1
    assert titles["Turkey tests S-400 radar"] + titles["Turkey tests S-400 radar - Reuters"] == 1


def test_a_story_stored_under_an_earlier_fingerprint_is_not_new_again(tmp_path: Path) -> None:
    from monitor.identity import TITLE_WINDOW
    from monitor.match import Matcher
    from monitor.models import PollRecord
    from monitor.pipeline import plan_poll
    from monitor.store import Store

    title = "Lost Shows of 2007 - Part 1"
    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]

    def poll(key: str) -> int:
        entry = Entry(key, title, None, published=NOW - 60)
        keyed = [(entry, source_keys(entry, set()))]
        lookup = store.lookup(feed.id, [keys for _, keys in keyed], NOW - TITLE_WINDOW)
        plan = plan_poll(keyed, lookup, Matcher([]), feed_id=feed.id, feed_name="E", now=NOW,
                         max_age=86400)  # fmt: skip
        store.save_poll(feed.id, PollRecord(NOW, NOW + 900, status=200), plan)
        return len(plan.new)

    assert poll("hash:" + legacy_fingerprint(title, NOW - 60)) == 1  # as an earlier version
    assert poll("hash:" + fingerprint(title, NOW - 60)) == 0  # this version: known
    assert poll("hash:" + fingerprint(title, NOW - 60)) == 0  # now by its own key
    store.close()


def keys_of(*entries: Entry) -> list[str]:
    keyed = [with_keys(entry) for entry in entries]
    shared = shared_links(keyed)
    return [source_keys(entry, shared).entry_key for entry in keyed]


def test_links_that_differ_only_by_fragment_tell_no_entry_apart() -> None:
    # A newsletter archive: no guids, one title, one page, an anchor per issue.
    issues = [
        Entry(entry_key(None, f"https://news.example/entries.php#{n}", "newsletter", 86400.0 * n),
              "newsletter", f"https://news.example/entries.php#{n}", published=86400.0 * n)
        for n in (110, 111)
    ]  # fmt: skip
    assert len(set(keys_of(*issues))) == 2
    # Blogger posts with distinct guids, one title, linked to a monthly archive page.
    posts = [
        Entry(f"id:tag:blogger.com,1999:post-{n}", "Programme change",
              f"https://blog.example/archive/2005_11_01_archive_page#{n}")
        for n in (1131, 1134)
    ]  # fmt: skip
    keys = keys_of(*posts)
    assert keys == ["id:tag:blogger.com,1999:post-1131", "id:tag:blogger.com,1999:post-1134"]
    keyed = [with_keys(post) for post in posts]
    assert not any(source_keys(post, shared_links(keyed)).own_link for post in keyed)


def test_a_guid_given_to_every_item_tells_none_apart() -> None:
    page = "https://moe.example/media/spotlight/"
    items = [
        Entry("id:" + page, title, f"https://moe.example/media/{slug}", published=5.0)
        for title, slug in [("Single-session schools", "a"), ("Work plan seminar", "b")]
    ]
    assert keys_of(*items) == [
        "link:https://moe.example/media/a",
        "link:https://moe.example/media/b",
    ]
    same_link = [Entry("id:" + page, title, page) for title in ("One", "Two")]
    first, second = keys_of(*same_link)
    assert first != second and first.startswith("hash:")
