"""Scheduling decisions and the HTTP hints behind them: pure, no clock, no sleeping."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from monitor.fetch import parse_max_age, parse_retry_after
from monitor.parse import parse_feed
from monitor.schedule import (
    Cadence,
    delay_after_failure,
    interval_after_success,
    publishing_interval,
)

HOUR = 3600.0
CADENCE = Cadence(interval=900, min_interval=300, max_interval=12 * HOUR, max_backoff=6 * HOUR)


def test_publishing_rhythm_needs_three_dated_entries() -> None:
    assert publishing_interval([None, 100.0, 200.0]) is None
    assert publishing_interval([0.0, 3600.0, 7200.0, None, 14400.0]) == 3600.0


def test_interval_follows_the_rhythm_within_floor_and_ceiling() -> None:
    hourly = [n * HOUR for n in range(10)]
    assert interval_after_success(CADENCE, rhythm=publishing_interval(hourly)) == HOUR / 2
    busy = [n * 60.0 for n in range(10)]
    assert interval_after_success(CADENCE, rhythm=publishing_interval(busy)) == 300  # floor
    weekly = [n * 7 * 24 * HOUR for n in range(4)]
    weekly_rhythm = publishing_interval(weekly)
    assert interval_after_success(CADENCE, rhythm=weekly_rhythm) == 12 * HOUR  # the ceiling
    assert interval_after_success(CADENCE) == 900  # no rhythm: the configured interval
    fixed = Cadence(900, 300, 12 * HOUR, 6 * HOUR, adaptive=False)
    assert interval_after_success(fixed, rhythm=weekly_rhythm) == 900


def test_publisher_hints_are_a_lower_bound_up_to_the_ceiling() -> None:
    assert interval_after_success(CADENCE, update_hint=HOUR) == HOUR
    assert interval_after_success(CADENCE, max_age=2 * HOUR) == 2 * HOUR
    assert interval_after_success(CADENCE, update_hint=60) == 900
    assert interval_after_success(CADENCE, update_hint=7 * 24 * HOUR) == 12 * HOUR


def test_failures_back_off_exponentially_to_a_cap() -> None:
    delays = [delay_after_failure(CADENCE, n) for n in range(1, 10)]
    assert delays[:4] == [900, 1800, 3600, 7200]
    assert max(delays) == 6 * HOUR and delays[-1] == 6 * HOUR


def test_retry_after_is_honoured_within_reason() -> None:
    assert delay_after_failure(CADENCE, 1, retry_after=2 * HOUR) == 2 * HOUR
    assert delay_after_failure(CADENCE, 5, retry_after=10) == 300  # never below the floor
    assert delay_after_failure(CADENCE, 1, retry_after=90 * 86400) == 7 * 86400


def test_http_hint_headers() -> None:
    assert parse_retry_after("120") == 120
    later = formatdate(1_000_000 + 3600, usegmt=True)
    assert parse_retry_after(later, now=1_000_000) == pytest.approx(3600)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_max_age("public, max-age=600, must-revalidate") == 600
    assert parse_max_age("no-cache") is None


@pytest.mark.parametrize(
    ("channel", "hint"),
    [
        ("<ttl>60</ttl>", HOUR),
        (
            "<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency>",
            6 * HOUR,
        ),
        ("<sy:updatePeriod>hourly</sy:updatePeriod>", HOUR),
        ("", None),
        ("<ttl>soon</ttl>", None),
    ],
)
def test_feed_update_hints(channel: str, hint: float | None) -> None:
    body = (
        '<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"><channel>'
        f"<title>t</title>{channel}<item><title>a</title></item></channel></rss>"
    )
    assert parse_feed(body.encode(), url="https://e.org/f").update_hint == hint


def test_a_configured_interval_is_kept_within_the_floor_and_ceiling_even_when_failing() -> None:
    from monitor.config import Config
    from monitor.run_config import from_config

    config = from_config(Config.model_validate({
        "path": "monitor.yaml",
        "defaults": {"interval": "10s", "min_interval": "5m", "max_interval": "1h"},
        "feeds": [{"url": "https://e.org/a"}, {"url": "https://e.org/b", "interval": "2h"}],
    }))  # fmt: skip
    fast, slow = config.feeds
    assert config.feed_interval(fast) == 300 and config.feed_interval(slow) == 3600
    # Backing off after failures starts from the floor, not from the 10 s asked for.
    assert delay_after_failure(config.cadence(fast), 1) == 300
