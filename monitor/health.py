"""Source health: when a feed deserves one notice to the operators, and when it recovers.

Pure. A feed is *failing* once its polls have failed for ``failing_after`` in a row, and
*silent* once it has brought no new story for ``silence_factor`` times its usual gap
between stories (never less than ``min_silence``). A notice is sent when a feed enters
one of these states and one when it leaves it: a transition, never a repeat.
``monitor.health_notices`` applies it after each poll and queues the notice.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Literal

from msgspec import Struct

from monitor.redact import mask_url, redact_text
from monitor.render import format_time

HealthState = Literal["failing", "silent"]


class HealthRules(Struct, frozen=True):
    failing_after: float
    silence_factor: float
    min_silence: float


class FeedHealth(Struct, frozen=True):
    """What the store knows of a feed's health after a poll."""

    name: str
    url: str
    failing_since: float | None
    last_error: str | None
    published: Sequence[float]  # when its recent stories were published: its rhythm
    last_new_story_at: float | None  # when a story was last new to us
    notice: HealthState | None  # the state the operators were last told of


class Notice(Struct, frozen=True):
    state: HealthState | None  # what the operators are now told; None: recovered
    title: str
    body: str


def usual_gap(published: Sequence[float]) -> float | None:
    """The median time between a feed's stories, or None with too few to tell."""
    times = sorted(published)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    gaps = [gap for gap in gaps if gap > 0]
    return statistics.median(gaps) if len(gaps) >= 3 else None


def health_state(feed: FeedHealth, now: float, rules: HealthRules) -> HealthState | None:
    if feed.failing_since is not None and now - feed.failing_since >= rules.failing_after:
        return "failing"
    gap = usual_gap(feed.published)
    if feed.failing_since is None and gap is not None and feed.last_new_story_at is not None:
        quiet_for = now - feed.last_new_story_at
        if quiet_for >= max(rules.min_silence, rules.silence_factor * gap):
            return "silent"
    return None


def decide_notice(feed: FeedHealth, now: float, rules: HealthRules) -> Notice | None:
    """The notice this feed's state calls for, if it changed since the last one."""
    state = health_state(feed, now, rules)
    if state == feed.notice:
        return None
    if state == "failing":
        since = format_time(feed.failing_since)
        return Notice(state, f"[feed-monitor] feed failing: {feed.name}",
                      f"{feed.name} ({mask_url(feed.url)}) has failed every poll since {since}.\n"
                      f"Last error: {redact_text(feed.last_error or 'unknown')}")  # fmt: skip
    if state == "silent":
        last = format_time(feed.last_new_story_at)
        return Notice(state, f"[feed-monitor] feed silent: {feed.name}",
                      f"{feed.name} ({mask_url(feed.url)}) answers, but has brought no new "
                      f"story since {last}, much longer than its usual rhythm.")  # fmt: skip
    was = "failing" if feed.notice == "failing" else "silent"
    return Notice(None, f"[feed-monitor] feed recovered: {feed.name}",
                  f"{feed.name} ({mask_url(feed.url)}) is no longer {was}.")  # fmt: skip
