"""Source health: one notice when a feed starts failing or falls silent, one on recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from msgspec.structs import replace

from monitor.health import FeedHealth, HealthRules, decide_notice, usual_gap
from tests.helpers import cli, rss, seed_article_item
from tests.servers import AlertSink, FeedServer, alert_sink

HOUR, DAY = 3600.0, 86400.0
RULES = HealthRules(failing_after=6 * HOUR, silence_factor=10, min_silence=2 * DAY)
NOW = 1_800_000_000.0


def feed(**changes: object) -> FeedHealth:
    base = FeedHealth("Wire", "https://e.org/f", None, None, [], None, None)
    return replace(base, **changes)


def test_failing_is_noticed_once_after_the_grace_period_and_recovery_too() -> None:
    assert decide_notice(feed(failing_since=NOW - HOUR), NOW, RULES) is None
    notice = decide_notice(feed(failing_since=NOW - 7 * HOUR, last_error="HTTP 500"), NOW, RULES)
    assert notice is not None and notice.state == "failing"
    assert "HTTP 500" in notice.body and notice.title == "[feed-monitor] feed failing: Wire"
    assert decide_notice(feed(failing_since=NOW - 9 * HOUR, notice="failing"), NOW, RULES) is None
    recovered = decide_notice(feed(notice="failing"), NOW, RULES)
    assert (
        recovered is not None and recovered.state is None and "no longer failing" in recovered.body
    )


def test_a_notice_never_carries_the_feeds_credentials() -> None:
    url = "https://alice:s3cretpw@e.org/f?token=abcdef123456"
    notice = decide_notice(feed(url=url, failing_since=NOW - 7 * HOUR), NOW, RULES)
    assert notice is not None and "e.org/f" in notice.body
    assert "s3cretpw" not in notice.body and "abcdef123456" not in notice.body


def test_silence_is_judged_against_the_feeds_own_rhythm() -> None:
    hourly = [NOW - 30 * DAY + n * HOUR for n in range(30)]
    assert usual_gap(hourly) == HOUR and usual_gap(hourly[:3]) is None
    # Hourly publisher, nothing new for 3 days: silent (10 gaps, but at least 2 days).
    silent = decide_notice(feed(published=hourly, last_new_story_at=NOW - 3 * DAY), NOW, RULES)
    assert silent is not None and silent.state == "silent"
    assert decide_notice(feed(published=hourly, last_new_story_at=NOW - DAY), NOW, RULES) is None
    weekly = [NOW - 100 * DAY + n * 7 * DAY for n in range(10)]
    quiet = feed(published=weekly, last_new_story_at=NOW - 20 * DAY)
    assert decide_notice(quiet, NOW, RULES) is None  # 20 days is normal for a weekly feed


@pytest.fixture
def ops() -> Iterator[AlertSink]:
    with alert_sink() as server:
        yield server


def test_a_failing_feed_raises_one_notice_to_operators_and_one_on_recovery(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, ops: AlertSink
) -> None:
    url = feeds.serve("/f.xml", b"busy", status=503)
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"database: monitor.db\nfeeds:\n  - url: {url}\n    name: Wire <!channel>\n"
        "watchlists:\n  - name: w\n    keywords: [S-400]\n    notify: [analysts]\n"
        f"notify:\n  - url: {sink.url}\n    tags: [analysts]\n"
        f"  - url: {ops.url}\n    tags: [ops]\n"
        "health: {notify: [ops], failing_after: 1s}\n"
    )
    assert cli("once", "--config", config).returncode == 0  # failing, within grace
    deadline = time.monotonic() + 20
    while not ops.received:
        assert time.monotonic() < deadline, "no failing notice"
        assert cli("once", "--config", config).returncode == 0
    for _ in range(2):  # still failing: no more notices
        cli("once", "--config", config)
    [failing] = ops.received
    assert failing["title"] == "[feed-monitor] feed failing: Wire <\u200b!channel>"  # defanged
    assert "HTTP 503" in failing["message"] and "<!channel>" not in failing["message"]

    feeds.serve("/f.xml", rss([seed_article_item()]))
    recovered = cli("once", "--config", config)
    assert recovered.returncode == 0, recovered.stderr
    _, back = ops.wait_for(2)
    assert back["title"] == "[feed-monitor] feed recovered: Wire <\u200b!channel>"
    cli("once", "--config", config)
    assert len(ops.received) == 2
    [alert] = sink.wait_for(1)  # the analysts get the story, not the notices
    assert "S-400" in alert["title"]


def test_a_failing_notice_masks_the_secrets_in_the_last_error() -> None:
    from monitor.health import FeedHealth, HealthRules, decide_notice

    feed = FeedHealth(
        url="https://e.org/feed?token=FtpTok987654", name="Desk", failing_since=0.0,
        last_error="redirected to ftp://e.org/x?token=FtpTok987654, not http(s)",
        last_new_story_at=None, published=(), notice=None,
    )  # fmt: skip
    rules = HealthRules(failing_after=60, silence_factor=10, min_silence=86400)
    notice = decide_notice(feed, 10_000.0, rules)
    assert notice is not None and notice.state == "failing"
    assert "FtpTok987654" not in notice.title + notice.body and "token=****" in notice.body
