"""The whole pipeline through the CLI: local feed server → feed-monitor → local alert sink."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import REPO, cli, edit_config, rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer


def test_sample_article_alerts_once_naming_its_terms(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/bm.xml", rss([seed_article_item()], title="BulgarianMilitary"))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])

    first = cli("once", "--config", config)
    assert first.returncode == 0, first.stderr
    assert "1 alert queued, 1 sent" in first.stdout

    [alert] = sink.wait_for(1)
    assert "S-400 missile system to Turkey" in alert["title"]
    assert "turkey-air-defense" in alert["title"]
    matched_line = next(line for line in alert["message"].splitlines() if "Matched" in line)
    assert "S-400" in matched_line and "F-35" in matched_line and "CAATSA" not in matched_line
    assert "https://bulgarianmilitary.com/2020/08/s400-turkey/" in alert["message"]
    assert "»S-400«" in alert["message"]  # the snippet marks the first match

    second = cli("once", "--config", config)
    assert second.returncode == 0, second.stderr
    assert "0 new stories, 0 alerts queued" in second.stdout
    assert len(sink.received) == 1
    # The second poll was conditional, and the server's 304 was understood.
    assert feeds.hits("/bm.xml")[-1].get("if-none-match")


def test_a_story_seen_again_with_new_content_does_not_alert_again(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    item = {"title": "S-400 deliveries", "link": "https://example.org/a", "guid": "a-1"}
    url = feeds.serve("/f.xml", rss([item]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    assert cli("once", "--config", config).returncode == 0
    sink.wait_for(1)

    edited = {**item, "description": "Updated: more on the F-35 as well."}
    other = {"title": "CAATSA sanctions widen", "link": "https://example.org/b", "guid": "b-1"}
    feeds.serve("/f.xml", rss([other, edited]))
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    alerts = sink.wait_for(2)
    assert len(alerts) == 2
    assert "CAATSA sanctions widen" in alerts[1]["title"]


def test_broken_feeds_affect_only_themselves(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    good = feeds.serve("/good.xml", rss([seed_article_item()]))
    html = feeds.serve(
        "/page.html", "<html><body><p>Not a feed</p></body></html>", content_type="text/html"
    )
    gone = feeds.url("/missing.xml")  # 404
    refused = "http://127.0.0.1:9/feed.xml"  # nothing listens on the discard port
    config = write_config(tmp_path, feeds=[html, gone, refused, good], notify=[sink.url])

    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "(1 ok, 3 failed, 0 unchanged)" in result.stdout
    assert "Traceback" not in result.stderr
    [alert] = sink.wait_for(1)
    assert "S-400" in alert["title"]

    status = cli("status", "--config", config)
    assert status.returncode == 0, status.stderr
    assert "HTTP 404" in status.stdout
    assert "cannot connect" in status.stdout
    assert "this is an HTML page, not a feed" in status.stdout


def test_old_stories_are_stored_but_not_alerted(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    old = {
        "title": "S-400 archive story",
        "link": "https://example.org/old",
        "published": time.time() - 30 * 86400,
    }
    undated = {"title": "F-35 story without a date", "link": "https://example.org/undated"}
    url = feeds.serve("/f.xml", rss([old, undated]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])

    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "2 new stories, 1 alert queued" in result.stdout
    [alert] = sink.wait_for(1)
    assert "F-35 story without a date" in alert["title"]
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        assert db.execute("SELECT count(*) FROM stories").fetchone()[0] == 2


def test_failed_delivery_is_kept_and_retried_by_the_next_run(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])

    sink.fail_with = 503
    first = cli("once", "--config", config)
    assert first.returncode == 0, first.stderr
    assert "0 sent, 1 failed delivery" in first.stdout
    assert sink.received == []
    status = cli("status", "--config", config)
    assert "deliveries: 0 sent, 1 pending, 0 held for digests, 0 failed" in status.stdout

    sink.fail_with = None
    second = cli("once", "--config", config)
    assert second.returncode == 0, second.stderr
    assert "1 sent" in second.stdout
    assert len(sink.wait_for(1)) == 1
    third = cli("once", "--config", config)
    assert "0 sent" in third.stdout
    assert len(sink.received) == 1


def test_a_notify_url_apprise_cannot_use_stops_once_before_sending_and_loses_nothing(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    """`once` checks the notify URLs (with Apprise) only when a poll queues an alert,
    beside the other polls: a bad one is still refused with its line, no alert is sent
    to any target, and the stories and alerts wait for the corrected config."""
    quiet = [feeds.serve(f"/quiet{n}.xml", rss([{"title": f"Weather {n}", "link": f"https://e.org/{n}"}]))
             for n in range(5)]  # fmt: skip
    hot = feeds.serve("/hot.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[*quiet, hot],
                          notify=[sink.url, "nosuch://secret-token@host"])  # fmt: skip
    refused = cli("once", "--config", config)
    assert refused.returncode == 2, refused.stderr
    assert "notify[1].url: not a notification URL that Apprise can use" in refused.stderr
    assert "secret-token" not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr and "never retrieved" not in refused.stderr
    assert sink.received == []
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        assert db.execute("SELECT count(*) FROM stories").fetchone() == (6,)

    write_config(tmp_path, feeds=[*quiet, hot], notify=[sink.url])
    fixed = cli("once", "--config", config)
    assert fixed.returncode == 0, fixed.stderr
    assert "0 new stories, 0 alerts queued, 1 sent" in fixed.stdout
    assert len(sink.wait_for(1)) == 1


def test_console_is_the_default_target(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url])
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "=== [turkey-air-defense] Russia announced the sale" in result.stdout
    assert "Matched:   S-400, F-35" in result.stdout


def test_unusable_database_is_a_clear_error(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss([]))
    (tmp_path / "monitor.db").write_bytes(b"this is not a database" * 100)
    config = write_config(tmp_path, feeds=[url])
    result = cli("once", "--config", config)
    assert result.returncode == 1
    assert "cannot open database" in result.stderr
    assert "Traceback" not in result.stderr


def test_test_notify_reports_each_target(tmp_path: Path, sink: AlertSink) -> None:
    config = write_config(tmp_path, feeds=[], notify=[sink.url])
    ok = cli("test-notify", "--config", config)
    assert ok.returncode == 0, ok.stderr
    assert f"json://127.0.0.1:{sink.port}/alerts" in ok.stdout and ": success" in ok.stdout
    [alert] = sink.wait_for(1)
    assert alert["title"] == "feed-monitor test alert"

    sink.fail_with = 500
    failed = cli("test-notify", "--config", config)
    assert failed.returncode == 1
    assert ": failure: Failed to send JSON POST notification" in failed.stdout
    assert ": failure" in failed.stdout


def test_alerts_are_routed_by_tag(tmp_path: Path, feeds: FeedServer) -> None:
    from tests.servers import alert_sink

    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    with alert_sink() as analysts, alert_sink() as others:
        config = write_config(tmp_path, feeds=[url])

        def route(config: dict[str, Any]) -> None:
            config["notify"] = [
                {"url": analysts.url, "tags": ["analysts"]},
                {"url": others.url, "tags": ["ops"]},
            ]
            config["watchlists"][0]["notify"] = ["analysts"]

        edit_config(config, route)
        result = cli("once", "--config", config)
        assert result.returncode == 0, result.stderr
        assert len(analysts.wait_for(1)) == 1
        assert others.received == []


def test_once_refuses_an_unusable_notify_url_before_sending_and_keeps_the_alert(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    # `once` asks Apprise about notify URLs only when it has something to send.
    url = feeds.serve("/bm.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url], notify=["nosuch://secret-token@host"])
    refused = cli("once", "--config", config)
    assert refused.returncode == 2
    assert f"{config}:9: notify[0].url: not a notification URL" in refused.stderr
    assert "secret-token" not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr

    write_config(tmp_path, feeds=[url], notify=[sink.url])
    fixed = cli("once", "--config", config)
    assert fixed.returncode == 0, fixed.stderr
    assert "0 new stories, 0 alerts queued, 1 sent" in fixed.stdout
    [alert] = sink.wait_for(1)
    assert "S-400" in alert["title"]


def test_json_output_for_scripts(tmp_path: Path, feeds: FeedServer, sink: AlertSink) -> None:
    url = feeds.serve("/bm.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    report = json.loads(cli("once", "--json", "--config", config).stdout)
    assert report["new_stories"] == 1 and report["alerts_queued"] == 1 and report["sent"] == 1
    [feed] = report["feeds"]
    assert feed["url"] == url and feed["ok"] and feed["status"] == 200
    checked = json.loads(cli("check", "--json", "--config", config).stdout)
    assert checked["watchlists"] == ["turkey-air-defense"] and checked["feeds"][0]["url"] == url
    assert checked["targets"][0].startswith("json://127.0.0.1")
    notified = json.loads(cli("test-notify", "--json", "--config", config).stdout)
    assert notified["ok"] is True


def test_progress_is_shown_on_a_terminal_only(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    urls = [feeds.serve(f"/f{n}.xml", rss([])) for n in range(3)]
    config = write_config(tmp_path, feeds=urls, notify=[sink.url])
    piped = cli("once", "--config", config)
    assert "polling feeds" not in piped.stderr
    # The same command with stderr on a pseudo-terminal, as a person running it sees it.
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "once", "--config", str(config)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    stdout, _ = process.communicate(timeout=60)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the process has gone
        while chunk := os.read(leader, 4096):
            seen += chunk
    os.close(leader)
    assert process.returncode == 0 and "polled 3 feeds" in stdout
    assert b"polling feeds" in seen and b"100%" in seen
