"""Stories: a poll's new stories with their sources, matches and alerts in one transaction;
the identity lookups that decide what is new (the rules are in monitor/identity.py);
edits; and which event each story joined."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import msgspec

from monitor.identity import KnownSource, Lookup, SourceKeys
from monitor.models import (
    AlertContent,
    Entry,
    Match,
    PollPlan,
    PollRecord,
    StoryEdit,
)
from monitor.store.base import _chunks
from monitor.store.events import EventStore
from monitor.store.feeds import FeedsMixin
from monitor.store.rows import EventReport, SavedPoll, SourceRow, StoredStory
from monitor.store.schema import _insert_source
from monitor.store.search import SearchMixin

if TYPE_CHECKING:
    from monitor.events import EventIndex


class StoriesMixin(FeedsMixin, SearchMixin):
    """Stories: saving a poll, identity lookups, edits, events. Saving a poll also
    records it against its feed and keeps the search index right, so this part builds on
    those two."""

    @property
    def event_store(self) -> EventStore:
        """The event index's tables (``monitor.events.EventIndex`` reads and writes them)."""
        return EventStore(self.db)

    def totals(self) -> tuple[int, int]:
        """How many stories and matches are stored (for /metrics)."""
        [(stories, matches)] = self.db.execute(
            "SELECT (SELECT count(*) FROM stories), (SELECT count(*) FROM matches)"
        ).fetchall()
        return int(stories), int(matches)

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

        With ``events``, each new story that matches a watchlist is assigned to an event
        (``monitor.events``); a story that joins an event already reported alerts only
        for the watchlists that no earlier report of it alerted."""
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
                    _insert_source(self.db.conn, story_id, feed_id, source, now)
                alerted: set[str] = set()
                # Only stories that match a watchlist take part in events: the others
                # never alert, and fingerprinting every story would cost each a comparison.
                if events is not None and story.matches:
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
                _insert_source(self.db.conn, added.story_id, feed_id, added.source, now)
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
             json.dumps(msgspec.to_builtins(content)), batch],
        )  # fmt: skip

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

    def story_sources(self, story_id: int) -> list[SourceRow]:
        """Every feed and link a story was seen under, first seen first."""
        rows = self.db.execute(
            """SELECT f.url, f.name, f.title, ss.link, ss.first_seen
               FROM story_sources ss JOIN feeds f ON f.id = ss.feed_id
               WHERE ss.story_id = ? ORDER BY ss.first_seen, ss.id""",
            [story_id],
        ).fetchall()
        return [SourceRow(*row) for row in rows]
