"""The outbox: alerts routed to per-target deliveries, claimed by one sender at a time,
retried, and their audit trail; and the match and alert views of the commands."""

from __future__ import annotations

import json
from collections.abc import Sequence

from monitor.health import Notice
from monitor.outbox import Delivery, HeldDelivery, Release, UnroutedAlert
from monitor.store.base import StoreBase, _content
from monitor.store.rows import AlertDeliveryRow, DueDelivery, MatchRow, StoryDelivery


class OutboxMixin(StoreBase):
    """The outbox: routing, claims, attempts, and what the commands show of it."""

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
        this process sent but could not record yet. Committed at once, in a batch too."""
        with self._writing(durable=True):
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
        is retried at ``retry_at``, or marked failed if None. Committed at once, in a
        batch too."""
        with self._writing(durable=True):
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
        unless another sender has claimed it since; returns whether it did. Committed
        at once, in a batch too."""
        with self._writing(durable=True):
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
