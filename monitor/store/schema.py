"""The schema: versioned migrations, applied when a database is opened.

Each step is a function that runs once per database (sqlite-utils' ``Migrations``, which
records it in ``_sqlite_migrations``); a step is never edited once released, only followed
by another. This is the one sequence: every table of the database, the event index's
included, is made here.

sqlite-utils is imported only when a step is pending: ``migrate`` asks the migrations
table first, so opening an up-to-date database (every start but the first after an
upgrade) costs two small queries instead of 60 ms of imports.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from monitor.identity import SourceKeys, source_keys
from monitor.models import (
    Entry,
)
from monitor.schedule import publishing_interval

if TYPE_CHECKING:
    import sqlite_utils

MIGRATION_SET = "feed-monitor"
Step = Callable[["sqlite_utils.Database"], None]
STEPS: list[Step] = []  # in the order they run; each recorded under its function's name


def _step(step: Step) -> Step:
    STEPS.append(step)
    return step


def migrations() -> sqlite_utils.Migrations:
    """sqlite-utils' ``Migrations`` holding every step (for ``migrate``, and for tests
    that build an old database with ``stop_before``)."""
    _import_sqlite_utils()
    from sqlite_utils import Migrations

    steps = Migrations(MIGRATION_SET)
    for step in STEPS:
        steps()(step)
    return steps


def pending(conn: sqlite3.Connection) -> list[str]:
    """The names of the steps this database has yet to run (sqlite-utils not needed)."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
    ).fetchone():
        return [step.__name__ for step in STEPS]
    applied = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", [MIGRATION_SET]
        )
    }
    return [step.__name__ for step in STEPS if step.__name__ not in applied]


def migrate(conn: sqlite3.Connection) -> None:
    """Run the steps this database lacks, each in its own transaction."""
    if pending(conn):
        steps = migrations()  # imports sqlite-utils, without numpy
        import sqlite_utils

        # No sqlite-utils plugins: scanning every installed package's entry points for
        # them is 20 ms, and a plugin could change this connection.
        steps.apply(sqlite_utils.Database(conn, execute_plugins=False))


def _import_sqlite_utils() -> None:
    """sqlite-utils, imported without numpy.

    sqlite-utils imports numpy (and pandas) at import time when they are installed, only
    to store their scalar types, which feed-monitor never passes it: 50 ms and 15 MB that
    the event index (the one user of numpy here) may never need. Hidden for that one
    import, numpy is found normally by anything that imports it later."""
    if "sqlite_utils" not in sys.modules and "numpy" not in sys.modules:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # import numpy: ImportError
        try:
            import sqlite_utils  # noqa: F401
        finally:
            del sys.modules["numpy"]


@_step
def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            name TEXT,
            title TEXT,
            etag TEXT,
            last_modified TEXT,
            added_at REAL NOT NULL,
            last_polled_at REAL,
            last_success_at REAL,
            last_status INTEGER,
            last_error TEXT,
            error_count INTEGER NOT NULL DEFAULT 0,
            next_poll_at REAL
        )"""
    )
    db.execute(
        """
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            feed_id INTEGER NOT NULL REFERENCES feeds(id),
            key TEXT NOT NULL,
            title TEXT NOT NULL,
            link TEXT,
            summary TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL DEFAULT '',
            author TEXT,
            published REAL,
            first_seen REAL NOT NULL,
            UNIQUE (feed_id, key)
        )"""
    )
    db.execute(
        """
        CREATE TABLE matches (
            id INTEGER PRIMARY KEY,
            story_id INTEGER NOT NULL REFERENCES stories(id),
            watchlist TEXT NOT NULL,
            keywords TEXT NOT NULL,
            terms TEXT NOT NULL,
            snippet TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (story_id, watchlist)
        )"""
    )
    db.execute(
        """
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            match_id INTEGER NOT NULL UNIQUE REFERENCES matches(id),
            tags TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL
        )"""
    )
    db.execute("CREATE INDEX alerts_due ON alerts (status, next_attempt_at)")


@_step
def m002_story_sources(db: sqlite_utils.Database) -> None:
    """One row per (feed, entry) a story was seen under: the keys that recognize it again."""
    db.execute(
        """
        CREATE TABLE story_sources (
            id INTEGER PRIMARY KEY,
            story_id INTEGER NOT NULL REFERENCES stories(id),
            feed_id INTEGER NOT NULL REFERENCES feeds(id),
            entry_key TEXT NOT NULL,
            link TEXT,
            link_key TEXT,
            canonical_link TEXT,
            title_key TEXT NOT NULL,
            opaque INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            first_seen REAL NOT NULL,
            UNIQUE (feed_id, entry_key)
        )"""
    )
    db.execute("CREATE INDEX story_sources_story ON story_sources (story_id)")
    db.execute("CREATE INDEX story_sources_link ON story_sources (canonical_link)")
    # Only entries told apart by fingerprint, from feeds that reuse one link, need this.
    db.execute(
        "CREATE INDEX story_sources_shared_link ON story_sources (feed_id, link_key) "
        "WHERE entry_key LIKE 'hash:%'"
    )
    # Covers the title lookups (Store.lookup) without touching the table, however many
    # stories share a common title ("Morning briefing").
    db.execute(
        "CREATE INDEX story_sources_title ON story_sources "
        "(title_key, opaque, first_seen, story_id)"
    )
    # Stories stored before this schema had one source each: their own feed and key.
    rows = db.execute(
        "SELECT id, feed_id, key, title, link, summary, content, published, author, first_seen "
        "FROM stories"
    ).fetchall()
    for story_id, feed_id, key, title, link, summary, content, published, author, seen in rows:
        entry = Entry(key, title, link, summary, content, published, author)
        keys = source_keys(entry, set())
        _insert_source(db.conn, story_id, feed_id, keys, seen)


@_step
def m003_full_text_search(db: sqlite_utils.Database) -> None:
    """An FTS5 index of story text, filled in batches (see ``Store.index_pending``)."""
    db.table("stories").enable_fts(
        ["title", "summary", "content"],
        fts_version="FTS5",
        create_triggers=False,
        tokenize="unicode61 remove_diacritics 2",
    )
    db.execute("CREATE TABLE fts_progress (indexed_up_to INTEGER NOT NULL)")
    db.execute("INSERT INTO fts_progress SELECT coalesce(max(id), 0) FROM stories")
    db.execute("CREATE INDEX matches_created ON matches (created_at)")


@_step
def m004_feed_health(db: sqlite_utils.Database) -> None:
    """What polite, adaptive polling remembers about each feed."""
    for column in ("effective_url TEXT", "body_hash TEXT", "gone_at REAL", "interval REAL"):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column}")


# The stories whose text retention has yet to drop; shared by m005's index and prune_text,
# which SQLite lets use that partial index only when the two conditions read the same.
_HAS_TEXT = "(summary != '' OR content != '')"


@_step
def m005_retention_index(db: sqlite_utils.Database) -> None:
    """Retention (run after every poll) finds the stories to prune without a table scan."""
    db.execute(f"CREATE INDEX stories_with_text ON stories (first_seen) WHERE {_HAS_TEXT}")


@_step
def m006_delivery_outbox(db: sqlite_utils.Database) -> None:
    """Per-target deliveries with an audit trail; alerts keep their content, rendered for
    each target when sent. Alerts pending from earlier versions are routed afresh."""
    for column in ("content TEXT", "batch TEXT", "routed_at REAL"):
        db.execute(f"ALTER TABLE alerts ADD COLUMN {column}")
    db.execute(
        """UPDATE alerts SET batch = 'alert-' || id,
               routed_at = CASE WHEN status = 'pending' THEN NULL ELSE created_at END,
               content = (
                   SELECT json_object('story_title', s.title, 'link', s.link,
                       'feed', coalesce(f.name, f.title, f.url), 'published', s.published,
                       'watchlist', m.watchlist, 'keywords', json(m.keywords),
                       'terms', json(m.terms), 'snippet', m.snippet,
                       'highlight', json_array(0, 0))
                   FROM matches m JOIN stories s ON s.id = m.story_id
                   JOIN feeds f ON f.id = s.feed_id WHERE m.id = alerts.match_id)"""
    )
    db.execute("CREATE INDEX alerts_unrouted ON alerts (id) WHERE routed_at IS NULL")
    db.execute(
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            target TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('alert', 'summary', 'digest', 'notice')),
            status TEXT NOT NULL
                CHECK (status IN ('held', 'pending', 'sent', 'failed', 'released')),
            reason TEXT,
            due_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            released_into INTEGER REFERENCES deliveries(id),
            created_at REAL NOT NULL,
            sent_at REAL,
            title TEXT,  -- a notice's own text (other kinds render their alerts)
            body TEXT
        )"""
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, due_at)")
    db.execute(
        """
        CREATE TABLE delivery_alerts (
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
            alert_id INTEGER NOT NULL REFERENCES alerts(id),
            PRIMARY KEY (delivery_id, alert_id)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX delivery_alerts_by_alert ON delivery_alerts (alert_id)")
    db.execute(
        """
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
            at REAL NOT NULL,
            target TEXT NOT NULL,
            ok INTEGER NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX attempts_by_delivery ON attempts (delivery_id)")


@_step
def m007_source_health(db: sqlite_utils.Database) -> None:
    """Since when a feed fails, and which health notice was last sent about it."""
    for column in ("failing_since REAL", "health_notice TEXT"):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column}")
    db.execute("UPDATE feeds SET failing_since = last_polled_at WHERE error_count > 0")


@_step
def m008_delivery_claims(db: sqlite_utils.Database) -> None:
    """Which process is sending a delivery, until when: one sender per delivery, and the
    claim of a process that died runs out."""
    for column in ("claimed_by TEXT", "claimed_until REAL"):
        db.execute(f"ALTER TABLE deliveries ADD COLUMN {column}")


@_step
def m009_article_text(db: sqlite_utils.Database) -> None:
    """Which stories carry their article page's text (an edit of the feed's teaser must
    not overwrite it), and each feed's article pages that could not be read."""
    db.execute("ALTER TABLE stories ADD COLUMN full_text INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE feeds ADD COLUMN article_failures INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE feeds ADD COLUMN last_article_error TEXT")


@_step
def m010_events(db: sqlite_utils.Database) -> None:
    """The event index's tables (``monitor.store.events``). Databases from before this step
    made them in a migration set of their own ("feed-monitor-events", step ``m001_events``,
    with this same DDL): there, every statement finds its table or index already made."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS event_stories (
            story_id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL,
            seen_at REAL NOT NULL,
            words INTEGER NOT NULL,
            signature BLOB,           -- NULL once out of the window
            shingles BLOB,
            marks TEXT,
            lead_marks TEXT
        )"""
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS event_stories_event ON event_stories (event_id, seen_at)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS event_stories_seen ON event_stories (seen_at)")
    # Pruning finds the fingerprints to drop without stepping over the rows it pruned.
    db.execute(
        "CREATE INDEX IF NOT EXISTS event_stories_indexed ON event_stories (seen_at) "
        "WHERE signature IS NOT NULL"
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS event_bands (
            band_key INTEGER NOT NULL,
            story_id INTEGER NOT NULL,
            PRIMARY KEY (band_key, story_id)
        ) WITHOUT ROWID"""
    )


@_step
def m011_feed_rhythm(db: sqlite_utils.Database) -> None:
    """What the last parse of a feed said about its rhythm, kept for the polls that answer
    304 and parse nothing: the median gap between its dated entries, and the publisher's
    update hint (``<ttl>``, ``sy:updatePeriod``). Filled here from the stories stored."""
    db.execute("ALTER TABLE feeds ADD COLUMN rhythm REAL")
    db.execute("ALTER TABLE feeds ADD COLUMN update_hint REAL")
    feeds = [row[0] for row in db.execute("SELECT id FROM feeds")]
    for feed_id in feeds:
        published = db.execute(
            """SELECT s.published FROM story_sources ss JOIN stories s ON s.id = ss.story_id
               WHERE ss.feed_id = ? AND s.published IS NOT NULL
               ORDER BY ss.id DESC LIMIT 50""",
            [feed_id],
        ).fetchall()
        rhythm = publishing_interval(row[0] for row in published)
        db.execute("UPDATE feeds SET rhythm = ? WHERE id = ?", [rhythm, feed_id])


def _insert_source(
    conn: sqlite3.Connection, story_id: int, feed_id: int, source: SourceKeys, now: float
) -> None:
    conn.execute(
        "INSERT INTO story_sources (story_id, feed_id, entry_key, link, link_key, "
        "canonical_link, title_key, opaque, content_hash, first_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feed_id, entry_key) DO NOTHING",
        [story_id, feed_id, source.entry_key, source.link, source.link_key,
         source.canonical_link, source.title_key, int(source.opaque), source.content_hash, now],
    )  # fmt: skip
