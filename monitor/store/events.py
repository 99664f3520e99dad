"""Event storage: which event each story belongs to, and the index that finds the
recent stories a new one may repeat.

Owns two tables, created by ``m010_events`` in ``monitor.store.schema`` (the one migration
sequence), in whatever database it is given (the stories' own, in the daemon):

- ``event_stories``: one row per story: its event, when it was seen, and, while it is
  within the window, its fingerprint (MinHash signature and shingles as little-endian
  uint32 bytes, and its marks). Membership stays after the window; the fingerprint goes.
- ``event_bands``: one row per LSH band of each story within the window, keyed by
  (band key, story), so finding the stories that share a band is one index range each.

Writes do not commit: each runs inside the caller's transaction (a savepoint of it), so
a poll's stories and their events are written together. SQLite failures become
``StoreError`` with the cause kept.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence

from msgspec import Struct

from monitor.errors import StoreError
from monitor.events import Candidate, Fingerprint, band_keys, pack, unpack
from monitor.store.base import Connection

# Candidates a new story is compared with, at most: the copies of a report share most of
# its bands, so they rank first; more would only cost time on feeds of look-alike items.
MAX_CANDIDATES = 32
PER_BAND = 64  # the newest stories of one band key that are looked at


@contextlib.contextmanager
def _wrapped(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


class Report(Struct, frozen=True):
    """One story of an event."""

    story_id: int
    seen_at: float


class EventSummary(Struct, frozen=True):
    """An event seen since some time: its first report and how many it has."""

    event_id: int
    first_seen: float
    last_seen: float
    reports: int


class EventStore:
    """The event tables of one database, used from the thread that opened it."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    def event_of(self, story_id: int) -> int | None:
        with _wrapped("cannot read events"):
            row = self.db.execute(
                "SELECT event_id FROM event_stories WHERE story_id = ?", [story_id]
            ).fetchone()
        return None if row is None else int(row[0])

    def candidates(
        self, bands: Sequence[int], since: float, limit: int = MAX_CANDIDATES
    ) -> list[Candidate]:
        """The stories seen since ``since`` that share a band key, those sharing the most
        bands first (the most similar, as MinHash estimates it), at most ``limit``: feeds
        of near-identical items (one template, a changing number) would otherwise make
        every new story compare itself with all of them."""
        # Per band, only its newest stories (the band index is keyed by band, then
        # story): a band shared by thousands of look-alike items costs as much as any.
        per_band = " UNION ALL ".join(
            "SELECT * FROM (SELECT story_id FROM event_bands WHERE band_key = ? "
            "ORDER BY story_id DESC LIMIT ?)"
            for _ in bands
        )
        with _wrapped("cannot read the event index"):
            rows = self.db.execute(
                f"""SELECT s.story_id, s.event_id, s.seen_at, s.shingles, s.marks, s.lead_marks,
                           s.words
                    FROM (SELECT story_id, count(*) AS shared_bands FROM ({per_band})
                          GROUP BY story_id ORDER BY shared_bands DESC, story_id DESC
                          LIMIT ?) AS best
                    JOIN event_stories s ON s.story_id = best.story_id
                    WHERE s.seen_at >= ? AND s.shingles IS NOT NULL""",
                [*(value for band in bands for value in (band, PER_BAND)), limit, since],
            ).fetchall()
        return [
            Candidate(
                story_id,
                event_id,
                seen_at,
                frozenset(unpack(shingles)),
                frozenset(marks.split()),
                frozenset(lead_marks.split()),
                words,
            )
            for story_id, event_id, seen_at, shingles, marks, lead_marks, words in rows
        ]

    def add(self, story_id: int, event_id: int, seen_at: float, fp: Fingerprint) -> None:
        """Record a story's event; index its fingerprint when a later report could match."""
        with _wrapped("cannot write the event index"), self.db.atomic():
            self.db.execute(
                "INSERT INTO event_stories (story_id, event_id, seen_at, words, signature, "
                "shingles, marks, lead_marks) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [story_id, event_id, seen_at, fp.words,
                 *((pack(fp.signature), pack(fp.shingles), " ".join(sorted(fp.marks)),
                    " ".join(sorted(fp.lead_marks)))
                   if fp.indexable else (None, None, None, None))],
            )  # fmt: skip
            if fp.indexable:
                self.db.conn.executemany(
                    "INSERT OR IGNORE INTO event_bands (band_key, story_id) VALUES (?, ?)",
                    [(key, story_id) for key in fp.bands],
                )

    def forget_fingerprints(self, before: float, limit: int = 10_000) -> int:
        """Drop the fingerprints and bands of up to ``limit`` stories seen before
        ``before``; returns how many (call again while it returns ``limit``)."""
        with _wrapped("cannot prune the event index"), self.db.atomic():
            rows = self.db.execute(
                "SELECT story_id, signature FROM event_stories "
                "WHERE seen_at < ? AND signature IS NOT NULL LIMIT ?",
                [before, limit],
            ).fetchall()
            self.db.conn.executemany(
                "DELETE FROM event_bands WHERE band_key = ? AND story_id = ?",
                [(key, story_id) for story_id, sig in rows for key in band_keys(unpack(sig))],
            )
            self.db.conn.executemany(
                "UPDATE event_stories SET signature = NULL, shingles = NULL, marks = NULL, "
                "lead_marks = NULL "
                "WHERE story_id = ?",
                [(story_id,) for story_id, _ in rows],
            )
        return len(rows)

    def reports(self, event_id: int) -> list[Report]:
        """The stories of an event, first seen first."""
        with _wrapped("cannot read events"):
            rows = self.db.execute(
                "SELECT story_id, seen_at FROM event_stories WHERE event_id = ? "
                "ORDER BY seen_at, story_id",
                [event_id],
            ).fetchall()
        return [Report(story_id, seen_at) for story_id, seen_at in rows]

    def events_since(self, since: float) -> list[EventSummary]:
        """The events with a report seen since ``since``, latest activity first."""
        with _wrapped("cannot read events"):
            rows = self.db.execute(
                """SELECT e.event_id, min(e.seen_at), max(e.seen_at), count(*)
                   FROM event_stories e
                   WHERE e.event_id IN (SELECT DISTINCT event_id FROM event_stories
                                        WHERE seen_at >= ?)
                   GROUP BY e.event_id ORDER BY max(e.seen_at) DESC, e.event_id DESC""",
                [since],
            ).fetchall()
        return [EventSummary(*row) for row in rows]
