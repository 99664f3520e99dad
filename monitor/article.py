"""Full article text: when a story needs its page, and what the page's article says.

Owns three things, kept apart:

- **The decision** (pure): ``needs_article`` says whether a new story's link should be
  opened before matching, from the feed's ``full_text`` rule (``auto | always | never``,
  optionally with a CSS ``select``) and ``is_teaser``, which recognizes feed text that
  is only the start of a story: empty or short, or cut off with "…", "[…]", "Read more",
  "Continue reading" and the like. WordPress appends "The post X appeared first on Y."
  to excerpts and to full posts alike, so that line is removed first and what is left is
  judged. Stories older than ``max_age`` are never fetched: they are stored, not alerted.
- **Extraction** (pure, CPU-bound): ``extract_article`` refuses a page larger than the
  cap or that is not HTML, then returns the article's main text, normalized like feed
  text. With ``select`` the text of the elements matching that CSS selector is used
  instead (for a site whose layout the extractor gets wrong).
- **Fetching** (I/O): ``fetch_articles`` opens the pages of a batch of stories with the
  project's ``Fetcher`` (its deadline, size cap, http(s) only, User-Agent and redirect
  policy), never more than the per-host limit at one site at a time (the limiter is the
  one feed fetches use, so a site's feeds and its articles share it), all within one
  total deadline. Every failure (HTTP status, timeout, too large, redirect loop, not
  HTML, nothing extracted, no more text than the feed) is returned as a reason for that
  story, whose feed text is then used as it is (``with_article``).

Why trafilatura: it scores best among open-source extractors on the public extraction
benchmarks (ScrapingHub's article-extraction benchmark, Bevendorff et al. 2023), is
maintained, Apache-2.0, typed, and built on lxml. Compared with readability-lxml on the
pages of tests/news_pages.py (a news site with a related box inside the article, a
WordPress theme with share buttons, related posts and comments, a ministry's press
release) and on an old table layout with <br>-separated text beside 40 archive links:
both kept every word of the articles; trafilatura let no boilerplate through, while
readability-lxml kept "Share on Facebook" and "Previous article" on the WordPress pages
and returned none of one article in the table layout; both took 2-15 ms a page. Both
took a reader forum beside a short article for part of it (``forum_page``): that is what
``select`` is for. ``favor_precision`` is set because a stray menu in an alert costs more
than a lost sentence. The fallback extractors stay on (``fast=False``): on a 272 KB page
they cost 85 ms against 26 ms, paid once per new teaser, in a thread so the event loop
never waits (benchmarks/bench_article.py). trafilatura's import costs about 0.2 s, so it
is imported on first use, not by every command. Selectors use lxml's ``cssselect`` (lxml
comes with trafilatura; cssselect is a small pure-Python translator to XPath).
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from msgspec import Struct
from msgspec.structs import replace

from monitor.errors import ArticleError, FeedError
from monitor.models import Entry, FetchResult
from monitor.text import html_to_text, normalize_text

if TYPE_CHECKING:
    from configparser import ConfigParser

    from monitor.fetch import Fetcher

FullTextMode = Literal["auto", "always", "never"]

# Feed text shorter than this many words is a teaser: a headline with a sentence or two.
TEASER_WORDS = 80
DEFAULT_PAGE_BYTES = 2 * 1024 * 1024
# A page with more elements than this is refused before extraction (a real article page
# has a few thousand; a generated hostile one can have millions within the size cap).
MAX_PAGE_ELEMENTS = 60_000

_WORDPRESS_FOOTER_RE = re.compile(
    r"\s*The post .{1,300}? appeared first on .{1,200}?\.?\s*$", re.IGNORECASE | re.DOTALL
)
_FOOTER_REACH = 600
# How feeds end a cut-off story: an ellipsis (bare or bracketed), or a link to the rest.
_CUT_OFF_RE = re.compile(
    r"""(?:…|\.\.\.|\[\s*(?:…|\.\.\.|&hellip;)\s*\]|\(\s*(?:…|\.\.\.)\s*\)
        |\b(?:read|see)\s+(?:the\s+)?(?:more|full\s+(?:story|article|post|text)|on)\b[^.!?]{0,60}
        |\bcontinue\s+reading\b[^.!?]{0,80}
        |\b(?:weiterlesen|lire\s+la\s+suite|leer\s+más|continua\s+a\s+leggere|czytaj\s+dalej)\b
        |\bmore\s*[»›→>]+
        )\W*$""",
    re.IGNORECASE | re.VERBOSE,
)
# Every way _CUT_OFF_RE can match contains one of these (lower-cased).
_CUT_OFF_HINTS = ("…", "...", "hellip", "read", "see", "continu", "more", "weiterlesen", "lire",
                  "leer", "czytaj")  # fmt: skip
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Types a server may send for HTML it did not label: judge those by their first bytes.
_UNLABELLED_TYPES = frozenset({"", "text/plain", "application/octet-stream"})
_HTML_START_RE = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
    re.IGNORECASE | re.DOTALL,
)


class FullTextRule(Struct, frozen=True):
    """A feed's ``full_text`` setting: when to open a story's page, and how to read it."""

    mode: FullTextMode = "auto"
    select: str | None = None  # CSS selector of the article text, instead of the extractor


class ArticleLimits(Struct, frozen=True):
    """Bounds on fetching article pages; shared by every page of one call."""

    page_timeout: float = 20.0  # one page, from asking for it to its last byte
    total_timeout: float = 60.0  # every page of one call, waiting for a slot included
    max_page_bytes: int = DEFAULT_PAGE_BYTES  # larger pages are not extracted


class ArticleOutcome(Struct, frozen=True):
    """What opening one story's page gave: its article text, or why there is none."""

    link: str
    text: str | None = None
    failure: str | None = None  # a reason to record and show in ``status``


# ``Poller._host_limit``: the per-host semaphore that feed fetches use too.
HostLimit = Callable[[str], AbstractAsyncContextManager[Any]]


# --- The decision -------------------------------------------------------------------


def feed_text(entry: Entry) -> str:
    """The longest text a feed gives for a story (its summary or its content)."""
    return max(entry.summary, entry.content, key=len)


def is_teaser(text: str) -> bool:
    """True when ``text`` (plain, as parsing leaves it) is only the start of a story."""
    # The footer ends the text and is at most ~520 characters: look for it there only,
    # and only where its words are (the pattern would be tried at every space).
    start = max(0, len(text) - _FOOTER_REACH)
    if "appeared first on" in text[start:].lower():
        footer = _WORDPRESS_FOOTER_RE.search(text, start)
        text = text[: footer.start()] if footer else text
    text = text.strip()
    if len(text.split(maxsplit=TEASER_WORDS)) < TEASER_WORDS:
        return True
    tail = text[-120:]
    lowered = tail.lower()
    # Most stories end with none of the words a cut-off needs: skip the pattern then.
    return any(hint in lowered for hint in _CUT_OFF_HINTS) and (
        _CUT_OFF_RE.search(tail) is not None
    )


def needs_article(entry: Entry, rule: FullTextRule, *, now: float, max_age: float) -> bool:
    """Whether a story seen for the first time should have its page opened.

    The caller asks only for new stories, never for one already stored.
    """
    if rule.mode == "never" or entry.link is None:
        return False
    if not entry.link.lower().startswith(("http://", "https://")):
        return False
    if entry.published is not None and now - entry.published > max_age:
        return False
    return rule.mode == "always" or is_teaser(feed_text(entry))


def with_article(entry: Entry, outcome: ArticleOutcome) -> tuple[Entry, str | None]:
    """``entry`` with its page's article text as its content, and the failure to record.

    The feed's own text stays in ``summary`` (a teaser's terms still match); when the
    page failed, or gave no more text than the feed (a paywall's teaser, a cookie wall),
    the entry is kept as the feed gave it.
    """
    if outcome.text is None:
        return entry, outcome.failure
    own = feed_text(entry)
    if len(outcome.text) <= len(own):
        return entry, "the page has no more text than the feed (a paywall?)"
    summary = entry.summary or entry.content
    return replace(entry, summary=summary, content=outcome.text, full_text=True), None


# --- Extraction ---------------------------------------------------------------------


def check_selector(css: str) -> str | None:
    """Why ``css`` is not a usable CSS selector, or None when it is (for ``check``)."""
    from cssselect import HTMLTranslator, SelectorError

    try:
        HTMLTranslator().css_to_xpath(css)
    except SelectorError as exc:
        return f"invalid CSS selector {css!r}: {exc}"
    return None


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """The media type of a Content-Type header, lower-case, and its charset if any."""
    if not content_type:
        return "", None
    kind, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip().strip("\"'").lower()
    return kind.strip().lower(), charset


def is_html(content_type: str | None, body: bytes) -> bool:
    kind, _ = media_type(content_type)
    if kind in _HTML_TYPES:
        return True
    return kind in _UNLABELLED_TYPES and _HTML_START_RE.match(body[:4096]) is not None


def extract_article(
    body: bytes,
    *,
    url: str,
    content_type: str | None,
    select: str | None = None,
    max_bytes: int = DEFAULT_PAGE_BYTES,
) -> str:
    """The main text of an article page, normalized; ``ArticleError`` when there is none."""
    if len(body) > max_bytes:
        raise ArticleError(f"page larger than {max_bytes // 1024} KiB; not extracted")
    if not is_html(content_type, body):
        kind, _ = media_type(content_type)
        raise ArticleError(f"not an HTML page ({kind or 'no content type'})")
    document = _decode(body, content_type)
    try:
        text = _select(document, select) if select else _extract(document, url)
    except ArticleError:
        raise
    except (ValueError, LookupError, AssertionError) as exc:
        # lxml and the extractor raise these on markup they cannot make sense of.
        raise ArticleError(f"cannot read the page: {exc}") from exc
    text = normalize_text(text)
    if not text:
        raise ArticleError(
            f"the selector {select!r} matched nothing on the page"
            if select
            else "no article text found on the page"
        )
    return text


def _decode(body: bytes, content_type: str | None) -> str | bytes:
    """Text when the server named a known charset; else the bytes, for the parser to
    read the page's own <meta charset> (and guess when there is none)."""
    _, charset = media_type(content_type)
    if charset is None:
        return body
    try:
        codecs.lookup(charset)
    except LookupError:
        return body
    return body.decode(charset, errors="replace")


def _extract(document: str | bytes, url: str) -> str:
    import trafilatura

    text = trafilatura.extract(
        document,
        url=url,
        favor_precision=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
        config=_trafilatura_config(),
    )
    return text or ""


@cache
def _trafilatura_config() -> ConfigParser:
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MAX_TREE_SIZE", str(MAX_PAGE_ELEMENTS))
    return config


def _select(document: str | bytes, select: str) -> str:
    import lxml.etree
    import lxml.html

    problem = check_selector(select)
    if problem is not None:
        raise ArticleError(problem)
    if isinstance(document, str):
        # lxml refuses a str that declares its own encoding; the header's charset won.
        document = document.encode("utf-8")
        parser = lxml.html.HTMLParser(encoding="utf-8", huge_tree=False)
    else:
        parser = lxml.html.HTMLParser(huge_tree=False)
    try:
        tree = lxml.html.document_fromstring(document, parser=parser)
    except (lxml.etree.ParserError, lxml.etree.XMLSyntaxError) as exc:
        raise ArticleError(f"cannot parse the page: {exc}") from exc
    if sum(1 for _ in tree.iter()) > MAX_PAGE_ELEMENTS:
        raise ArticleError(f"page has more than {MAX_PAGE_ELEMENTS} elements; not extracted")
    parts = [
        html_to_text(lxml.html.tostring(element, encoding="unicode"))
        for element in tree.cssselect(select)
    ]
    return " ".join(part for part in parts if part)


# --- Fetching -----------------------------------------------------------------------


async def fetch_articles(
    links: Sequence[str],
    fetcher: Fetcher,
    host_limit: HostLimit,
    *,
    linked_from: str | None,
    select: str | None = None,
    limits: ArticleLimits = ArticleLimits(),
    deadline: float | None = None,
) -> dict[str, ArticleOutcome]:
    """Open each page and extract its article; an outcome for every link, never raises.

    ``linked_from`` is the URL of the feed that links to the pages: they are held to the
    fetcher's redirect policy as if that feed had redirected to them, so a public feed
    cannot make the daemon read pages on its own machine or network.

    At most the per-host limit of requests to one site at a time (``host_limit`` is the
    limiter feed fetches use). Everything ends by ``limits.total_timeout`` from now, or by
    ``deadline`` (the event loop's clock) if that is earlier, so a run's time stays
    bounded however many pages are slow: a page not done by then is a failure.
    Call it after the feed's own fetch has released its slot for the host.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + limits.total_timeout
    if deadline is not None:
        end = min(end, deadline)
    unique = list(dict.fromkeys(links))

    async def article(link: str) -> str:
        # The total deadline outside the fetcher's own: a page cut off by it, or still
        # waiting for a slot at its site, is reported as out of time, not as slow.
        async with asyncio.timeout_at(end):
            async with host_limit(urlsplit(link).hostname or ""):
                result = await fetcher.fetch(
                    link, timeout=limits.page_timeout, linked_from=linked_from
                )
            return await asyncio.to_thread(_extract_result, result, select, limits.max_page_bytes)

    tasks = {link: asyncio.create_task(article(link)) for link in unique}
    try:
        if tasks:
            await asyncio.wait(tasks.values(), timeout=max(0.0, end - loop.time()))
    finally:
        # Also when this poll is cancelled (the daemon stopping): no page's task is left
        # running, or ending later with an exception nobody retrieves.
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    out_of_time = f"not done within the {limits.total_timeout:g}s allowed for article pages"
    outcomes = {}
    for link, task in tasks.items():
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or isinstance(error, TimeoutError):
            outcomes[link] = ArticleOutcome(link, failure=out_of_time)
        elif isinstance(error, FeedError):
            outcomes[link] = ArticleOutcome(link, failure=str(error))
        elif error is not None:
            raise error  # a programming error, not the page's fault
        else:
            outcomes[link] = ArticleOutcome(link, text=task.result())
    return outcomes


def _extract_result(result: FetchResult, select: str | None, max_bytes: int) -> str:
    return extract_article(
        result.body,
        url=result.url,
        content_type=result.content_type,
        select=select,
        max_bytes=max_bytes,
    )
