"""Parsing fetched bytes into entries: RSS and Atom with feedparser, JSON Feed here;
then normalizing them the same way, whatever the format.

``parse_feed`` is pure (bytes in, ``ParsedFeed`` out) so it can run in a worker process
(``monitor.parser_pool``); this module is what such a worker imports, so it imports
nothing it does not need there (no asyncio). It never hands feedparser anything that
could be a file path or URL, removes internal DTD subsets before parsing (feedparser's
lenient fallback parser would expand a large entity thousands of times), keeps only
http(s) links (relative ones resolved against the feed's URL), clamps dates to a sane
range, and turns every text field into plain NFKC text. JSON Feed 1.0 and 1.1
(https://www.jsonfeed.org/version/1.1/), which feedparser does not read, become the same
``Entry`` objects under the same rules. A page that is HTML rather than a feed is
refused with the feeds it links to.
"""

from __future__ import annotations

import calendar
import contextlib
import ctypes
import email.utils
import io
import json
import os
import re
import resource
import signal
import sys
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin

from monitor.errors import ParseError
from monitor.identity import entry_key, publisher_names, with_keys
from monitor.models import Entry, ParsedFeed
from monitor.text import html_to_text, normalize_text, safe_link

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
    return _sane(stamp, now)


def _sane(stamp: float, now: float) -> float | None:
    if stamp < _EARLIEST_SANE:
        return None
    return min(stamp, now)


def resolve_link(href: object, base: str) -> str | None:
    """``href`` resolved against the feed's URL ``base``, if that makes an http(s) link."""
    if not isinstance(href, str) or not href.strip():
        return None
    try:
        return safe_link(urljoin(base, href.strip()))
    except ValueError:  # "http://[::1": urljoin refuses what urlsplit cannot read
        return None


def parse_feed(
    body: bytes, *, url: str, content_type: str | None = None, now: float | None = None
) -> ParsedFeed:
    """Parse a feed document fetched from ``url``; raise ``ParseError`` if it is not one."""
    now = time.time() if now is None else now
    if not body.strip():
        raise ParseError("the response body is empty")
    if _is_json(body, content_type):
        return parse_json_feed(body, url=url, now=now)
    # No content-location: feedparser would resolve every URL in the document against it
    # (30% of its time) and rewrite relative guids, so a feed that moved would change all
    # its entry keys. Only the entry link needs resolving, and ``_entry`` does it.
    headers = {"content-type": content_type} if content_type else {}
    import feedparser  # here, not at the top: a run whose feeds are all unchanged never parses

    parse_with_expat_only()
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
            _refuse_html_page(body, url, content_type)
            raise ParseError(f"not an RSS, Atom or JSON feed ({_describe(reason)})")
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


def _refuse_html_page(body: bytes, url: str, content_type: str | None) -> None:
    """Raise the ``ParseError`` for a web page: it names the feeds the page links to."""
    # Imported here: monitor.discover imports this module (and this is an error path).
    from monitor.discover import feed_links, html_page_message, looks_like_html

    if looks_like_html(body, content_type):
        raise ParseError(html_page_message(feed_links(body, url, content_type)))


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
    # FeedParserDict stores each field under its own name; its get() would first look
    # the name up among the old aliases (a fifth of this function's time), and would map
    # a missing updated date to the published one, with a DeprecationWarning each time.
    get = dict.get
    summary = html_to_text(get(raw, "summary", ""))
    content = " ".join(
        html_to_text(part.get("value", "")) for part in get(raw, "content", []) or []
    ).strip()
    guid = get(raw, "id")
    return _make_entry(
        guid=guid if isinstance(guid, str) else None,
        title=html_to_text(get(raw, "title", "")),
        link=resolve_link(get(raw, "link"), base),
        summary=summary,
        content=content,
        published=sane_timestamp(get(raw, "published_parsed") or get(raw, "updated_parsed"), now),
        author=html_to_text(get(raw, "author", "")) or None,
    )


def _make_entry(
    *,
    guid: str | None,
    title: str,
    link: str | None,
    summary: str,
    content: str,
    published: float | None,
    author: str | None,
) -> Entry:
    """The one way an ``Entry`` is made from any format, with its key. Its identity keys
    are added by the caller (``with_keys``), which knows the feed's publisher names."""
    entry = Entry(
        key=entry_key(guid, link, title, published),
        title=title,
        link=link,
        summary=summary,
        content="" if content == summary else content,
        published=published,
        author=author,
    )
    return entry


# JSON Feed ------------------------------------------------------------------------------

_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_JSON_FEED_VERSION_RE = re.compile(r"^https?://jsonfeed\.org/version/", re.IGNORECASE)
_MAX_AUTHORS = 20  # names kept per entry; a feed may list any number


def _is_json(body: bytes, content_type: str | None) -> bool:
    """Whether ``body`` is meant as JSON: it starts with ``{``, or the server says JSON
    and it is not markup (servers often label an RSS document ``application/json``)."""
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"{":
        return True
    mime = (content_type or "").partition(";")[0].strip().lower()
    return mime in _JSON_TYPES and start != b"<"


def parse_json_feed(body: bytes, *, url: str, now: float) -> ParsedFeed:
    """Parse a JSON Feed (1.0 or 1.1) into the same entries RSS and Atom give.

    The document is untrusted: only values of the types the spec names are read
    (anything else counts as absent, so no nested structure is ever kept or turned into
    a string), nesting too deep to read is a ``ParseError``, and at most
    ``_MAX_AUTHORS`` names are kept per entry. Items that are not objects are skipped.
    """
    try:
        try:
            document = json.loads(body)
        except UnicodeDecodeError:  # mislabelled bytes: keep the stories, lose a character
            document = json.loads(body.decode("utf-8", errors="replace"))
    except RecursionError:
        raise ParseError("broken JSON Feed: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError names line and column
        raise ParseError(f"broken JSON Feed: {_describe(exc)}") from None
    if not isinstance(document, dict):
        raise ParseError("not a JSON Feed: the document is not a JSON object")
    version = document.get("version")
    if not isinstance(version, str) or not _JSON_FEED_VERSION_RE.match(version.strip()):
        raise ParseError(
            "not a JSON Feed: no version https://jsonfeed.org/version/... "
            f"(found {_describe(version) if isinstance(version, str) else 'none'})"
        )
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("broken JSON Feed: it has no list of items")
    feed_author = _json_authors(document)
    title = html_to_text(_json_str(document, "title")) or None
    publishers = publisher_names(title, url)
    entries = [
        with_keys(_json_entry(item, url, now, feed_author), publishers)
        for item in items
        if isinstance(item, dict)
    ]
    return ParsedFeed(title=title, entries=entries)


def _json_entry(item: dict[str, Any], base: str, now: float, feed_author: str | None) -> Entry:
    # url is the item's own page; external_url a page elsewhere (a link blog's target).
    link = resolve_link(_json_str(item, "url"), base) or resolve_link(
        _json_str(item, "external_url"), base
    )
    html = _json_str(item, "content_html")
    content = html_to_text(html) if html else normalize_text(_json_str(item, "content_text"))
    published = _json_date(item.get("date_published"), now) or _json_date(
        item.get("date_modified"), now
    )
    return _make_entry(
        guid=_json_id(item.get("id")),
        # Titles and summaries are plain text by the spec, but real feeds escape them
        # ("Blackletter &amp; thick"); read them as RSS titles are read.
        title=html_to_text(_json_str(item, "title")),
        link=link,
        summary=html_to_text(_json_str(item, "summary")),
        content=content,
        published=published,
        author=_json_authors(item) or feed_author,
    )


def _json_str(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def _json_id(value: object) -> str | None:
    """An item's id as a string: the spec says a number is coerced; nothing else is."""
    if isinstance(value, bool):  # a bool is an int to Python, not an id to anyone
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None


def _json_authors(mapping: dict[str, Any]) -> str | None:
    """``authors`` (1.1) or ``author`` (1.0) as one line of names."""
    authors = mapping.get("authors")
    if not isinstance(authors, list):
        authors = [mapping.get("author")]
    names = (
        html_to_text(author["name"])
        for author in authors[:_MAX_AUTHORS]
        if isinstance(author, dict) and isinstance(author.get("name"), str)
    )
    return ", ".join(name for name in names if name) or None


def _json_date(value: object, now: float) -> float | None:
    """Unix time of an RFC 3339 date (or the RFC 822 dates some feeds write instead)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:  # no offset given: UTC, as feedparser reads such dates
        when = when.replace(tzinfo=UTC)
    try:
        return _sane(when.timestamp(), now)
    except (OverflowError, ValueError):
        return None


def buffer_character_data() -> None:
    """Make expat hand each run of text to feedparser in one piece (``buffer_text``).

    Unbuffered, expat splits text at every entity and line: an RSS description of
    escaped HTML (``&lt;p&gt;…``) reaches feedparser in dozens of pieces, each a round of
    its bookkeeping, and parsing a typical feed takes 15–20 % longer. SAX allows either
    (contiguous text "may" come in one chunk or several), so the result is the same:
    checked on every file of the real-world and feedparser corpora. Installed in the
    parser workers only, processes that do nothing else; idempotent."""
    import xml.sax.expatreader as expatreader

    original = expatreader.ExpatParser.reset
    if getattr(original, "buffers_text", False):
        return

    def reset(self: expatreader.ExpatParser) -> None:
        original(self)
        self._parser.buffer_text = True  # type: ignore[attr-defined]

    reset.buffers_text = True  # type: ignore[attr-defined]
    expatreader.ExpatParser.reset = reset  # type: ignore[method-assign]


def copy_content_params_shallowly() -> None:
    """Make feedparser copy a text element's parameters with ``dict.copy``, not
    ``copy.deepcopy``.

    For every title, summary and content it parses, feedparser stores a copy of the
    element's parameters (``type``, ``language``, ``base``, ``src``, ``mode``,
    ``base64``: strings and numbers). ``deepcopy`` of its dict subclass goes through
    pickling's reduce protocol and took 8 % of a parser worker's time; a copy of a dict
    whose values are immutable is the same thing (checked on every file of the
    real-world and feedparser corpora). Only feedparser's ``mixin`` module sees the
    change, installed in the parser workers only; idempotent."""
    import copy

    import feedparser.mixin
    from feedparser.util import FeedParserDict

    def deepcopy(value: Any) -> Any:
        if type(value) is FeedParserDict and all(
            isinstance(item, str | int | None) for item in value.values()
        ):
            return FeedParserDict(value)
        return copy.deepcopy(value)

    feedparser.mixin.copy = SimpleNamespace(deepcopy=deepcopy)


def parse_with_expat_only() -> None:
    """Have feedparser take Python's expat reader without first trying libxml2's.

    feedparser asks ``xml.sax`` for libxml2's SAX driver first (``drv_libxml2``, its
    ``PREFERRED_XML_PARSERS``); where that module is not installed, the import fails
    after a search of ``sys.path``, again for every feed: 0.6 ms each, 240 ms of CPU
    for 400 feeds. expat is what it then takes, and what ``buffer_character_data``
    tunes; nor is a module of that name lying on the path (a working directory) ever
    run. Done by ``parse_feed``, in whatever process parses; idempotent."""
    import feedparser.api

    feedparser.api.PREFERRED_XML_PARSERS = []


def start_worker(parent_pid: int, memory_limit: int) -> None:
    """Set up a parser worker: it dies with the daemon, ignores Ctrl-C, has a memory cap,
    and parses faster (``buffer_character_data``, ``copy_content_params_shallowly``)."""
    die_with_parent(parent_pid)
    buffer_character_data()
    copy_content_params_shallowly()
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when
    # workers stop (and a worker's KeyboardInterrupt traceback would only be noise).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A HUP sent to the whole process group (`timeout`, a terminal closing, `kill -HUP
    # -PGID`) is the daemon's reload; by default it would kill the worker mid-parse.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Where a sandbox forbids it, or a lower hard limit is already set, parse anyway.
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Make this helper process exit when ``parent_pid``, its parent, dies (even by kill -9).

    Nothing else would stop it: a worker waits on a queue whose write end it holds itself,
    so it never sees end-of-file, and it keeps the daemon's stdout and stderr open. Linux
    sends the death signal when the thread that started this process exits, so helpers
    must be started from a thread that lives as long as the process (the event loop's).
    Elsewhere this does nothing.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died before the signal was asked for: this process then has a
    # new parent already, and no signal will ever come.
    if os.getppid() != parent_pid:
        os._exit(1)
