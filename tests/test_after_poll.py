"""What follows a poll, in process with an injected clock: health notices (one when a feed
starts failing, none while it stays so, one on recovery) and retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.health_notices import HealthNotices
from monitor.identity import source_keys
from monitor.models import Entry, PollPlan, PollRecord, PollState, StoryToSave
from monitor.pipeline import PollOutcome
from monitor.retention import Retention
from monitor.run_config import RunConfig, from_config
from monitor.store import Store

HOUR = 3600.0
T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_config(tmp_path: Path, **extra: object) -> RunConfig:
    return from_config(Config.model_validate({
        "path": tmp_path / "monitor.yaml", "database": str(tmp_path / "monitor.db"),
        "feeds": [{"url": "https://e.org/f", "name": "Wire"}],
        "watchlists": [{"name": "w", "keywords": ["S-400"]}],
        "notify": [{"url": "json://localhost:9/", "tags": ["ops"]}],
        **extra,
    }))  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "monitor.db") as opened:
        yield opened


def test_health_notices_follow_the_feeds_state_not_each_poll(tmp_path: Path, store: Store) -> None:
    config = make_config(tmp_path, health={"notify": ["ops"], "failing_after": "1h"})
    [feed] = config.feeds
    polls = PollState(feeds=store.sync_feeds([(feed.url, feed.name)], T0))
    feed_id = polls.feeds[feed.url].id
    clock = Clock()
    notices = HealthNotices(config, store, polls, clock=clock)
    failed = PollOutcome(feed.url, "Wire", ok=False, status=503, error="HTTP 503")

    store.record_failure(feed_id, PollRecord(T0, T0 + HOUR, status=503, error="HTTP 503"))
    assert notices.after_poll(feed, failed).notices == 0  # within failing_after
    clock.now = T0 + HOUR
    assert notices.after_poll(feed, failed).notices == 1  # one target tagged ops
    clock.now = T0 + 2 * HOUR
    assert notices.after_poll(feed, failed).notices == 0  # still failing: said already
    store.save_poll(feed_id, PollRecord(clock.now, clock.now + HOUR, status=200), PollPlan())
    recovered = PollOutcome(feed.url, "Wire", ok=True, status=200)
    assert notices.after_poll(feed, recovered).notices == 1
    assert notices.after_poll(feed, PollOutcome(feed.url, "Wire", ok=False, gone=True)).notices == 0

    notices.apply_config(make_config(tmp_path))  # no health section: no notices at all
    store.record_failure(feed_id, PollRecord(T0, T0 + HOUR, status=503, error="HTTP 503"))
    clock.now = T0 + 9 * HOUR
    assert notices.after_poll(feed, failed).notices == 0


def test_retention_drops_old_text_only(tmp_path: Path, store: Store) -> None:
    config = make_config(tmp_path, retention={"story_text": "1h"}, events={})
    [feed] = config.feeds
    feed_id = store.sync_feeds([(feed.url, feed.name)], T0)[feed.url].id
    old = Entry(key="id:1", title="S-400 moved", link=None, summary="the whole text")
    plan = PollPlan(new=[StoryToSave(old, source_keys(old, set()), [])])
    store.save_poll(feed_id, PollRecord(T0, T0 + HOUR, status=200), plan)
    clock = Clock()
    retention = Retention(config, store, clock=clock)
    assert retention.run() == 0  # not an hour old yet
    clock.now = T0 + 2 * HOUR
    assert retention.run() == 1
    assert retention.run() == 0
