"""Parsing fetched bytes into entries with feedparser, then normalizing them.

``parse_feed`` is pure (bytes in, ``ParsedFeed`` out) so it can run in a worker thread
or process. It never hands feedparser anything that could be a file path or URL, removes
internal DTD subsets before parsing (feedparser's lenient fallback parser would expand a
large entity thousands of times), keeps only http(s) links, and turns every text field
into plain NFKC text.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import io
import multiprocessing
import os
import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

from monitor.errors import ParseError
from monitor.identity import entry_key, publisher_names, with_keys
from monitor.models import Entry, ParsedFeed
from monitor.text import html_to_text, normalize_text

# A DOCTYPE with an internal subset ("[...]") is the only place entities can be defined.
_DOCTYPE_SUBSET_RE = re.compile(rb"<!DOCTYPE[^\[>]*\[.*?\]\s*>", re.DOTALL | re.IGNORECASE)
# Dates before this are nonsense in a news feed (feedparser turns a bare epoch number
# into the year 1777); treat them as "no date".
_EARLIEST_SANE = calendar.timegm((1990, 1, 1, 0, 0, 0))


def strip_internal_dtd(body: bytes) -> bytes:
    """Remove a DOCTYPE's internal subset, where entity bombs and external entities live."""
    head = body[:65536]
    if b"<!DOCTYPE" not in head.upper() and b"<!doctype" not in head:
        return body
    return _DOCTYPE_SUBSET_RE.sub(b"", body, count=1)


def safe_link(url: object) -> str | None:
    """``url`` if it is an absolute http(s) URL, else None (no javascript:, file:, data:)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url
    return None


def sane_timestamp(parsed: Any, now: float) -> float | None:
    """Unix time of a feedparser date, or None when it is missing or absurd.

    Dates in the future (a publisher's wrong clock or time zone) count as now.
    """
    if not parsed:
        return None
    try:
        stamp = float(calendar.timegm(parsed))
    except (TypeError, ValueError, OverflowError):
        return None
    if stamp < _EARLIEST_SANE:
        return None
    return min(stamp, now)


def parse_feed(
    body: bytes, *, url: str, content_type: str | None = None, now: float | None = None
) -> ParsedFeed:
    """Parse a feed document fetched from ``url``; raise ``ParseError`` if it is not one."""
    now = time.time() if now is None else now
    if not body.strip():
        raise ParseError("the response body is empty")
    # No content-location: feedparser would resolve every URL in the document against it
    # (30% of its time) and rewrite relative guids, so a feed that moved would change all
    # its entry keys. Only the entry link needs resolving, and ``_entry`` does it.
    headers = {"content-type": content_type} if content_type else {}
    import feedparser  # here, not at the top: a run whose feeds are all unchanged never parses

    try:
        parsed = feedparser.parse(
            io.BytesIO(strip_internal_dtd(body)),
            response_headers=headers,
            sanitize_html=False,  # everything becomes plain text below; markup is never rendered
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser should not raise, but feeds are adversarial
        raise ParseError(f"feedparser failed: {type(exc).__name__}: {exc}") from None

    if not parsed.entries:
        # An empty feed is fine; a document that is no feed at all, or a broken one, is not.
        reason = parsed.get("bozo_exception")
        if not parsed.get("version"):
            raise ParseError(f"not an RSS or Atom feed ({_describe(reason)})")
        if parsed.get("bozo"):
            raise ParseError(f"broken feed: {_describe(reason)}")

    title = html_to_text(parsed.feed.get("title", "")) or None
    # Who publishes the entries, for their title keys: the feed, or an aggregator's source.
    publishers = publisher_names(title, url)
    entries = []
    for raw in parsed.entries:
        source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        named = publisher_names(html_to_text(str(source.get("title") or "")), source.get("href"))
        entries.append(with_keys(_entry(raw, url, now), publishers | named))
    return ParsedFeed(title=title, entries=entries, update_hint=update_hint(parsed.feed))


_PERIODS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 604800,
    "monthly": 2629800,
    "yearly": 31557600,
}


def update_hint(feed: Any) -> float | None:
    """How often the feed says it changes, in seconds: ``<ttl>`` or ``sy:updatePeriod``."""
    hints = []
    ttl = str(feed.get("ttl", "")).strip()
    if ttl.isdigit() and int(ttl) > 0:
        hints.append(int(ttl) * 60.0)
    period = _PERIODS.get(str(feed.get("sy_updateperiod", "")).strip().lower())
    if period:
        frequency = str(feed.get("sy_updatefrequency", "1")).strip()
        hints.append(period / (int(frequency) if frequency.isdigit() and int(frequency) else 1))
    return max(hints) if hints else None


def _describe(reason: object) -> str:
    text = normalize_text(str(reason)) if reason else "no entries"
    return text[:200]


def _entry(raw: Any, base: str, now: float) -> Entry:
    title = html_to_text(raw.get("title", ""))
    href = raw.get("link")
    link = safe_link(urljoin(base, href.strip()) if isinstance(href, str) and href else None)
    summary = html_to_text(raw.get("summary", ""))
    content = " ".join(
        html_to_text(part.get("value", "")) for part in raw.get("content", []) or []
    ).strip()
    if content == summary:
        content = ""
    published = sane_timestamp(raw.get("published_parsed") or raw.get("updated_parsed"), now)
    guid = raw.get("id")
    author = html_to_text(raw.get("author", "")) or None
    return Entry(
        key=entry_key(guid if isinstance(guid, str) else None, link, title, published),
        title=title,
        link=link,
        summary=summary,
        content=content,
        published=published,
        author=author,
    )


class ParserPool:
    """Runs ``parse_feed`` in worker processes.

    feedparser is pure Python, so threads would parse on one core; processes use them
    all (measured by benchmarks/bench_poll.py). Each worker also has a memory limit, so a
    feed that still found a way to blow up the parser costs a worker, not the daemon:
    the pool is restarted, the feeds that were parsing are retried once, and the feed
    that breaks it again gets a ``ParseError``.
    """

    def __init__(self, workers: int | None = None, memory_limit: int = 2 << 30) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.memory_limit = memory_limit
        self._pool: ProcessPoolExecutor | None = None  # started on first use: a run where
        # every feed answers 304 never pays for starting workers

    def _start(self) -> ProcessPoolExecutor:
        # A fork server imports this module once and forks workers from itself: cheaper
        # than spawning each (every spawn re-imports feedparser), and unlike a plain fork
        # it never copies the daemon's threads and locks.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "feedparser"])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_limit_memory,
            initargs=(self.memory_limit,),
        )

    async def parse(
        self, body: bytes, *, url: str, content_type: str | None, now: float
    ) -> ParsedFeed:
        loop = asyncio.get_running_loop()
        job = partial(parse_feed, body, url=url, content_type=content_type, now=now)
        for attempt in range(2):
            if self._pool is None:
                self._pool = self._start()
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, job)
            except MemoryError:
                raise ParseError("the feed needs more memory than a parser may use") from None
            except BrokenProcessPool:
                if self._pool is pool:  # the first to notice restarts it
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._start()
                if attempt:
                    raise ParseError(
                        "the parser ran out of memory or crashed on this feed"
                    ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _limit_memory(limit: int) -> None:
    # Where a sandbox forbids it, or a lower hard limit is already set, parse anyway.
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
