"""Storage: the SQLite database, through sqlite-utils.

Owns the schema (versioned migrations applied at open), the feeds' poll state, the
stories (each kept once per feed identity), the matches, and the alert outbox. A poll's
new stories, their matches and their alerts are written in one transaction, so a crash
at any moment leaves either all of them or none, and no alert without its story.

A ``Store`` is used from the thread that opened it only (SQLite's rule); the pipeline
keeps all writes on the event-loop thread and runs network and parsing work elsewhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlite_utils
from sqlite_utils import Migrations

from monitor import events_store
from monitor.errors import DatabaseFault, StoreError
from monitor.health import FeedHealth, Notice
from monitor.identity import KnownSource, Lookup, SourceKeys, source_keys
from monitor.match import search_query
from monitor.models import AlertContent, Entry, Match
from monitor.outbox import Delivery, DeliveryKind, HeldDelivery, Release, UnroutedAlert

if TYPE_CHECKING:
    from monitor.events import EventIndex

migrations = Migrations("feed-monitor")


@migrations()
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


@migrations()
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
        _insert_source(db, story_id, feed_id, keys, seen)


@migrations()
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


@migrations()
def m004_feed_health(db: sqlite_utils.Database) -> None:
    """What polite, adaptive polling remembers about each feed."""
    for column in ("effective_url TEXT", "body_hash TEXT", "gone_at REAL", "interval REAL"):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column}")


# The stories whose text retention has yet to drop; shared by m005's index and prune_text,
# which SQLite lets use that partial index only when the two conditions read the same.
_HAS_TEXT = "(summary != '' OR content != '')"


@migrations()
def m005_retention_index(db: sqlite_utils.Database) -> None:
    """Retention (run after every poll) finds the stories to prune without a table scan."""
    db.execute(f"CREATE INDEX stories_with_text ON stories (first_seen) WHERE {_HAS_TEXT}")


@migrations()
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


@migrations()
def m007_source_health(db: sqlite_utils.Database) -> None:
    """Since when a feed fails, and which health notice was last sent about it."""
    for column in ("failing_since REAL", "health_notice TEXT"):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column}")
    db.execute("UPDATE feeds SET failing_since = last_polled_at WHERE error_count > 0")


@migrations()
def m008_delivery_claims(db: sqlite_utils.Database) -> None:
    """Which process is sending a delivery, until when: one sender per delivery, and the
    claim of a process that died runs out."""
    for column in ("claimed_by TEXT", "claimed_until REAL"):
        db.execute(f"ALTER TABLE deliveries ADD COLUMN {column}")


@migrations()
def m009_article_text(db: sqlite_utils.Database) -> None:
    """Which stories carry their article page's text (an edit of the feed's teaser must
    not overwrite it), and each feed's article pages that could not be read."""
    db.execute("ALTER TABLE stories ADD COLUMN full_text INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE feeds ADD COLUMN article_failures INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE feeds ADD COLUMN last_article_error TEXT")


class SavedPoll(NamedTuple):
    """What ``save_poll`` did: alerts queued, and the events that new stories joined."""

    queued: int
    joined_events: tuple[int, ...] = ()


@dataclass(frozen=True)
class EventReport:
    """One outlet's report of an event."""

    story_id: int
    outlet: str
    title: str
    link: str | None
    first_seen: float


@dataclass(frozen=True)
class FeedState:
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


_FEED_STATE_COLUMNS = (
    "id, url, name, etag, last_modified, next_poll_at, effective_url, body_hash, gone_at, "
    "interval, error_count"
)


@dataclass(frozen=True)
class FeedStatus:
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


@dataclass(frozen=True)
class PollRecord:
    """The outcome of one poll, to be remembered against its feed."""

    polled_at: float
    next_poll_at: float
    status: int | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    interval: float | None = None
    body_hash: str | None = None
    moved_to: str | None = None
    gone: bool = False


@dataclass
class StoryToSave:
    """A new story with what the pipeline decided about it: its matches and alerts."""

    entry: Entry
    source: SourceKeys
    matches: list[tuple[Match, AlertContent | None]]  # None: matched, but too old to alert
    copies: list[SourceKeys] = field(default_factory=list)  # the same story again, this poll


@dataclass(frozen=True)
class SourceToAdd:
    """A known story seen under a new feed, link or guid: remembered, never alerted."""

    story_id: int
    source: SourceKeys


@dataclass(frozen=True)
class StoryEdit:
    """A known story whose publisher edited it: the stored text follows."""

    story_id: int
    entry: Entry
    source: SourceKeys


@dataclass
class PollPlan:
    new: list[StoryToSave] = field(default_factory=list)
    sources: list[SourceToAdd] = field(default_factory=list)
    edits: list[StoryEdit] = field(default_factory=list)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # of each watchlist


@dataclass(frozen=True)
class StoredStory:
    id: int
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    entry: Entry
    first_seen: float


@dataclass(frozen=True)
class SearchHit:
    story_id: int
    title: str
    link: str | None
    first_seen: float
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    snippet: str


@dataclass(frozen=True)
class MatchRow:
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


@dataclass(frozen=True)
class StoryDelivery:
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


@dataclass(frozen=True)
class SourceRow:
    feed_url: str
    feed_name: str | None
    feed_title: str | None
    link: str | None
    first_seen: float


DELIVERY_STATES = ("sent", "pending", "held", "failed")  # as counted by delivery_counts


@dataclass(frozen=True)
class DueDelivery:
    """A delivery to make now, with the content of every alert it carries."""

    id: int
    target: str
    kind: DeliveryKind
    reason: str | None
    attempts: int
    contents: list[AlertContent]
    notice: tuple[str, str] | None = None  # a health notice's title and body


@dataclass(frozen=True)
class AlertDeliveryRow:
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


class Store:
    """The feed-monitor database. Open with ``Store.open(path)``."""

    def __init__(self, db: sqlite_utils.Database, path: Path | None = None) -> None:
        self.db = db
        self.path = path
        # Which file was opened: sqlite3 has no accessor for its descriptor, so the path
        # is compared with it again (see verify_file).
        self._file_id = _file_id(path) if path is not None else None
        self._batch_seconds: float | None = None
        self._batch_started = 0.0
        self._depth = 0  # nested _writing blocks; the outermost one commits

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=30)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA busy_timeout = 30000")
            if db.journal_mode != "wal":
                db.enable_wal()
            db.execute("PRAGMA synchronous = NORMAL")
            # Checkpoint the WAL every ~40 MB instead of 4 MB: index pages written by many
            # polls in a row reach the database file once. Measured by bench_store.py.
            db.execute("PRAGMA wal_autocheckpoint = 10000")
            db.execute("PRAGMA foreign_keys = ON")
            migrations.apply(db)
            events_store.migrate(db)
            store = cls(db, path)  # the file surely exists now: remember which it is
        except (sqlite3.Error, OSError) as exc:
            fault = damage(exc, path)
            if fault is not None:
                raise DatabaseFault(f"cannot open {fault}") from exc
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        return store

    def close(self) -> None:
        self.db.close()

    def backup(self, destination: Path) -> int:
        """Write a consistent copy of the database to ``destination``; return its size.

        sqlite3's online backup reads the database as one snapshot, committed WAL pages
        included, while the daemon goes on writing (copying the file alone could miss the
        WAL or catch a half-written page). The copy is one self-contained file (rollback
        journal; feed-monitor turns WAL on again when it opens it), checked before it
        replaces ``destination`` atomically."""
        partial = destination.with_name(f".{destination.name}.partial")
        try:
            copy = sqlite3.connect(str(partial))
            try:
                self.db.conn.backup(copy)
                copy.execute("PRAGMA journal_mode = DELETE")
                [(verdict,)] = copy.execute("PRAGMA quick_check").fetchall()
            finally:
                copy.close()
            if verdict != "ok":
                raise StoreError(f"the copy of {self.path} failed its check: {verdict}")
            partial.replace(destination)
            return destination.stat().st_size
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot back up to {destination}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: object,
    ) -> None:
        # A damaged file shows itself in whichever query reads the damaged page: say
        # so once, here, for every use of the store.
        fault = self.fault(exc) if exc is not None else None
        try:
            self.close()
        except sqlite3.Error:
            if fault is None and exc is None:
                raise
        if fault is not None:
            raise fault from exc

    def fault(self, exc: BaseException) -> DatabaseFault | None:
        """The ``DatabaseFault`` that ``exc`` (or what it wraps) shows, if it shows one."""
        return damage(exc, self.path) if self.path is not None else None

    def verify_file(self) -> None:
        """Raise ``DatabaseFault`` if the file at our path is not the one we opened.

        A deleted or replaced database would otherwise go unnoticed: writes would go on
        into the unlinked file, and the next start would find none of them (and alert
        everything again).
        """
        if self.path is None or self._file_id is None:
            return
        now = _file_id(self.path)
        if now != self._file_id:
            what = "deleted" if now is None else "replaced by another file"
            raise DatabaseFault(
                f"database file {self.path} was deleted or replaced while in use ({what}); "
                "stopping so that nothing more is written to a file no one will read. "
                "Restore the file, or start again to use the one now at that path."
            )

    # Feeds -----------------------------------------------------------------

    def sync_feeds(
        self, feeds: Iterable[tuple[str, str | None]], now: float
    ) -> dict[str, FeedState]:
        """Make sure every configured (url, name) has a row; return their states by URL."""
        with self._writing():
            for url, name in feeds:
                self.db.execute(
                    "INSERT INTO feeds (url, name, added_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (url) DO UPDATE SET name = excluded.name",
                    [url, name, now],
                )
        states = {}
        for row in self.db.query(f"SELECT {_FEED_STATE_COLUMNS} FROM feeds"):
            states[row["url"]] = FeedState(**row)
        return states

    def feed_state(self, feed_id: int) -> FeedState:
        row = self.db.execute(
            f"SELECT {_FEED_STATE_COLUMNS} FROM feeds WHERE id = ?", [feed_id]
        ).fetchone()
        return FeedState(*row)

    def feed_status(self) -> list[FeedStatus]:
        rows = self.db.query(
            """
            SELECT f.url, f.name, f.title, f.last_polled_at, f.last_success_at, f.last_status,
                   f.last_error, f.error_count, f.next_poll_at,
                   (SELECT count(*) FROM story_sources s WHERE s.feed_id = f.id) AS stories,
                   f.effective_url, f.gone_at, f.interval, f.article_failures,
                   f.last_article_error
            FROM feeds f ORDER BY f.name, f.url"""
        )
        return [FeedStatus(**row) for row in rows]

    # Stories ---------------------------------------------------------------

    def shared_links(self, feed_id: int, links: list[str]) -> set[str]:
        """Which of ``links`` this feed has used before for entries told apart otherwise.

        Such entries were stored under a fingerprint key (see ``identity.source_keys``)."""
        shared: set[str] = set()
        for chunk in _chunks(links):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT DISTINCT link_key FROM story_sources WHERE feed_id = ? "
                f"AND link_key IN ({marks}) AND entry_key LIKE 'hash:%'",
                [feed_id, *chunk],
            )
            shared.update(row[0] for row in rows)
        return shared

    def lookup(self, feed_id: int, keys: list[SourceKeys], since: float) -> Lookup:
        """Stored sources sharing a key with ``keys``: this feed's entry keys (and the keys
        earlier versions stored), any feed's canonical links, this feed's opaque links of
        entries not known by key, and other feeds' titles first seen at or after ``since``.
        Which of them is the same story is ``identity.identify``'s to decide."""
        by_entry_key = dict(
            self._sources_by(
                "ss.feed_id = ? AND ss.entry_key", "ss.entry_key",
                [key for k in keys for key in (k.entry_key, k.legacy_key) if key],
                [feed_id],
            )
        )  # fmt: skip
        unknown = [k for k in keys if k.entry_key not in by_entry_key]
        by_link: dict[str, list[KnownSource]] = {}
        for link, source in self._sources_by(
            "ss.canonical_link", "ss.canonical_link",
            [k.canonical_link for k in unknown if k.canonical_link],
        ):  # fmt: skip
            by_link.setdefault(link, []).append(source)
        by_own_link: dict[str, list[KnownSource]] = {}
        for link, source in self._sources_by(
            "ss.feed_id = ? AND ss.opaque = 1 AND ss.link_key", "ss.link_key",
            [k.own_link for k in unknown if k.own_link and k.opaque],
            [feed_id],
        ):  # fmt: skip
            by_own_link.setdefault(link, []).append(source)
        # Titles only ever match across feeds where a link says nothing: an opaque entry
        # may be any recent story with its title; a plain one only a recent opaque copy.
        by_title: dict[str, list[KnownSource]] = {}
        for opaque_only, titles in (
            (False, [k.title_key for k in unknown if k.title_key and k.opaque]),
            (True, [k.title_key for k in unknown if k.title_key and not k.opaque]),
        ):
            where = f"ss.first_seen >= ? AND ss.feed_id != ? {'AND ss.opaque = 1 ' * opaque_only}"
            for title, source in self._sources_by(
                f"{where}AND ss.title_key", "ss.title_key", titles, [since, feed_id]
            ):
                by_title.setdefault(title, []).append(source)
        return Lookup(by_entry_key, by_link, by_own_link, by_title)

    def _sources_by(
        self, condition: str, key: str, values: list[str], params: Sequence[object] = ()
    ) -> list[tuple[str, KnownSource]]:
        """Stored sources where ``condition IN (values)``, in chunks, each with its ``key``
        column's value (``ss`` is story_sources)."""
        out = []
        for chunk in _chunks(values):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT {key}, ss.story_id, ss.feed_id, ss.title_key, ss.content_hash, "
                "ss.link_key, ss.opaque, s.published, ss.first_seen "
                "FROM story_sources ss JOIN stories s ON s.id = ss.story_id "
                f"WHERE {condition} IN ({marks})",
                [*params, *chunk],
            )
            for (
                value,
                story_id,
                feed,
                title,
                content_hash,
                link_key,
                opaque,
                published,
                seen,
            ) in rows:
                known = KnownSource(story_id, feed, title, content_hash, link_key, bool(opaque),
                                    published, seen)  # fmt: skip
                out.append((value, known))
        return out

    def recent_published(self, feed_id: int, limit: int = 50) -> list[float]:
        """When the newest ``limit`` stories seen in this feed were published (the dated
        ones): the feed's rhythm, for a poll that answered 304 and has no entries to read."""
        rows = self.db.execute(
            """SELECT s.published FROM story_sources ss JOIN stories s ON s.id = ss.story_id
               WHERE ss.feed_id = ? AND s.published IS NOT NULL
               ORDER BY ss.id DESC LIMIT ?""",
            [feed_id, limit],
        ).fetchall()
        return [row[0] for row in rows]

    def count_stories_since(self, since: float) -> int:
        [(count,)] = self.db.execute(
            "SELECT count(*) FROM stories WHERE first_seen >= ?", [since]
        ).fetchall()
        return int(count)

    def stories_since(self, since: float) -> Iterator[StoredStory]:
        """Stories first seen at or after ``since``, oldest first, with their feed."""
        rows = self.db.execute(
            """SELECT s.id, f.url, f.name, f.title AS feed_title, s.key, s.title, s.link,
                      s.summary, s.content, s.author, s.published, s.first_seen
               FROM stories s JOIN feeds f ON f.id = s.feed_id
               WHERE s.first_seen >= ? ORDER BY s.first_seen, s.id""",
            [since],
        )
        for (story_id, url, name, feed_title, key, title, link, summary, content, author,
             published, first_seen) in rows:  # fmt: skip
            entry = Entry(key, title, link, summary, content, published, author)
            yield StoredStory(story_id, url, name, feed_title, entry, first_seen)

    def save_poll(
        self, feed_id: int, record: PollRecord, plan: PollPlan, events: EventIndex | None = None
    ) -> SavedPoll:
        """Write a poll's outcome, new stories, their sources, matches and alerts, and
        edits, in one transaction.

        With ``events``, each new story is assigned to an event (``monitor.events``); a
        story that joins an event already reported alerts only for the watchlists that
        no earlier report of it alerted."""
        queued = 0
        joined: list[int] = []
        now = record.polled_at
        with self._writing():
            self._record_poll(feed_id, record)
            for story in plan.new:
                story_id = self._insert_story(feed_id, story.source.entry_key, story.entry, now)
                if story_id is None:
                    continue  # another run stored it meanwhile
                for source in (story.source, *story.copies):
                    _insert_source(self.db, story_id, feed_id, source, now)
                alerted: set[str] = set()
                if events is not None:
                    entry = story.entry
                    verdict = events.assign(
                        story_id, entry.title, entry.content or entry.summary, now
                    )
                    if not verdict.is_new:
                        joined.append(verdict.event_id)
                        alerted = self.event_watchlists(verdict.event_id)
                for match, content in story.matches:
                    match_id = self._insert_match(story_id, match, now)
                    if content is not None and match.watchlist not in alerted:
                        tags = plan.tags.get(match.watchlist, ())
                        self._queue_alert(match_id, content, tags, f"{feed_id}@{now}", now)
                        queued += 1
            for added in plan.sources:
                _insert_source(self.db, added.story_id, feed_id, added.source, now)
            if plan.edits:
                self._apply_edits(feed_id, plan.edits)
        return SavedPoll(queued, tuple(joined))

    def event_watchlists(self, event_id: int) -> set[str]:
        """The watchlists that alerted on some report of an event."""
        rows = self.db.execute(
            """SELECT DISTINCT m.watchlist FROM event_stories e
               JOIN matches m ON m.story_id = e.story_id
               JOIN alerts a ON a.match_id = m.id
               WHERE e.event_id = ?""",
            [event_id],
        ).fetchall()
        return {row[0] for row in rows}

    def event_of(self, story_id: int) -> int | None:
        """The event a story belongs to (its first report's id), if grouping saw it."""
        row = self.db.execute(
            "SELECT event_id FROM event_stories WHERE story_id = ?", [story_id]
        ).fetchone()
        return None if row is None else int(row[0])

    def events_since(self, since: float) -> list[tuple[int, list[EventReport]]]:
        """Events with a report first seen since ``since`` and more than one report,
        latest activity first, each with its reports."""
        rows = self.db.execute(
            """SELECT event_id FROM event_stories
               WHERE event_id IN (SELECT event_id FROM event_stories WHERE seen_at >= ?)
               GROUP BY event_id HAVING count(*) > 1 ORDER BY max(seen_at) DESC""",
            [since],
        ).fetchall()
        return [(event_id, self.event_reports(event_id)) for (event_id,) in rows]

    def event_reports(self, event_id: int) -> list[EventReport]:
        """Every report of an event, first seen first: outlet, title, link."""
        rows = self.db.execute(
            """SELECT s.id, coalesce(f.name, f.title, f.url), s.title, s.link, e.seen_at
               FROM event_stories e JOIN stories s ON s.id = e.story_id
               JOIN feeds f ON f.id = s.feed_id
               WHERE e.event_id = ? ORDER BY e.seen_at, s.id""",
            [event_id],
        ).fetchall()
        return [EventReport(*row) for row in rows]

    def _apply_edits(self, feed_id: int, edits: Sequence[StoryEdit]) -> None:
        """Rewrite edited stories (keeping the search index right) and their sources' keys."""
        edited = [edit.story_id for edit in edits]
        with self._reindexing("id IN (SELECT value FROM json_each(?))", [json.dumps(edited)]):
            for edit in edits:
                entry = edit.entry
                # A story read from its article page keeps that text when the feed edits
                # its teaser.
                self.db.execute(
                    "UPDATE stories SET title = ?, summary = CASE WHEN full_text THEN summary "
                    "ELSE ? END, content = CASE WHEN full_text THEN content ELSE ? END, "
                    "author = ? WHERE id = ?",
                    [entry.title, entry.summary, entry.content, entry.author, edit.story_id],
                )
        for edit in edits:
            self.db.execute(
                "UPDATE story_sources SET content_hash = ?, title_key = ? "
                "WHERE feed_id = ? AND entry_key = ?",
                [edit.source.content_hash, edit.source.title_key, feed_id,
                 edit.source.entry_key],
            )  # fmt: skip

    def record_article_failures(self, feed_id: int, failures: Sequence[str]) -> None:
        """Count article pages of this feed that could not be read; keep the last reason."""
        if failures:
            with self._writing():
                self.db.execute(
                    "UPDATE feeds SET article_failures = article_failures + ?, "
                    "last_article_error = ? WHERE id = ?",
                    [len(failures), failures[-1], feed_id],
                )

    def record_failure(self, feed_id: int, record: PollRecord) -> None:
        with self._writing():
            self._record_poll(feed_id, record)

    def _record_poll(self, feed_id: int, record: PollRecord) -> None:
        r = record
        if r.error is None:
            self.db.execute(
                """UPDATE feeds SET last_polled_at = ?, last_success_at = ?, last_status = ?,
                       last_error = NULL, error_count = 0, failing_since = NULL,
                       next_poll_at = ?, interval = ?,
                       etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),
                       title = coalesce(?, title), body_hash = coalesce(?, body_hash),
                       effective_url = coalesce(?, effective_url)
                   WHERE id = ?""",
                [r.polled_at, r.polled_at, r.status, r.next_poll_at, r.interval, r.etag,
                 r.last_modified, r.title, r.body_hash, r.moved_to, feed_id],
            )  # fmt: skip
        else:
            self.db.execute(
                """UPDATE feeds SET last_polled_at = ?, last_status = ?, last_error = ?,
                       error_count = error_count + 1, next_poll_at = ?,
                       failing_since = coalesce(failing_since, ?),
                       gone_at = CASE WHEN ? THEN ? ELSE gone_at END
                   WHERE id = ?""",
                [r.polled_at, r.status, r.error, r.next_poll_at, r.polled_at, r.gone,
                 r.polled_at, feed_id],
            )  # fmt: skip

    def _insert_story(self, feed_id: int, key: str, entry: Entry, now: float) -> int | None:
        row = self.db.execute(
            """INSERT INTO stories (feed_id, key, title, link, summary, content, author,
                                   published, first_seen, full_text)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (feed_id, key) DO NOTHING RETURNING id""",
            [
                feed_id,
                key,
                entry.title,
                entry.link,
                entry.summary,
                entry.content,
                entry.author,
                entry.published,
                now,
                int(entry.full_text),
            ],
        ).fetchone()
        return int(row[0]) if row else None

    def _insert_match(self, story_id: int, match: Match, now: float) -> int:
        row = self.db.execute(
            """INSERT INTO matches (story_id, watchlist, keywords, terms, snippet, created_at)
               VALUES (?, ?, ?, ?, ?, ?) RETURNING id""",
            [
                story_id,
                match.watchlist,
                json.dumps(match.keywords),
                json.dumps(match.terms),
                match.snippet,
                now,
            ],
        ).fetchone()
        return int(row[0])

    def _queue_alert(
        self, match_id: int, content: AlertContent, tags: Sequence[str], batch: str, now: float
    ) -> None:
        # status/next_attempt_at/body are the first schema's columns; deliveries track sending.
        self.db.execute(
            """INSERT INTO alerts (match_id, tags, title, body, status, next_attempt_at,
                                   created_at, content, batch)
               VALUES (?, ?, ?, '', 'pending', ?, ?, ?, ?)""",
            [match_id, json.dumps(list(tags)), content.story_title, now, now,
             json.dumps(dataclasses.asdict(content)), batch],
        )  # fmt: skip

    # Outbox ----------------------------------------------------------------

    def search(self, query: str, since: float, limit: int = 50) -> list[SearchHit]:
        """Stories whose text holds every word of ``query``, spelled as watchlists spell
        terms (``match.search_query``; words, not FTS syntax), best first. A query with no
        letter or digit finds nothing."""
        self.index_pending()
        wanted = search_query(query)
        if wanted is None:
            return []
        hits: list[SearchHit] = []
        page, offset = max(4 * limit, 100), 0
        while len(hits) < limit:
            try:
                rows = self.db.execute(
                    """SELECT s.id, s.title, s.link, s.first_seen, f.url, f.name, f.title,
                              snippet(stories_fts, -1, '»', '«', '…', 16),
                              s.summary, s.content
                       FROM stories_fts
                       JOIN stories s ON s.rowid = stories_fts.rowid
                       JOIN feeds f ON f.id = s.feed_id
                       WHERE stories_fts MATCH ? AND s.first_seen >= ?
                       ORDER BY rank LIMIT ? OFFSET ?""",
                    [wanted.fts, since, page, offset],
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"search failed: {exc}") from exc
            # The index finds candidates (F-350 for F-35); the term's own rules decide.
            for *hit, summary, content in rows:
                if wanted.accepts("\n".join((hit[1], summary, content))):
                    hits.append(SearchHit(*hit))
            if len(rows) < page:
                break
            offset += page
        return hits[:limit]

    def recent_matches(
        self, since: float, watchlists: Sequence[str] = (), story_id: int | None = None
    ) -> list[MatchRow]:
        """Matches made at or after ``since``, newest first, with their alert's state."""
        where = "m.created_at >= ?"
        params: list[object] = [since]
        if story_id is not None:
            where += " AND m.story_id = ?"
            params.append(story_id)
        if watchlists:
            where += f" AND m.watchlist IN ({','.join('?' * len(watchlists))})"
            params += list(watchlists)
        rows = self.db.execute(
            f"""SELECT m.id, m.watchlist, m.keywords, m.terms, m.snippet, m.created_at,
                       s.id, s.title, s.link, f.url, f.name, f.title,
                       CASE WHEN a.id IS NULL THEN 'not alerted'
                            WHEN d.failed THEN 'failed' WHEN d.pending THEN 'pending'
                            WHEN d.held THEN 'held' WHEN d.sent THEN 'sent'
                            WHEN a.routed_at IS NULL THEN 'pending'
                            ELSE a.status END,  -- alerts sent before per-target deliveries
                       coalesce(d.attempts, a.attempts, 0), coalesce(d.last_error, a.last_error),
                       coalesce(d.sent_at, a.sent_at), s.published
                FROM matches m
                JOIN stories s ON s.id = m.story_id
                JOIN feeds f ON f.id = s.feed_id
                LEFT JOIN alerts a ON a.match_id = m.id
                LEFT JOIN (
                    SELECT da.alert_id, sum(x.status = 'failed') AS failed,
                           sum(x.status = 'pending') AS pending, sum(x.status = 'held') AS held,
                           sum(x.status = 'sent') AS sent, sum(x.attempts) AS attempts,
                           max(x.last_error) AS last_error, max(x.sent_at) AS sent_at
                    FROM delivery_alerts da JOIN deliveries x ON x.id = da.delivery_id
                    WHERE x.status != 'released' GROUP BY da.alert_id
                ) d ON d.alert_id = a.id
                WHERE {where} ORDER BY m.created_at DESC, m.id DESC""",
            params,
        ).fetchall()
        return [
            MatchRow(row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), *row[4:])
            for row in rows
        ]

    def story(self, story_id: int) -> StoredStory | None:
        """One stored story with its (first) feed, or None."""
        row = self.db.execute(
            """SELECT s.id, f.url, f.name, f.title, s.key, s.title, s.link, s.summary,
                      s.content, s.author, s.published, s.first_seen
               FROM stories s JOIN feeds f ON f.id = s.feed_id WHERE s.id = ?""",
            [story_id],
        ).fetchone()
        if row is None:
            return None
        (id_, url, name, feed_title, key, title, link, summary, content, author, published,
         first_seen) = row  # fmt: skip
        entry = Entry(key, title, link, summary, content, published, author)
        return StoredStory(id_, url, name, feed_title, entry, first_seen)

    def story_deliveries(self, story_id: int) -> list[StoryDelivery]:
        """Every delivery of every alert about a story, oldest first."""
        rows = self.db.execute(
            """SELECT m.watchlist, a.id, d.target, d.kind, d.status, d.reason, d.attempts,
                      d.last_error, d.sent_at, r.status, r.sent_at
               FROM matches m JOIN alerts a ON a.match_id = m.id
               JOIN delivery_alerts da ON da.alert_id = a.id
               JOIN deliveries d ON d.id = da.delivery_id
               LEFT JOIN deliveries r ON r.id = d.released_into
               WHERE m.story_id = ? ORDER BY d.id""",
            [story_id],
        ).fetchall()
        return [StoryDelivery(*row) for row in rows]

    def story_sources(self, story_id: int) -> list[SourceRow]:
        """Every feed and link a story was seen under, first seen first."""
        rows = self.db.execute(
            """SELECT f.url, f.name, f.title, ss.link, ss.first_seen
               FROM story_sources ss JOIN feeds f ON f.id = ss.feed_id
               WHERE ss.story_id = ? ORDER BY ss.first_seen, ss.id""",
            [story_id],
        ).fetchall()
        return [SourceRow(*row) for row in rows]

    def prune_text(self, before: float) -> int:
        """Drop the summary and content of stories first seen before ``before``.

        Titles, links and every identity key stay, so a pruned story never alerts again.
        """
        where = f"first_seen < ? AND {_HAS_TEXT}"
        with self._writing(), self._reindexing(where, [before]):
            cursor = self.db.execute(
                f"UPDATE stories SET summary = '', content = '' WHERE {where}", [before]
            )
        return cursor.rowcount

    def index_pending(self) -> int:
        """Add the stories stored since the last call to the full-text index.

        New stories are indexed in batches rather than in each poll's transaction: FTS5
        costs about 150 µs a row in small transactions and 12 µs a row in large ones.
        ``search`` calls this first, so it always sees every stored story.
        """
        with self._writing():
            [(done,)] = self.db.execute("SELECT indexed_up_to FROM fts_progress").fetchall()
            [(latest,)] = self.db.execute("SELECT coalesce(max(id), 0) FROM stories").fetchall()
            if latest <= done:
                return 0
            self.db.execute(
                "INSERT INTO stories_fts (rowid, title, summary, content) "
                "SELECT id, title, summary, content FROM stories WHERE id > ? AND id <= ?",
                [done, latest],
            )
            self.db.execute("UPDATE fts_progress SET indexed_up_to = ?", [latest])
        return int(latest - done)

    @contextlib.contextmanager
    def _reindexing(self, where: str, params: list[object]) -> Iterator[None]:
        """Keep the index right while the stories ``where`` selects change their text.

        The index is external-content FTS5: old values must be removed before the update
        and new ones added after, for the stories already indexed (newer ones are indexed
        later with their current text anyway). Runs inside the caller's transaction.
        """
        indexed = f"({where}) AND id <= (SELECT indexed_up_to FROM fts_progress)"
        self.db.execute(
            "INSERT INTO stories_fts (stories_fts, rowid, title, summary, content) "
            f"SELECT 'delete', id, title, summary, content FROM stories WHERE {indexed}",
            params,
        )
        ids = [row[0] for row in self.db.execute(f"SELECT id FROM stories WHERE {indexed}", params)]
        yield
        self.db.execute(
            "INSERT INTO stories_fts (rowid, title, summary, content) "
            "SELECT id, title, summary, content FROM stories "
            "WHERE id IN (SELECT value FROM json_each(?))",
            [json.dumps(ids)],
        )

    def unrouted_alerts(self, batches: int = 100) -> list[UnroutedAlert]:
        """Alerts stored but not yet given deliveries, oldest first, by whole polls (the
        burst guard folds one poll's alerts into one summary, however many there are)."""
        rows = self.db.execute(
            """SELECT a.id, m.watchlist, a.tags, a.batch FROM alerts a
               JOIN matches m ON m.id = a.match_id
               WHERE a.routed_at IS NULL AND a.batch IN (
                   SELECT batch FROM alerts WHERE routed_at IS NULL
                   GROUP BY batch ORDER BY min(id) LIMIT ?)
               ORDER BY a.id""",
            [batches],
        ).fetchall()
        return [UnroutedAlert(id, w, tuple(json.loads(tags)), batch) for id, w, tags, batch in rows]

    def save_routes(
        self, alert_ids: Sequence[int], deliveries: Sequence[Delivery], now: float
    ) -> None:
        """Write the deliveries decided for ``alert_ids`` and mark those alerts routed."""
        with self._writing():
            for delivery in deliveries:
                held_until = delivery.held_until
                self._insert_delivery(
                    delivery.target, delivery.kind, "pending" if held_until is None else "held",
                    delivery.reason, now if held_until is None else held_until,
                    delivery.alert_ids, now,
                )  # fmt: skip
            self.db.execute(
                "UPDATE alerts SET routed_at = ? WHERE id IN (SELECT value FROM json_each(?))",
                [now, json.dumps(list(alert_ids))],
            )

    def _insert_delivery(
        self, target: str, kind: str, status: str, reason: str | None, due_at: float,
        alert_ids: Sequence[int], now: float,
    ) -> int:  # fmt: skip
        [(delivery_id,)] = self.db.execute(
            """INSERT INTO deliveries (target, kind, status, reason, due_at, created_at)
               VALUES (?, ?, ?, ?, ?, ?) RETURNING id""",
            [target, kind, status, reason, due_at, now],
        ).fetchall()
        self.db.execute(
            "INSERT INTO delivery_alerts (delivery_id, alert_id) SELECT ?, value FROM json_each(?)",
            [delivery_id, json.dumps(list(alert_ids))],
        )
        return int(delivery_id)

    def held_due(self, now: float) -> list[HeldDelivery]:
        """Held deliveries (digests, quiet hours) whose time has come."""
        rows = self.db.execute(
            """SELECT d.id, d.target, d.reason, json_group_array(da.alert_id)
               FROM deliveries d JOIN delivery_alerts da ON da.delivery_id = d.id
               WHERE d.status = 'held' AND d.due_at <= ? GROUP BY d.id ORDER BY d.id""",
            [now],
        ).fetchall()
        return [
            HeldDelivery(id, target, reason or "", tuple(json.loads(ids)))
            for id, target, reason, ids in rows
        ]

    def save_releases(self, releases: Sequence[Release], now: float) -> None:
        """Turn released held deliveries into one pending delivery per release."""
        with self._writing():
            for release in releases:
                if len(release.held_ids) == 1 and len(release.alert_ids) == 1:
                    self.db.execute(
                        "UPDATE deliveries SET status = 'pending', due_at = ? WHERE id = ?",
                        [now, release.held_ids[0]],
                    )
                    continue
                digest_id = self._insert_delivery(
                    release.target, "digest", "pending", release.reason, now, release.alert_ids,
                    now,
                )  # fmt: skip
                self.db.execute(
                    "UPDATE deliveries SET status = 'released', released_into = ? "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    [digest_id, json.dumps(list(release.held_ids))],
                )

    def due_deliveries(self, now: float, *, limit: int = 500) -> list[DueDelivery]:
        """Pending deliveries due by ``now`` and not claimed by a live sender, oldest first,
        with their alerts' content (for inspection; senders use ``claim_due``)."""
        rows = self.db.execute(
            """SELECT id FROM deliveries
               WHERE status = 'pending' AND due_at <= ? AND coalesce(claimed_until, 0) < ?
               ORDER BY id LIMIT ?""",
            [now, now, limit],
        ).fetchall()
        return self._load_deliveries([row[0] for row in rows])

    def due_targets(self, now: float) -> list[str]:
        """Targets with a pending delivery due by ``now`` that nobody has claimed."""
        rows = self.db.execute(
            """SELECT DISTINCT target FROM deliveries
               WHERE status = 'pending' AND due_at <= ? AND coalesce(claimed_until, 0) < ?""",
            [now, now],
        ).fetchall()
        return [row[0] for row in rows]

    def claim_due(
        self, target: str, *, now: float, owner: str, lease: float, due_by: float | None = None,
        skip: Sequence[int] = (), limit: int = 1,
    ) -> list[DueDelivery]:  # fmt: skip
        """Claim up to ``limit`` of ``target``'s due deliveries for ``owner`` until
        ``now + lease``, atomically: two processes never claim the same delivery, and a
        claim whose owner died runs out. A claim counts as an attempt, made before the
        send, so a crash between send and record costs one repeat, not endless ones.
        ``due_by`` (default ``now``) lets retries be made early; ``skip`` lists deliveries
        this process sent but could not record yet."""
        with self._writing():
            rows = self.db.execute(
                """UPDATE deliveries SET claimed_by = ?, claimed_until = ?,
                       attempts = attempts + 1
                   WHERE id IN (
                       SELECT id FROM deliveries
                       WHERE target = ? AND status = 'pending' AND due_at <= ?
                         AND coalesce(claimed_until, 0) < ?
                         AND id NOT IN (SELECT value FROM json_each(?))
                       ORDER BY id LIMIT ?)
                   RETURNING id""",
                [owner, now + lease, target, now if due_by is None else due_by, now,
                 json.dumps(list(skip)), limit],
            ).fetchall()  # fmt: skip
        return self._load_deliveries(sorted(row[0] for row in rows))

    def claim_owners(self, now: float) -> list[str]:
        """Owners of claims still running at ``now``."""
        rows = self.db.execute(
            "SELECT DISTINCT claimed_by FROM deliveries WHERE claimed_until >= ?", [now]
        ).fetchall()
        return [row[0] for row in rows if row[0]]

    def release_claims(self, owner: str) -> int:
        """Drop every claim of ``owner`` (a process known to be dead): its deliveries are
        due again at once instead of when the lease runs out."""
        with self._writing():
            cursor = self.db.execute(
                "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "
                "WHERE claimed_by = ?",
                [owner],
            )
        return cursor.rowcount

    def _load_deliveries(self, ids: Sequence[int]) -> list[DueDelivery]:
        rows = self.db.execute(
            # Each alert's content, with the other outlets that reported its event by
            # the time it is sent (``events``): digests and summaries name them.
            """SELECT d.id, d.target, d.kind, d.reason, d.attempts, d.title, d.body,
                      json_group_array(json_set(json(a.content), '$.also_reported_by', json((
                          SELECT json_group_array(DISTINCT coalesce(f.name, f.title, f.url))
                          FROM matches m
                          JOIN event_stories mine ON mine.story_id = m.story_id
                          JOIN event_stories other ON other.event_id = mine.event_id
                                                  AND other.story_id != m.story_id
                          JOIN stories s ON s.id = other.story_id
                          JOIN feeds f ON f.id = s.feed_id
                          WHERE m.id = a.match_id))))
                          FILTER (WHERE a.id IS NOT NULL)
               FROM deliveries d
               LEFT JOIN delivery_alerts da ON da.delivery_id = d.id
               LEFT JOIN alerts a ON a.id = da.alert_id
               WHERE d.id IN (SELECT value FROM json_each(?))
               GROUP BY d.id ORDER BY d.id""",
            [json.dumps(list(ids))],
        ).fetchall()
        return [
            DueDelivery(id, target, kind, reason, attempts,
                        [_content(item) for item in json.loads(contents or "[]")],
                        None if title is None else (title, body or ""))
            for id, target, kind, reason, attempts, title, body, contents in rows
        ]  # fmt: skip

    def feed_health(self, feed_id: int, name: str, recent: int = 30) -> FeedHealth:
        """What ``monitor.health`` needs to judge a feed after a poll."""
        [(url, failing_since, last_error, notice, last_new)] = self.db.execute(
            """SELECT url, failing_since, last_error, health_notice,
                      (SELECT max(first_seen) FROM stories WHERE feed_id = feeds.id)
               FROM feeds WHERE id = ?""",
            [feed_id],
        ).fetchall()
        published = [
            row[0]
            for row in self.db.execute(
                "SELECT published FROM stories WHERE feed_id = ? AND published IS NOT NULL "
                "ORDER BY id DESC LIMIT ?",
                [feed_id, recent],
            )
        ]
        return FeedHealth(name, url, failing_since, last_error, published, last_new, notice)

    def queue_notice(
        self, feed_id: int, notice: Notice, targets: Sequence[str], now: float
    ) -> None:
        """Remember the feed's new health state and queue its notice to ``targets``."""
        with self._writing():
            self.db.execute(
                "UPDATE feeds SET health_notice = ? WHERE id = ?", [notice.state, feed_id]
            )
            self.queue_message(notice.title, notice.body, targets, now)

    def queue_message(self, title: str, body: str, targets: Sequence[str], now: float) -> None:
        """Queue a message of its own (a notice, an event's follow-up) to ``targets``."""
        with self._writing():
            for target in targets:
                self.db.execute(
                    "INSERT INTO deliveries (target, kind, status, due_at, created_at, title, "
                    "body) VALUES (?, 'notice', 'pending', ?, ?, ?, ?)",
                    [target, now, now, title, body],
                )

    def record_attempt(
        self, delivery_id: int, target_label: str, *, ok: bool, detail: str, now: float,
        retry_at: float | None = None,
    ) -> None:  # fmt: skip
        """Log one attempt (counted when it was claimed) and release the claim; a failure
        is retried at ``retry_at``, or marked failed if None."""
        with self._writing():
            self.db.execute(
                "INSERT INTO attempts (delivery_id, at, target, ok, detail) VALUES (?, ?, ?, ?, ?)",
                [delivery_id, now, target_label, int(ok), detail],
            )
            if ok:
                self.db.execute(
                    "UPDATE deliveries SET status = 'sent', sent_at = ?, last_error = NULL, "
                    "claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                    [now, delivery_id],
                )
            else:
                self.db.execute(
                    """UPDATE deliveries SET last_error = ?,
                           status = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END,
                           due_at = coalesce(?, due_at), claimed_by = NULL, claimed_until = NULL
                       WHERE id = ?""",
                    [detail, retry_at, retry_at, delivery_id],
                )

    def record_late_success(
        self, delivery_id: int, target_label: str, *, detail: str, now: float
    ) -> bool:
        """A send given up for lost answered after all: it was delivered. Marks it sent
        unless another sender has claimed it since; returns whether it did."""
        with self._writing():
            cursor = self.db.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = ?, last_error = NULL "
                "WHERE id = ? AND status = 'pending' AND claimed_by IS NULL",
                [now, delivery_id],
            )
            if cursor.rowcount:
                self.db.execute(
                    "INSERT INTO attempts (delivery_id, at, target, ok, detail) "
                    "VALUES (?, ?, ?, 1, ?)",
                    [delivery_id, now, target_label, f"answered late: {detail}"],
                )
        return bool(cursor.rowcount)

    def alert_rows(self, *, failed_only: bool = False, limit: int = 50) -> list[AlertDeliveryRow]:
        """The newest alerts and how each of their deliveries stands."""
        failed = (
            "AND EXISTS (SELECT 1 FROM delivery_alerts x JOIN deliveries y ON y.id = x.delivery_id "
            "WHERE x.alert_id = a.id AND y.status = 'failed')"
            if failed_only
            else ""
        )
        rows = self.db.execute(
            f"""SELECT a.id, a.created_at, m.watchlist, a.title, json_extract(a.content, '$.link'),
                       (SELECT json_group_array(json_object('id', d.id, 'target', d.target,
                               'kind', d.kind, 'status', d.status, 'attempts', d.attempts,
                               'last_error', d.last_error, 'sent_at', d.sent_at,
                               'reason', d.reason))
                        FROM delivery_alerts da JOIN deliveries d ON d.id = da.delivery_id
                        WHERE da.alert_id = a.id)
                FROM alerts a JOIN matches m ON m.id = a.match_id
                WHERE 1 {failed} ORDER BY a.id DESC LIMIT ?""",
            [limit],
        ).fetchall()
        return [
            AlertDeliveryRow(id, created, watchlist, title, link, json.loads(deliveries))
            for id, created, watchlist, title, link, deliveries in rows
        ]

    def attempts_of(self, delivery_id: int) -> list[tuple[float, str, bool, str]]:
        """A delivery's audit trail: (time, target, ok, detail), oldest first."""
        rows = self.db.execute(
            "SELECT at, target, ok, detail FROM attempts WHERE delivery_id = ? ORDER BY id",
            [delivery_id],
        ).fetchall()
        return [(at, target, bool(ok), detail) for at, target, ok, detail in rows]

    def existing_alerts(self, alert_ids: Sequence[int]) -> set[int]:
        """Which of ``alert_ids`` are alerts in the outbox."""
        rows = self.db.execute(
            "SELECT id FROM alerts WHERE id IN (SELECT value FROM json_each(?))",
            [json.dumps(list(alert_ids))],
        ).fetchall()
        return {row[0] for row in rows}

    def target_labels(self) -> dict[str, str]:
        """Each target's label (its URL, secrets masked) as its latest attempt recorded it,
        by outbox key: how a command that has not read the targets' secrets names them."""
        rows = self.db.execute(
            """SELECT d.target, a.target FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
               WHERE a.id IN (SELECT max(x.id) FROM attempts x JOIN deliveries y
                              ON y.id = x.delivery_id GROUP BY y.target)"""
        ).fetchall()
        return {key: label for key, label in rows}

    def retry_failed(self, alert_ids: Sequence[int] | None, now: float) -> int:
        """Queue failed deliveries again (of ``alert_ids``, or all), with fresh attempts."""
        where = "status = 'failed'"
        params: list[object] = [now]
        if alert_ids is not None:
            where += (
                " AND id IN (SELECT delivery_id FROM delivery_alerts "
                "WHERE alert_id IN (SELECT value FROM json_each(?)))"
            )
            params.append(json.dumps(list(alert_ids)))
        with self._writing():
            cursor = self.db.execute(
                f"UPDATE deliveries SET status = 'pending', attempts = 0, due_at = ? WHERE {where}",
                params,
            )
        return cursor.rowcount

    def has_undelivered(self) -> bool:
        """Whether any alert awaits routing or any delivery is pending."""
        [(found,)] = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE routed_at IS NULL) "
            "OR EXISTS (SELECT 1 FROM deliveries WHERE status IN ('pending', 'held'))"
        ).fetchall()
        return bool(found)

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status: held, pending, sent, failed (released ones are not counted)."""
        rows = self.db.execute(
            "SELECT status, count(*) FROM deliveries WHERE status != 'released' GROUP BY status"
        ).fetchall()
        counts = {status: count for status, count in rows}
        [(unrouted,)] = self.db.execute(
            "SELECT count(*) FROM alerts WHERE routed_at IS NULL"
        ).fetchall()
        if unrouted:
            counts["pending"] = counts.get("pending", 0) + unrouted
        return counts

    @contextlib.contextmanager
    def batching(self, seconds: float = 1.0) -> Iterator[None]:
        """Group the writes of many polls into one transaction per ``seconds`` (bulk runs).

        Each write is still all-or-nothing (a savepoint). A crash loses at most the last
        ``seconds`` of polls, and loses nothing for good: their feed state (validators
        included) is lost with them, so the next run fetches and stores them again, and
        nothing they queued was delivered, since delivery calls ``flush`` first.
        """
        self._batch_seconds = seconds
        try:
            yield
        finally:
            self.flush()
            self._batch_seconds = None

    def flush(self) -> None:
        """Commit what ``batching`` has written so far."""
        if self.db.conn.in_transaction:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"database write failed: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Reads and writes that must see no other process's writes in between (a poll's
        identity lookup and its save; routing alerts): one write transaction."""
        with self._writing():
            yield

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction (a savepoint within an enclosing one, or within a batch);
        SQLite failures become StoreError.

        Transactions begin IMMEDIATE, taking the write lock at once: a deferred one that
        read first and then wrote could fail at once with "database is locked" when
        another process wrote in between, whatever the busy timeout."""
        self.verify_file()
        outermost = self._depth == 0
        self._depth += 1
        try:
            if not self.db.conn.in_transaction:
                self.db.execute("BEGIN IMMEDIATE")
                self._batch_started = time.monotonic()
            with self.db.atomic():
                yield
            if outermost and (
                self._batch_seconds is None
                or time.monotonic() - self._batch_started > self._batch_seconds
            ):
                self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if outermost and self._batch_seconds is None and self.db.conn.in_transaction:
                self.db.execute("ROLLBACK")
            raise StoreError(f"database write failed: {exc}") from exc
        finally:
            self._depth -= 1


def _file_id(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None if there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


# SQLite's primary result codes that mean the file's content cannot be trusted.
_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# Python's sqlite3 reports a TEXT value that is not UTF-8 this way, with no result code.
_UNDECODABLE_RE = re.compile(r"Could not decode to UTF-8 column '([^']*)'")


def damage(exc: BaseException, path: Path) -> DatabaseFault | None:
    """A ``DatabaseFault`` naming ``path`` and how to recover, if ``exc`` (or an error it
    was raised from or during) says the database file is damaged; else None.

    Only SQLite's own verdicts count (a corrupt page, not a database, undecodable text),
    never an error in our SQL or code, which must stay a bug with its traceback.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DatabaseFault):
            return error
        if isinstance(error, sqlite3.DatabaseError):
            undecodable = _UNDECODABLE_RE.match(str(error))
            if undecodable:
                # .recover copies such bytes as they are; the value itself must change.
                # (The message leaves the bytes out: they could be terminal escapes.)
                return DatabaseFault(
                    f"database {path}: damaged (a value in column '{undecodable[1]}' is "
                    "not valid UTF-8 text). Stop feed-monitor, then restore a backup, or "
                    f"correct or delete that row with the sqlite3 shell (sqlite3 {path})."
                )
            if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES:
                return DatabaseFault(
                    f"database {path}: damaged ({error}). Stop feed-monitor, then either "
                    f'recover what can be read: sqlite3 {path} ".recover" | sqlite3 '
                    f"recovered.db and move recovered.db to {path} (removing any -wal and "
                    "-shm files beside it), or restore a backup."
                )
        error = error.__cause__ or error.__context__
    return None


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """SQLite limits the number of ? in one statement."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def _insert_source(
    db: sqlite_utils.Database, story_id: int, feed_id: int, source: SourceKeys, now: float
) -> None:
    db.execute(
        "INSERT INTO story_sources (story_id, feed_id, entry_key, link, link_key, "
        "canonical_link, title_key, opaque, content_hash, first_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feed_id, entry_key) DO NOTHING",
        [story_id, feed_id, source.entry_key, source.link, source.link_key,
         source.canonical_link, source.title_key, int(source.opaque), source.content_hash, now],
    )  # fmt: skip


def _content(item: dict[str, Any]) -> AlertContent:
    return AlertContent(
        story_title=item["story_title"] or "",
        link=item["link"],
        feed=item["feed"] or "",
        published=item["published"],
        watchlist=item["watchlist"],
        keywords=tuple(item["keywords"]),
        terms=tuple(item["terms"]),
        snippet=item["snippet"] or "",
        highlight=(int(item["highlight"][0]), int(item["highlight"][1])),
        also_reported_by=tuple(item.get("also_reported_by") or ()),
    )
