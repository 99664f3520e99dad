"""Full-text search (FTS5, filled in batches) and retention of old stories' text."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator

from monitor.errors import StoreError
from monitor.match import search_query
from monitor.store.base import StoreBase
from monitor.store.rows import SearchHit
from monitor.store.schema import _HAS_TEXT


class SearchMixin(StoreBase):
    """Full-text search and retention."""

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
