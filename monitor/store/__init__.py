"""Storage: the SQLite database. Nothing else runs SQL.

A poll's new stories, their sources, matches and alerts are written in one transaction,
so a crash at any moment leaves either all of them or none, and no alert without its
story. ``Store`` is used from the thread that opened it only (SQLite's rule); the
pipeline keeps all writes on the event-loop thread and runs network and parsing work
elsewhere.

The store is split by concern (as lemon24/reader splits its storage), each part a mixin
of ``Store`` over the connection in ``base``::

    schema.py    the one sequence of versioned migrations (every table), applied at open
    base.py      the connection: open, transactions and batching, the file's identity,
                 telling damage from bugs
    feeds.py     feeds: poll state, schedules, health
    stories.py   saving a poll: stories, sources, matches, alerts; identity lookups; events
    search.py    full-text search and retention
    outbox.py    deliveries: routing, claims, attempts; the match and alert views
    events.py    the event index's tables (MinHash bands), used by monitor/events.py
    rows.py      the rows handed out: plain frozen structs (msgspec)
"""

from __future__ import annotations

from monitor.store.base import damage, database_problem
from monitor.store.feeds import FeedsMixin
from monitor.store.outbox import OutboxMixin
from monitor.store.rows import (
    DELIVERY_STATES,
    AlertDeliveryRow,
    DueDelivery,
    EventReport,
    FeedState,
    FeedStatus,
    MatchRow,
    SavedPoll,
    SearchHit,
    SourceRow,
    StoredStory,
    StoryDelivery,
)
from monitor.store.schema import migrations
from monitor.store.search import SearchMixin
from monitor.store.stories import StoriesMixin


class Store(StoriesMixin, FeedsMixin, SearchMixin, OutboxMixin):
    """The feed-monitor database. Open with ``Store.open(path)``."""


__all__ = [
    "DELIVERY_STATES",
    "AlertDeliveryRow",
    "DueDelivery",
    "EventReport",
    "FeedState",
    "FeedStatus",
    "MatchRow",
    "SavedPoll",
    "SearchHit",
    "SourceRow",
    "Store",
    "StoredStory",
    "StoryDelivery",
    "damage",
    "database_problem",
    "migrations",
]
