"""search, matches and story through the CLI; retention; migrating an old database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import sqlite_utils

from monitor.outbox import Delivery
from monitor.store import Store, migrations
from tests.helpers import cli, rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer


def test_search_matches_and_story_views(tmp_path: Path, feeds: FeedServer, sink: AlertSink) -> None:
    link = "https://bulgarianmilitary.com/2020/08/s400-turkey/"
    a = feeds.serve("/a.xml", rss([seed_article_item(link)], title="BulgarianMilitary"))
    b = feeds.serve(
        "/b.xml",
        rss([{**seed_article_item(link + "?utm_source=x"), "guid": "other-guid"},
             {"title": "Log4j-core flaw hits C++ toolchains", "link": "https://e.org/log4j"}],
            title="Aggregator"),
    )  # fmt: skip
    config = write_config(tmp_path, feeds=[a, b], notify=[sink.url])
    assert cli("once", "--config", config).returncode == 0
    assert len(sink.wait_for(1)) == 1

    found = cli("search", "--config", config, "Rostec Chemezov")
    assert found.returncode == 0, found.stderr
    assert "S-400 missile system to Turkey" in found.stdout
    assert "»Rostec«" in found.stdout and "1 story" in found.stdout
    # Words that FTS syntax would choke on are searched as words.
    for query in ("log4j-core", "C++", "S-400"):
        result = cli("search", "--config", config, query, "--json")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip(), query

    listed = cli("matches", "--config", config, "--json")
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["alert_status"] == "sent" and row["keywords"] == ["S-400", "F-35"]

    shown = cli("story", "--config", config, str(row["story_id"]))
    assert shown.returncode == 0, shown.stderr
    assert "seen in 2 places" in shown.stdout
    assert "BulgarianMilitary" in shown.stdout and "Aggregator" in shown.stdout
    assert "[turkey-air-defense] matched S-400, F-35" in shown.stdout
    assert ": sent 20" in shown.stdout  # the alert, per target
    missing = cli("story", "--config", config, "999")
    assert missing.returncode == 2 and "no story #999" in missing.stderr


def test_retention_drops_text_but_never_re_alerts(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    assert cli("once", "--config", config).returncode == 0
    sink.wait_for(1)
    config.write_text(config.read_text() + "retention: {story_text: 1h}\n")
    with sqlite3.connect(tmp_path / "monitor.db") as db:  # the story is now two hours old
        db.execute("UPDATE stories SET first_seen = first_seen - 7200")
    feeds.serve("/f.xml", rss([seed_article_item()]) + " ")  # new body: no 304
    assert cli("once", "--config", config).returncode == 0
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        [(title, summary)] = db.execute("SELECT title, summary FROM stories").fetchall()
    assert summary == "" and "S-400" in title
    assert len(sink.received) == 1


def test_a_database_from_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations().apply(db, stop_before="m002_story_sources")
    db.execute("INSERT INTO feeds (id, url, name, added_at) VALUES (1, 'https://e.org/f', 'E', 0)")
    db.execute(
        "INSERT INTO stories (id, feed_id, key, title, link, summary, first_seen) VALUES "
        "(7, 1, 'id:g1', 'S-400 deal', 'https://e.org/s400?utm_source=x', 'Rostec said', 1)"
    )
    db.execute(
        "INSERT INTO matches (id, story_id, watchlist, keywords, terms, snippet, created_at) "
        """VALUES (1, 7, 'w', '["S-400"]', '["S-400"]', 'S-400 deal', 1)"""
    )
    db.execute(
        "INSERT INTO alerts (match_id, tags, title, body, status, next_attempt_at, created_at) "
        "VALUES (1, '[]', 't', 'b', 'pending', 1, 1)"
    )
    db.close()

    store = Store.open(path)
    [source] = store.story_sources(7)
    assert source.link == "https://e.org/s400?utm_source=x"
    assert [hit.story_id for hit in store.search("Rostec", since=0)] == [7]
    lookup = store.lookup(1, [], since=0)
    assert lookup.by_entry_key == {}
    row = store.db.execute(
        "SELECT story_id, canonical_link FROM story_sources WHERE entry_key = 'id:g1'"
    ).fetchone()
    assert row == (7, "https://e.org/s400")
    # The alert left pending by the old version is routed and sent with its full content.
    [alert] = store.unrouted_alerts()
    store.save_routes([alert.id], [Delivery("console", "alert", (alert.id,))], now=2)
    [delivery] = store.due_deliveries(now=2)
    [content] = delivery.contents
    assert (content.story_title, content.link, content.feed) == (
        "S-400 deal", "https://e.org/s400?utm_source=x", "E"
    )  # fmt: skip
    store.close()


def test_search_index_follows_edits_and_retention(tmp_path: Path) -> None:
    from monitor.identity import TITLE_WINDOW, source_keys
    from monitor.match import Matcher
    from monitor.models import Entry, PollRecord
    from monitor.pipeline import plan_poll

    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], 0)["https://e.org/f"]
    matcher = Matcher([])

    def poll(entry: Entry, now: float) -> None:
        keyed = [(entry, source_keys(entry, set()))]
        lookup = store.lookup(feed.id, [keys for _, keys in keyed], now - TITLE_WINDOW)
        decided = plan_poll(
            keyed, lookup, matcher, feed_id=feed.id, feed_name="E", now=now, max_age=1e9
        )
        store.save_poll(feed.id, PollRecord(now, now + 900, status=200), decided)

    first = Entry("id:1", "Frigate launched", "https://e.org/1", summary="Built in Gdansk")
    poll(first, 1000.0)
    assert [hit.story_id for hit in store.search("Gdansk", since=0)] == [1]  # indexed on demand
    poll(Entry("id:1", "Frigate launched", "https://e.org/1", summary="Built in Szczecin"), 2000.0)
    assert store.search("Gdansk", since=0) == []
    assert [hit.story_id for hit in store.search("Szczecin", since=0)] == [1]
    assert store.prune_text(before=5000.0) == 1
    assert store.search("Szczecin", since=0) == []
    assert [hit.story_id for hit in store.search("frigate", since=0)] == [1]
    fts_rows = store.db.execute("SELECT count(*) FROM stories_fts").fetchone()[0]
    assert fts_rows == 1
    # FTS5 raises if its index disagrees with the stories table (rank 1: check the content).
    store.db.execute("INSERT INTO stories_fts(stories_fts, rank) VALUES('integrity-check', 1)")
    store.close()
