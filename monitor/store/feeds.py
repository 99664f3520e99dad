"""Feeds: which are configured, how each poll went, when each is due, how healthy it is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from monitor.health import FeedHealth
from monitor.models import (
    PollRecord,
)
from monitor.store.base import StoreBase
from monitor.store.rows import _FEED_STATE_COLUMNS, FeedState, FeedStatus


class FeedsMixin(StoreBase):
    """Feeds: their rows, poll state and health."""

    def sync_feeds(
        self, feeds: Iterable[tuple[str, str | None]], now: float
    ) -> dict[str, FeedState]:
        """Make sure every configured (url, name) has a row; return their states by URL."""
        with self._writing():
            # A feed whose name is unchanged is not rewritten: this runs on every `once`
            # and every config reload.
            self.db.conn.executemany(
                "INSERT INTO feeds (url, name, added_at) VALUES (?, ?, ?) "
                "ON CONFLICT (url) DO UPDATE SET name = excluded.name "
                "WHERE name IS NOT excluded.name",
                [(url, name, now) for url, name in feeds],
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
                       effective_url = coalesce(?, effective_url),
                       rhythm = ?, update_hint = ?
                   WHERE id = ?""",
                [r.polled_at, r.polled_at, r.status, r.next_poll_at, r.interval, r.etag,
                 r.last_modified, r.title, r.body_hash, r.moved_to, r.rhythm, r.update_hint,
                 feed_id],
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
