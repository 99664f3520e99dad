"""One migration history: a database made when the event tables had a migration set of
their own opens with today's code, its events kept and nothing applied twice; a step that
adds derived state fills it from what is stored."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

from monitor.events import EventIndex
from monitor.store import Store
from monitor.store.events import EventStore
from monitor.store.schema import migrations, pending

WIRE = (
    "S-400 battery moved to the northern border",
    " ".join(f"word{n}" for n in range(120)) + " the S-400 battery was moved on Tuesday",
)

# The event tables' own migration set, as released before m010_events (its DDL verbatim).
old_events = Migrations("feed-monitor-events")


@old_events()
def m001_events(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE event_stories (
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
    db.execute("CREATE INDEX event_stories_event ON event_stories (event_id, seen_at)")
    db.execute("CREATE INDEX event_stories_seen ON event_stories (seen_at)")
    db.execute(
        "CREATE INDEX event_stories_indexed ON event_stories (seen_at) WHERE signature IS NOT NULL"
    )
    db.execute(
        """
        CREATE TABLE event_bands (
            band_key INTEGER NOT NULL,
            story_id INTEGER NOT NULL,
            PRIMARY KEY (band_key, story_id)
        ) WITHOUT ROWID"""
    )


def schema_of(db: sqlite_utils.Database) -> dict[str, str]:
    """Each event table's and index's definition, as one that made it anew would read."""
    rows = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE name LIKE 'event%' AND sql IS NOT NULL"
    ).fetchall()
    return {name: " ".join(sql.replace(" IF NOT EXISTS", "").split()) for name, sql in rows}


def test_a_database_from_the_separate_events_migrations_opens_with_its_events_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations().apply(old, stop_before="m010_events")  # the main set as it was then
    old_events.apply(old)  # then the events' own set, as Store.open applied it
    first = EventIndex(EventStore(old)).assign(10, *WIRE, now=0.0)
    assert first.is_new
    old.close()

    with Store.open(path) as store:  # applies m010_events over the tables already there
        history = store.db.execute(
            "SELECT migration_set, name FROM _sqlite_migrations ORDER BY id"
        ).fetchall()
        assert history[-3:] == [("feed-monitor-events", "m001_events"),
                                ("feed-monitor", "m010_events"),
                                ("feed-monitor", "m011_feed_rhythm")]  # fmt: skip
        assert pending(store.db.conn) == []
        events = EventStore(store.db)
        assert events.event_of(10) == 10  # the story's event is kept...
        again = EventIndex(events).assign(11, *WIRE, now=60.0)
        assert (again.event_id, again.is_new) == (10, False)  # ...and so is its fingerprint
        old_schema = schema_of(store.db)
    with Store.open(path):  # and a second open has nothing left to apply
        pass

    with Store.open(tmp_path / "new.db") as fresh:
        assert schema_of(fresh.db) == old_schema  # the same tables as a new database's


def test_the_rhythm_of_feeds_stored_before_it_was_kept_is_filled_in(tmp_path: Path) -> None:
    """m011 keeps each feed's rhythm for the polls that answer 304; a database from before
    it gets the rhythm its stored stories show, so its next 304 keeps the adapted interval."""
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations().apply(old, stop_before="m011_feed_rhythm")
    old.execute("INSERT INTO feeds (id, url, added_at) VALUES (1, 'https://e.org/a', 0), "
                "(2, 'https://e.org/quiet', 0)")  # fmt: skip
    for n in range(6):  # feed 1: a story every two hours; feed 2: nothing dated
        old.execute(
            "INSERT INTO stories (id, feed_id, key, title, published, first_seen) "
            "VALUES (?, 1, ?, 'Story', ?, 0)",
            [n + 1, f"id:{n}", 1_700_000_000 + n * 7200],
        )
        old.execute(
            "INSERT INTO story_sources (story_id, feed_id, entry_key, title_key, opaque, "
            "content_hash, first_seen) VALUES (?, 1, ?, 'story', 0, '', 0)",
            [n + 1, f"id:{n}"],
        )
    old.close()
    with Store.open(path) as store:
        rhythms = dict(store.db.execute("SELECT id, rhythm FROM feeds").fetchall())
        assert rhythms == {1: 7200.0, 2: None}
        assert store.feed_state(1).rhythm == 7200.0
