"""Feed autodiscovery: which feeds a web page links to, and finding the feed behind an
address a person typed.

A site announces its feeds with ``<link rel="alternate" type="application/rss+xml"
href="...">`` (or ``atom+xml``, ``feed+json``) in the page's head. ``feed_links`` reads
them with the standard library's HTML parser (no regular expression guesses at
attributes), resolved against the page's URL (or its ``<base href>``), http(s) only.
``find_feed`` fetches an address with the daemon's ``Fetcher`` (same limits, User-Agent
and redirect policy) and returns the feed to add: the address itself when it is a feed,
else the one its page links to, asking the caller to choose when there are several.

Pure parts (``looks_like_html``, ``feed_links``, ``html_page_message``) are apart from
the fetching, so the parser can name a page's feeds in the error of a poll.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html.parser import HTMLParser

from msgspec import Struct

from monitor.errors import FeedError, ParseError
from monitor.fetch import Fetcher
from monitor.models import ParsedFeed
from monitor.parse import parse_feed, resolve_link
from monitor.text import normalize_text

# The link types that name a feed, and what to call each for a person.
FEED_TYPES = {
    "application/rss+xml": "RSS",
    "application/atom+xml": "Atom",
    "application/feed+json": "JSON Feed",
}
# Feed links sit in the page's head; a page is read up to its <body>, and no further
# than this, however long its head is (pages are untrusted and may be 16 MiB).
_MAX_SCAN_CHARS = 1 << 20
_MAX_LINKS = 50  # a page listing more is not announcing its feeds
_MAX_TITLE = 120
_MAX_LISTED = 5  # feed links named in one error message
# A document that begins (after a BOM, an XML declaration, comments) as HTML does.
_HTML_START_RE = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head)\b",
    re.IGNORECASE | re.DOTALL,
)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


class FeedLink(Struct, frozen=True):
    """A feed a page links to."""

    url: str  # absolute, http(s)
    kind: str  # "RSS", "Atom" or "JSON Feed"
    title: str  # the link's title attribute, plain text; may be empty

    def describe(self) -> str:
        return (
            f"{self.url}  ({self.kind}: {self.title})"
            if self.title
            else f"{self.url}  ({self.kind})"
        )


def looks_like_html(body: bytes, content_type: str | None) -> bool:
    """Whether ``body`` is a web page: the server says so, or it begins as one."""
    mime = (content_type or "").partition(";")[0].strip().lower()
    return mime in _HTML_TYPES or _HTML_START_RE.match(body[:4096]) is not None


def feed_links(body: bytes, page_url: str, content_type: str | None = None) -> list[FeedLink]:
    """The feeds an HTML page announces, in page order, without duplicates."""
    collector = _FeedLinkCollector()
    text = _decode(body[: _MAX_SCAN_CHARS * 4], content_type)[:_MAX_SCAN_CHARS]
    for start in range(0, len(text), 65536):
        collector.feed(text[start : start + 65536])
        if collector.in_body or len(collector.found) >= _MAX_LINKS:
            break
    base = page_url
    if collector.base is not None:
        base = resolve_link(collector.base, page_url) or page_url
    links: list[FeedLink] = []
    seen = set()
    for href, kind, title in collector.found:
        url = resolve_link(href, base)
        if url is None or url in seen:
            continue
        seen.add(url)
        links.append(FeedLink(url, kind, normalize_text(title)[:_MAX_TITLE]))
    return links


def html_page_message(links: Sequence[FeedLink]) -> str:
    """What a poll of a web page reports: it is no feed, and which feeds it links to."""
    if not links:
        return "this is an HTML page, not a feed, and it links to no feed"
    named = ", ".join(link.url for link in links[:_MAX_LISTED])
    more = f" and {len(links) - _MAX_LISTED} more" if len(links) > _MAX_LISTED else ""
    return (
        f"this is an HTML page, not a feed; it links to these feeds: {named}{more} "
        "(use one of them as the feed's url)"
    )


def _decode(body: bytes, content_type: str | None) -> str:
    charset = ""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'")
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know; URLs are ASCII anyway
        return body.decode("utf-8", errors="replace")


class _FeedLinkCollector(HTMLParser):
    """Collects (href, kind, title) of feed links and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str]] = []
        self.base: str | None = None
        self.in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
        if self.in_body or tag not in ("link", "base"):
            return
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "base":
            if self.base is None and values.get("href"):
                self.base = values["href"]
            return
        rel = values.get("rel", "").lower().split()
        kind = FEED_TYPES.get(values.get("type", "").partition(";")[0].strip().lower())
        if "alternate" in rel and kind and values.get("href", "").strip():
            self.found.append((values["href"], kind, values.get("title", "")))


# Finding the feed behind an address ------------------------------------------------------


class Discovered(Struct, frozen=True):
    """The feed to add for an address."""

    url: str  # the feed's address
    title: str | None  # the feed's own title
    page: str | None = None  # the web page that linked to it, when the address was one


class _Looked(Struct, frozen=True):
    final_url: str
    feed: ParsedFeed | None
    links: tuple[FeedLink, ...] = ()


Chooser = Callable[[tuple[FeedLink, ...]], FeedLink]


async def find_feed(url: str, *, fetcher: Fetcher, timeout: float, choose: Chooser) -> Discovered:
    """The feed at ``url``, or the one the page at ``url`` links to.

    ``choose`` picks one of several feed links (it may raise to stop). Raises a
    ``FeedError`` when nothing usable is there.
    """
    looked = await _look(url, fetcher=fetcher, timeout=timeout)
    if looked.feed is not None:
        return Discovered(url, looked.feed.title)
    if not looked.links:
        raise ParseError(html_page_message(()))
    link = looked.links[0] if len(looked.links) == 1 else choose(looked.links)
    try:
        # The page linked to it: the redirect policy holds it as if the page redirected.
        target = await _look(
            link.url, fetcher=fetcher, timeout=timeout, linked_from=looked.final_url
        )
    except FeedError as exc:
        raise FeedError(f"its feed link {link.url}: {exc}") from exc
    if target.feed is None:
        raise ParseError(f"its feed link {link.url} is an HTML page too")
    return Discovered(link.url, target.feed.title, page=url)


async def _look(
    url: str, *, fetcher: Fetcher, timeout: float, linked_from: str | None = None
) -> _Looked:
    """Fetch ``url`` and tell a feed from a web page (a ``FeedError`` for anything else)."""
    result = await fetcher.fetch(url, timeout=timeout, linked_from=linked_from)
    try:
        feed = parse_feed(result.body, url=result.url, content_type=result.content_type)
    except ParseError:
        if not looks_like_html(result.body, result.content_type):
            raise
        links = feed_links(result.body, result.url, result.content_type)
        return _Looked(result.url, None, tuple(links))
    return _Looked(result.url, feed)
