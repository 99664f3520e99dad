"""Alert delivery against real channels on 127.0.0.1: SMTP (aiosmtpd), json:// and a
Mattermost-style chat webhook; outages, per-target retries, the burst guard, the audit
trail, and `alerts` / `alerts retry`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli, edit_config, numbered_items, rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer, Mailbox, alert_sink

HOSTILE = {
    "title": "@everyone S-400 <script>alert(1)</script> **now**",
    "link": "https://e.org/s400?a=1&b=2",
    "guid": "hostile-1",
    "description": "Ankara took the S-400 anyway <!channel> @here",
    "published": time.time() - 600,
}


@pytest.fixture
def second_sink() -> Iterator[AlertSink]:
    with alert_sink() as server:
        yield server


def test_email_alert_is_html_escaped_and_names_the_story(
    tmp_path: Path, feeds: FeedServer, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    url = feeds.serve("/f.xml", rss([seed_article_item(), HOSTILE], title="BulgarianMilitary"))
    mailto = f"mailto://127.0.0.1:{port}?from=monitor@example.org&to=analyst@example.org"
    config = write_config(tmp_path, feeds=[url], notify=[mailto])
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "2 alerts queued, 2 sent" in result.stdout
    messages = mailbox.wait_for(2)
    by_subject = {str(m["Subject"]): m for m in messages}
    hostile = next(m for s, m in by_subject.items() if "**now**" in s)
    assert str(hostile["To"]) == "analyst@example.org"
    html_part = hostile.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<script>" not in html and "&lt;!channel&gt;" in html  # feed text is escaped
    assert "<b>S-400</b>" in html
    assert 'href="https://e.org/s400?a=1&amp;b=2"' in html
    assert "@everyone" not in html and "<!channel>" not in html
    seed = next(m for s, m in by_subject.items() if "S-400 missile system" in s)
    seed_html = seed.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "bulgarianmilitary.com/2020/08/s400-turkey" in seed_html
    assert "BulgarianMilitary" in seed_html


def test_chat_webhook_gets_markdown_without_pings(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss([HOSTILE]))
    chat = f"mmost://127.0.0.1:{sink.port}/hooktoken123"
    config = write_config(tmp_path, feeds=[url])
    edit_config(config, lambda c: c.update(notify=[{"url": chat, "format": "markdown"}]))
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    [post] = sink.wait_for(1)
    assert post["_path"] == "/hooks/hooktoken123"
    text = post["text"]
    assert "**S-400**" in text  # the match, highlighted; feed markup escaped
    assert "\\*\\*now\\*\\*" in text and "\\<\u200b!channel\\>" in text
    for ping in ("@everyone", "@here", "<!channel>"):
        assert ping not in text
    listed = cli("alerts", "--config", config)
    assert "hooktoken123" not in listed.stdout and "mmost://" in listed.stdout


def test_a_dead_target_is_retried_alone_and_the_good_one_is_not_sent_twice(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, second_sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    dead = second_sink.url.replace("/alerts", "/alerts?secret_token=hunter2hunter2")
    config = write_config(tmp_path, feeds=[url], notify=[sink.url, dead])
    second_sink.fail_with = 503
    first = cli("-vv", "once", "--config", config)  # debug logging: Apprise's included
    assert first.returncode == 0, first.stderr
    assert "hunter2hunter2" not in first.stdout + first.stderr
    assert "delivery 2 to json://" in first.stderr and "failed, retrying in 60s" in first.stderr
    assert "1 sent, 1 failed delivery" in first.stdout
    assert len(sink.wait_for(1)) == 1 and second_sink.received == []

    second_sink.fail_with = None  # the target comes back
    again = cli("once", "--config", config)
    assert "1 sent, 0 failed deliveries" in again.stdout
    assert len(second_sink.wait_for(1)) == 1
    third = cli("once", "--config", config)
    assert "0 sent, 0 failed deliveries" in third.stdout
    assert len(sink.received) == 1 and len(second_sink.received) == 1  # exactly once each

    listed = cli("alerts", "--config", config, "--json")
    [alert] = json.loads(listed.stdout)
    assert alert["status"] == "sent"
    trails = {d["target"]: d["attempts_log"] for d in alert["deliveries"]}
    dead_label = next(t for t in trails if f":{second_sink.port}/" in t)
    assert [a["ok"] for a in trails[dead_label]] == [False, True]
    assert "hunter2hunter2" not in listed.stdout + listed.stderr


def test_failed_alerts_are_listed_and_requeued(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], extra="alerts: {max_attempts: 1}"
    )
    sink.fail_with = 500
    assert "0 sent, 1 failed delivery" in cli("once", "--config", config).stdout
    failed = cli("alerts", "--failed", "--config", config)
    assert "failed" in failed.stdout and "1 attempt" in failed.stdout
    assert "S-400 missile system" in failed.stdout
    assert "0 sent" in cli("once", "--config", config).stdout  # failed: not retried by itself

    sink.fail_with = None
    requeued = cli("alerts", "retry", "--config", config)
    assert "1 failed delivery queued again" in requeued.stdout
    assert "1 sent" in cli("once", "--config", config).stdout
    assert len(sink.wait_for(1)) == 1
    assert (
        "no alerts with failed deliveries" in cli("alerts", "--failed", "--config", config).stdout
    )


def test_burst_guard_folds_one_poll_into_one_summary(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = numbered_items("S-400 battery {n} deployed", 7)
    url = feeds.serve("/f.xml", rss(items, title="Wire"))
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], extra="alerts: {burst_limit: 3}"
    )
    result = cli("once", "--config", config)
    assert "7 alerts queued, 1 sent" in result.stdout
    [summary] = sink.wait_for(1)
    assert summary["title"] == "[turkey-air-defense] 7 matching stories in one poll of Wire"
    for n in range(7):
        assert f"S-400 battery {n} deployed" in summary["message"]


def test_a_digest_watchlist_sends_one_message_when_its_time_comes(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = numbered_items("CAATSA waiver {n}", 2, key="c")
    url = feeds.serve("/f.xml", rss(items))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    edit_config(config, lambda c: c["watchlists"][0].update(every="2s"))
    first = cli("once", "--config", config)
    assert "2 alerts queued" in first.stdout
    deadline = time.monotonic() + 20
    while not sink.received and time.monotonic() < deadline:  # the next 2 s boundary
        assert cli("once", "--config", config).returncode == 0
    [digest] = sink.wait_for(1)
    assert digest["title"] == "[turkey-air-defense] digest: 2 matching stories"
    assert "CAATSA waiver 0" in digest["message"] and "CAATSA waiver 1" in digest["message"]
    cli("once", "--config", config)
    assert len(sink.received) == 1
