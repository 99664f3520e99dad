"""The rows the store hands out: plain frozen structs (msgspec.Struct), one per kind of answer."""

from __future__ import annotations

from typing import Any, NamedTuple

from msgspec import Struct

from monitor.models import (
    AlertContent,
    Entry,
)
from monitor.outbox import DeliveryKind


class SavedPoll(NamedTuple):
    """What ``save_poll`` did: alerts queued, and the events that new stories joined."""

    queued: int
    joined_events: tuple[int, ...] = ()


class EventReport(Struct, frozen=True):
    """One outlet's report of an event."""

    story_id: int
    outlet: str
    title: str
    link: str | None
    first_seen: float


class FeedState(Struct, frozen=True):
    """What the store remembers about a feed between polls."""

    id: int
    url: str
    name: str | None
    etag: str | None
    last_modified: str | None
    next_poll_at: float | None
    effective_url: str | None = None  # where a permanent redirect moved the feed
    body_hash: str | None = None  # of the last body parsed: same body, no parsing
    gone_at: float | None = None  # when the server answered 410 Gone
    interval: float | None = None  # the interval last decided for it
    error_count: int = 0  # consecutive failures
    rhythm: float | None = None  # median gap between its entries, at the last parse
    update_hint: float | None = None  # the publisher's <ttl> or sy:updatePeriod, then


_FEED_STATE_COLUMNS = (
    "id, url, name, etag, last_modified, next_poll_at, effective_url, body_hash, gone_at, "
    "interval, error_count, rhythm, update_hint"
)


class FeedStatus(Struct, frozen=True):
    url: str
    name: str | None
    title: str | None
    last_polled_at: float | None
    last_success_at: float | None
    last_status: int | None
    last_error: str | None
    error_count: int
    next_poll_at: float | None
    stories: int
    effective_url: str | None
    gone_at: float | None
    interval: float | None
    article_failures: int = 0  # article pages that could not be read (full_text)
    last_article_error: str | None = None

    @property
    def health(self) -> str:
        if self.gone_at is not None:
            return "gone"
        if self.error_count:
            return "failing"
        return "ok" if self.last_polled_at is not None else "not polled yet"


class StoredStory(Struct, frozen=True):
    id: int
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    entry: Entry
    first_seen: float


class SearchHit(Struct, frozen=True):
    story_id: int
    title: str
    link: str | None
    first_seen: float
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    snippet: str


class MatchRow(Struct, frozen=True):
    id: int
    watchlist: str
    keywords: tuple[str, ...]
    terms: tuple[str, ...]
    snippet: str
    created_at: float
    story_id: int
    title: str
    link: str | None
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    alert_status: str  # pending, held, sent, failed, or "not alerted" (too old to alert)
    attempts: int
    last_error: str | None
    sent_at: float | None
    published: float | None = None  # the story's, for why an alert was not made


class StoryDelivery(Struct, frozen=True):
    """One delivery of an alert about a story, for ``feed-monitor story``."""

    watchlist: str
    alert_id: int
    target: str  # outbox key
    kind: str  # alert, summary (burst), digest
    status: str  # held, pending, sent, failed, released (into a digest)
    reason: str | None  # why held: "digest <watchlist>", "quiet hours"
    attempts: int
    last_error: str | None
    sent_at: float | None
    released_status: str | None = None  # the digest it was released into: its status...
    released_sent_at: float | None = None  # ...and when that was sent


class SourceRow(Struct, frozen=True):
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    link: str | None
    first_seen: float


DELIVERY_STATES = ("sent", "pending", "held", "failed")  # as counted by delivery_counts


class DueDelivery(Struct, frozen=True):
    """A delivery to make now, with the content of every alert it carries."""

    id: int
    target: str
    kind: DeliveryKind
    reason: str | None
    attempts: int
    contents: list[AlertContent]
    notice: tuple[str, str] | None = None  # a health notice's title and body


class AlertDeliveryRow(Struct, frozen=True):
    """One alert and how its deliveries stand, for ``feed-monitor alerts``."""

    id: int
    created_at: float
    watchlist: str
    title: str
    link: str | None
    deliveries: list[dict[str, Any]]  # target, status, attempts, last_error, sent_at, reason

    @property
    def status(self) -> str:
        states = {d["status"] for d in self.deliveries}
        for status in ("failed", "pending", "held"):
            if status in states:
                return status
        return "sent" if states else "unrouted"
