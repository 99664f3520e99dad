"""The SQLite store on a real file: migrations, one transaction per poll, the outbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Watchlist
from monitor.errors import StoreError
from monitor.identity import TITLE_WINDOW, source_keys
from monitor.match import Matcher
from monitor.models import Entry, PollPlan, PollRecord
from monitor.outbox import Policy, Target, route
from monitor.pipeline import plan_poll
from monitor.store import Store
from monitor.store.base import Connection

NOW = 1_790_000_000.0
MATCHER = Matcher([Watchlist(name="w", keywords=["S-400"])])


def entries(*titles: str, published: float | None = None) -> list[Entry]:
    return [Entry(key=f"id:{t}", title=t, link=None, published=published) for t in titles]


def plan(store: Store, feed_id: int, batch: list[Entry], now: float = NOW) -> PollPlan:
    """What a poll of ``batch`` would do, decided against what ``store`` knows."""
    keyed = [(entry, source_keys(entry, set())) for entry in batch]
    lookup = store.lookup(feed_id, [keys for _, keys in keyed], now - TITLE_WINDOW)
    return plan_poll(keyed, lookup, MATCHER, feed_id=feed_id, feed_name="E", now=now, max_age=86400)


def test_open_migrates_once_and_enables_wal(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sub" / "m.db")
    store.close()
    store = Store.open(tmp_path / "sub" / "m.db")  # second open: nothing to apply
    assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {name for (name,) in store.db.execute("SELECT name FROM sqlite_master")}
    assert {"feeds", "stories", "matches", "alerts"} <= tables
    applied = store.db.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()
    assert [name for (name,) in applied] == [
        "m001_initial", "m002_story_sources", "m003_full_text_search", "m004_feed_health",
        "m005_retention_index", "m006_delivery_outbox", "m007_source_health",
        "m008_delivery_claims", "m009_article_text", "m010_events", "m011_feed_rhythm",
    ]  # fmt: skip
    store.close()


def test_a_non_database_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(path)


def test_plan_only_new_stories_and_alert_only_fresh_ones(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]
    store.save_poll(
        feed.id, PollRecord(NOW, NOW + 900, status=200), plan(store, feed.id, entries("other"))
    )
    batch = entries("S-400 one", "other", "S-400 one") + entries("S-400 old", published=NOW - 9e5)
    decided = plan(store, feed.id, batch)
    assert [story.entry.title for story in decided.new] == ["S-400 one", "S-400 old"]
    assert decided.new[0].matches[0][1] is not None  # alert
    assert decided.new[1].matches[0][1] is None  # matched, too old to alert
    store.close()


def test_save_poll_stores_each_story_once_with_its_alert(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]
    decided = plan(store, feed.id, entries("S-400 a", "b"))
    assert store.save_poll(feed.id, PollRecord(NOW, NOW + 900, status=200), decided).queued == 1
    # The same plan again (a concurrent run that raced us) adds nothing.
    assert store.save_poll(feed.id, PollRecord(NOW, NOW + 900, status=200), decided).queued == 0
    assert plan(store, feed.id, entries("S-400 a", "b")).new == []
    [alert] = store.unrouted_alerts()
    assert alert.watchlist == "w"
    store.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]
    decided = plan(store, feed.id, entries("S-400 a"))
    store.db.execute(
        "CREATE TRIGGER no_alerts BEFORE INSERT ON alerts BEGIN SELECT RAISE(ABORT, 'disk'); END"
    )
    with pytest.raises(StoreError):
        store.save_poll(feed.id, PollRecord(NOW, NOW + 900, status=200), decided)
    with sqlite3.connect(tmp_path / "m.db") as db:
        assert db.execute("SELECT count(*) FROM stories").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM matches").fetchone()[0] == 0
    store.close()


def test_outbox_retry_bookkeeping_and_audit_trail(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]
    decided = plan(store, feed.id, entries("S-400 a"))
    store.save_poll(feed.id, PollRecord(NOW, NOW + 900, status=200), decided)
    [alert] = store.unrouted_alerts()
    policy = Policy([Target("good"), Target("dead")])
    store.save_routes([alert.id], route([alert], policy, NOW), NOW)
    assert store.unrouted_alerts() == []
    [good] = store.claim_due("good", now=NOW, owner="me", lease=60)
    [dead] = store.claim_due("dead", now=NOW, owner="me", lease=60)
    assert good.contents[0].story_title == "S-400 a" and good.contents[0].feed == "E"
    assert good.attempts == dead.attempts == 1  # a claim counts as an attempt
    store.record_attempt(good.id, "json://good", ok=True, detail="success", now=NOW)
    store.record_attempt(dead.id, "json://dead", ok=False, detail="refused", now=NOW,
                         retry_at=NOW + 60)  # fmt: skip
    assert store.due_deliveries(NOW + 59) == []
    [again] = store.due_deliveries(NOW + 60)
    assert again.id == dead.id and again.attempts == 1  # the good target is not sent again
    [again] = store.claim_due("dead", now=NOW + 60, owner="me", lease=60)
    store.record_attempt(dead.id, "json://dead", ok=False, detail="refused", now=NOW + 60)
    assert store.due_deliveries(NOW + 1e9) == []
    assert store.delivery_counts() == {"sent": 1, "failed": 1}
    assert [(ok, detail) for _, _, ok, detail in store.attempts_of(dead.id)] == [
        (False, "refused"), (False, "refused")
    ]  # fmt: skip
    [row] = store.alert_rows(failed_only=True)
    assert row.status == "failed" and {d["status"] for d in row.deliveries} == {"sent", "failed"}
    assert store.retry_failed(None, NOW + 100) == 1
    [retried] = store.due_deliveries(NOW + 100)
    assert retried.id == dead.id and retried.attempts == 0
    store.close()


def test_held_alerts_are_released_as_one_digest_per_target(tmp_path: Path) -> None:
    from monitor.outbox import DigestSchedule, WatchlistRules, release

    store = Store.open(tmp_path / "m.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]
    for n, title in enumerate(("S-400 a", "S-400 b")):
        decided = plan(store, feed.id, entries(title))
        store.save_poll(feed.id, PollRecord(NOW + n, NOW + 900, status=200), decided)
    policy = Policy([Target("a"), Target("b")], {"w": WatchlistRules(DigestSchedule(every=3600))})
    unrouted = store.unrouted_alerts()
    store.save_routes([a.id for a in unrouted], route(unrouted, policy, NOW), NOW)
    assert store.due_deliveries(NOW) == [] and store.held_due(NOW) == []
    assert store.delivery_counts() == {"held": 4}
    digest_time = (NOW // 3600 + 1) * 3600
    store.save_releases(release(store.held_due(digest_time), policy, digest_time), digest_time)
    due = store.due_deliveries(digest_time)
    assert sorted((d.target, d.kind, len(d.contents)) for d in due) == [
        ("a", "digest", 2), ("b", "digest", 2)
    ]  # fmt: skip
    assert store.delivery_counts() == {"pending": 2}
    store.close()


def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    """COMMIT itself can fail (here a reader's lock on a rollback-journal file; under WAL a
    full disk): the connection must not stay inside that transaction, where every later
    write would join it and never be committed (found by a review of the sqlite-utils
    replacement)."""
    path = tmp_path / "db.sqlite"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode = DELETE")
    setup.execute("CREATE TABLE t (x)")
    setup.commit()
    setup.close()
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # holds a SHARED lock: COMMIT must wait
    conn = Connection.connect(path, timeout=0.1)
    with pytest.raises(sqlite3.OperationalError, match="locked"), conn.atomic():
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.conn.in_transaction
    reader.execute("COMMIT")
    with conn.atomic():
        conn.execute("INSERT INTO t VALUES (2)")
    assert sqlite3.connect(path).execute("SELECT x FROM t").fetchall() == [(2,)]
    conn.close()
    reader.close()


def test_syncing_the_same_feeds_again_writes_nothing(tmp_path: Path) -> None:
    # Every `once` and every config reload syncs the feed list: an unchanged list must
    # not rewrite every feed row (a WAL page per feed, each run).
    store = Store.open(tmp_path / "m.db")
    feeds = [(f"https://e{i}.org/f", f"E{i}" if i % 2 else None) for i in range(50)]
    first = store.sync_feeds(feeds, NOW)
    writes = store.db.conn.total_changes
    again = store.sync_feeds(feeds, NOW + 60)
    assert store.db.conn.total_changes == writes
    assert again == first
    renamed = [(url, "Renamed" if url == "https://e1.org/f" else name) for url, name in feeds]
    assert store.sync_feeds(renamed, NOW + 120)["https://e1.org/f"].name == "Renamed"
    assert store.db.conn.total_changes == writes + 1


def test_a_new_database_and_its_backup_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """They hold the feed URLs as configured, credentials included: a checkout's
    `make run` under umask 022 made data/monitor.db world-readable."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        with Store.open(tmp_path / "data" / "monitor.db") as store:
            store.sync_feeds([("https://bob:Feed-Pw-1@e.org/f", None)], 1.0)
            store.backup(tmp_path / "copy.db")
            modes = {
                path.name: stat.S_IMODE(path.stat().st_mode)
                for path in [*(tmp_path / "data").glob("monitor.db*"), tmp_path / "copy.db"]
            }
    finally:
        os.umask(previous)
    assert set(modes) >= {"monitor.db", "monitor.db-wal", "copy.db"}
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_a_batch_commits_many_polls_at_once_each_all_or_nothing(tmp_path: Path) -> None:
    """``batching`` (bulk runs): polls share a transaction, committed when it ends; a poll
    whose save fails is undone alone; meanwhile SQLite's temporary data (each savepoint's
    journal) is kept in memory, and the connection is as before afterwards."""
    store = Store.open(tmp_path / "m.db")
    feeds = store.sync_feeds([("https://a.example/feed", None)], NOW)
    feed_id = feeds["https://a.example/feed"].id
    other = sqlite3.connect(tmp_path / "m.db")

    def stored() -> int:
        return int(other.execute("SELECT count(*) FROM stories").fetchone()[0])

    assert store.db.execute("PRAGMA temp_store").fetchone() == (0,)
    with store.batching(seconds=3600):
        assert store.db.execute("PRAGMA temp_store").fetchone() == (2,)
        first = plan(store, feed_id, entries("S-400 one", "two"))
        store.save_poll(feed_id, PollRecord(NOW, NOW + 60), first)
        failing = plan(store, feed_id, entries("three"))
        with pytest.raises(RuntimeError), store.transaction():
            store.save_poll(feed_id, PollRecord(NOW, NOW + 60), failing)
            raise RuntimeError("the poll fails after writing")
        assert stored() == 0  # nothing committed yet
    assert stored() == 2  # the first poll's stories; the failed one's are gone
    titles = {title for (title,) in other.execute("SELECT title FROM stories")}
    assert titles == {"S-400 one", "two"}
    assert store.db.execute("PRAGMA temp_store").fetchone() == (0,)
    assert not store.db.conn.in_transaction


def test_a_send_is_recorded_at_once_even_within_a_batch(tmp_path: Path) -> None:
    """``once`` sends while its polls are batched: the claim before a send and the record
    after it are committed when they are written (with the batch's polls before them),
    never left in a batch that a crash a moment later would lose, sending it again."""
    store = Store.open(tmp_path / "m.db")
    other = sqlite3.connect(tmp_path / "m.db")

    def committed(sql: str) -> object:
        return other.execute(sql).fetchone()[0]

    store.queue_message("Notice", "body", ["t"], NOW)
    with store.batching(seconds=3600):
        store.sync_feeds([("https://a.example/feed", None)], NOW)  # a poll's write
        assert committed("SELECT count(*) FROM feeds") == 0
        [delivery] = store.claim_due("t", now=NOW, owner="me", lease=60)
        assert committed("SELECT claimed_by FROM deliveries") == "me"
        assert committed("SELECT count(*) FROM feeds") == 1
        store.sync_feeds([("https://b.example/feed", None)], NOW)
        store.record_attempt(delivery.id, "t", ok=True, detail="", now=NOW)
        assert committed("SELECT status FROM deliveries") == "sent"
        assert committed("SELECT count(*) FROM feeds") == 2


def _open_at(path: str, start: Any) -> str:
    """In a process of its own: wait for the others, then open the database."""
    start.wait(timeout=30)
    try:
        Store.open(Path(path)).close()
    except StoreError as exc:
        return str(exc)
    return "ok"


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """The daemon and a `once` started together on a database that does not exist yet
    both find it to set up: one does while the other waits, then finds nothing left to
    do (both did, and one failed: "duplicate column name", "database is locked")."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(4):
        path = tmp_path / f"new{attempt}.db"
        start = context.Manager().Barrier(4)
        with context.Pool(4) as pool:
            results = pool.starmap(_open_at, [(str(path), start)] * 4)
        assert results == ["ok"] * 4
        with Store.open(path) as store:
            assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
