"""Polite polling against a local server that misbehaves: through `once` and `status`."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.helpers import cli, rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer


def feed_row(tmp_path: Path, url: str) -> dict[str, object]:
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM feeds WHERE url = ?", [url]).fetchone()
    return dict(row)


def once(config: Path) -> str:
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_retry_after_backoff_gone_and_moved_feeds_next_to_a_good_one(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    good = feeds.serve("/good.xml", rss([seed_article_item()]))
    limited = feeds.serve("/limited.xml", "slow down", status=429, headers={"Retry-After": "7200"})
    busy = feeds.serve("/busy.xml", "busy", status=503)
    gone = feeds.serve("/gone.xml", "gone", status=410)
    new_home = feeds.serve(
        "/new-home.xml", rss([{"title": "Moved feed", "link": "https://e.org/m"}])
    )
    moved = feeds.serve("/old-home.xml", "", status=301, headers={"Location": new_home})
    config = write_config(tmp_path, feeds=[good, limited, busy, gone, moved], notify=[sink.url])

    first = once(config)
    assert "(2 ok, 3 failed, 0 unchanged)" in first
    assert len(sink.wait_for(1)) == 1  # the good feed is processed and alerts regardless

    row = feed_row(tmp_path, limited)
    assert row["last_status"] == 429
    assert row["next_poll_at"] - row["last_polled_at"] == 7200  # as Retry-After asks

    once(config)
    busy_row = feed_row(tmp_path, busy)
    assert busy_row["error_count"] == 2
    # 15 minutes after the first failure, then twice that.
    assert busy_row["next_poll_at"] - busy_row["last_polled_at"] == 1800

    # 410: recorded once, never requested again.
    assert len(feeds.hits("/gone.xml")) == 1
    # 301: the second run goes straight to the new address.
    assert len(feeds.hits("/old-home.xml")) == 1
    assert len(feeds.hits("/new-home.xml")) == 2
    assert feed_row(tmp_path, moved)["effective_url"] == new_home

    status = cli("status", "--config", config).stdout
    assert "never (gone)" in status and "gone (HTTP 410)" in status
    assert f"{moved} moved permanently to {new_home}" in status
    assert "HTTP 429 Too Many Requests" in status and "HTTP 503" in status


def test_a_server_ignoring_validators_costs_no_parsing(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]), etag=False)
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    assert "1 new story" in once(config)
    second = once(config)
    assert "(1 ok, 0 failed, 1 unchanged), 0 new stories" in second
    assert feeds.hits("/f.xml")[-1].get("if-none-match") is None  # it never sent an ETag


def test_user_agent_is_clear_and_configurable(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss([]))
    config = write_config(tmp_path, feeds=[url])
    once(config)
    assert feeds.hits("/f.xml")[-1]["user-agent"].startswith("feed-monitor/")
    config.write_text(
        config.read_text() + "user_agent: ExampleDesk-Monitor/1.0 (ops@example.org)\n"
    )
    feeds.serve("/f.xml", rss([]) + " ")
    once(config)
    assert feeds.hits("/f.xml")[-1]["user-agent"] == "ExampleDesk-Monitor/1.0 (ops@example.org)"


def test_a_304_keeps_what_the_last_parse_learnt_across_runs(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """Each `once` is a new process: the publisher's <ttl> and the feed's rhythm, learnt
    from the last body parsed, must still decide the interval when the next poll answers
    304 Not Modified (an in-memory hint was lost, and the poll came 4 times too soon)."""
    now = time.time()
    hourly = [{"title": f"Story {n}", "link": f"https://e.org/{n}", "published": now - n * 3600}
              for n in range(1, 6)]  # fmt: skip
    asks = feeds.serve("/ttl.xml", rss(hourly).replace("<channel>", "<channel><ttl>120</ttl>"))
    rhythm = feeds.serve("/hourly.xml", rss(hourly))
    config = write_config(tmp_path, feeds=[asks, rhythm])
    for run in ("first", "second"):
        output = once(config)
        if run == "second":
            assert "(2 ok, 0 failed, 2 unchanged)" in output
        ttl_row, hourly_row = feed_row(tmp_path, asks), feed_row(tmp_path, rhythm)
        assert ttl_row["next_poll_at"] - ttl_row["last_polled_at"] == 7200, run  # <ttl>120
        assert hourly_row["next_poll_at"] - hourly_row["last_polled_at"] == 1800, run
    assert feeds.hits("/ttl.xml")[-1].get("if-none-match")  # the second poll was a 304
