"""Pages without a feed: a web page's list of items, read with CSS selectors, as entries.

A feed's ``scrape: {item, title, link, date, summary}`` names, by CSS selector, the
element of each item on the page and, inside it, its title, link, date and summary.
``scrape_page`` turns the fetched page into a ``ParsedFeed`` of ``Entry`` exactly like a
parsed feed's: plain normalized text, absolute http(s) links only (resolved against the
page's ``<base href>`` or its URL), dates from a ``datetime`` attribute or the text,
identity keys as ``monitor.identity`` computes them for feed entries. An ``item``
selector that matches nothing is a ``ParseError`` for that source: the site changed its
layout, and saying so beats reporting "no new stories" forever. Pure: no I/O.

lxml (which trafilatura brings for article extraction) parses the page and cssselect
translates the selectors, so pages and articles share one HTML parser. Dates: feedparser's
parser reads the ISO 8601 and RFC 822 forms a ``datetime`` attribute holds; dateutil
(already installed with sqlite-utils) reads what sites print ("12 November 2026",
"Nov 3, 2026 09:30 AM") when a year is shown. A date without a zone is taken as UTC.
"""

from __future__ import annotations

import re
import warnings
from typing import Any
from urllib.parse import urljoin

from msgspec import Struct
from msgspec.structs import fields

from monitor.article import MAX_PAGE_ELEMENTS, check_selector, is_html
from monitor.errors import ParseError
from monitor.identity import entry_key, with_keys
from monitor.models import Entry, ParsedFeed
from monitor.parse import sane_timestamp
from monitor.text import html_to_text, normalize_text, safe_link

# A printed date is trusted only when it shows a year ("5 comments" is not a date).
_YEAR_RE = re.compile(r"\b(?:19|20)\d\d\b")
_DATE_ATTRIBUTES = ("datetime", "content", "data-date", "title")


class ScrapeRule(Struct, frozen=True):
    """Where a page's items and their parts are, as CSS selectors.

    Inside an item: ``title`` defaults to its first heading or link, ``link`` to the
    title's own link or the item's first link, ``date`` to a ``<time>`` element.
    """

    item: str
    title: str | None = None
    link: str | None = None
    date: str | None = None
    summary: str | None = None


_DEFAULT_TITLE = "h1, h2, h3, h4, h5, h6, a[href]"
_DEFAULT_DATE = "time"


def check_rule(rule: ScrapeRule) -> list[str]:
    """Problems with a rule's selectors, each naming its key (for ``check``)."""
    problems = []
    for field in fields(rule):
        css = getattr(rule, field.name)
        if css is None:
            continue
        problem = check_selector(css) if css.strip() else "empty CSS selector"
        if problem is not None:
            problems.append(f"scrape.{field.name}: {problem}")
    return problems


def scrape_page(
    body: bytes,
    *,
    url: str,
    rule: ScrapeRule,
    content_type: str | None = None,
    now: float,
) -> ParsedFeed:
    """The items of a page fetched from ``url``; ``ParseError`` when there are none."""
    import lxml.etree
    import lxml.html

    if not is_html(content_type, body):
        raise ParseError(f"not an HTML page ({content_type or 'no content type'})")
    problems = check_rule(rule)
    if problems:
        raise ParseError("; ".join(problems))
    try:
        tree = lxml.html.document_fromstring(body, parser=lxml.html.HTMLParser(huge_tree=False))
    except (lxml.etree.ParserError, lxml.etree.XMLSyntaxError, ValueError) as exc:
        raise ParseError(f"cannot parse the page: {exc}") from exc
    if sum(1 for _ in tree.iter()) > MAX_PAGE_ELEMENTS:
        raise ParseError(f"page has more than {MAX_PAGE_ELEMENTS} elements")
    base = _base_url(tree, url)
    items = tree.cssselect(rule.item)
    if not items:
        raise ParseError(f"scrape.item {rule.item!r} matched nothing on the page")
    entries = [entry for item in items if (entry := _entry(item, rule, base, now)) is not None]
    titles = tree.xpath("//title")
    page_title = html_to_text(titles[0].text_content()) if titles else None
    return ParsedFeed(title=page_title or None, entries=entries)


def _base_url(tree: Any, url: str) -> str:
    for base in tree.xpath("//base[@href]")[:1]:
        href = safe_link(urljoin(url, base.get("href", "").strip()))
        if href is not None:
            return href
    return url


def _first(item: Any, css: str | None, default: str | None = None) -> Any | None:
    selector = css or default
    if selector is None:
        return None
    found = item.cssselect(selector)
    return found[0] if found else None


def _text(element: Any) -> str:
    import lxml.html

    return html_to_text(lxml.html.tostring(element, encoding="unicode", with_tail=False))


def _entry(item: Any, rule: ScrapeRule, base: str, now: float) -> Entry | None:
    title_element = _first(item, rule.title, _DEFAULT_TITLE)
    title = _text(title_element) if title_element is not None else ""
    link = _link(item, rule, title_element, base)
    if not title and link is None:
        return None  # an empty slot in the list (an ad, a spacer), not a story
    summary_element = _first(item, rule.summary)
    summary = _text(summary_element) if summary_element is not None else ""
    date_element = _first(item, rule.date, _DEFAULT_DATE)
    published = _published(date_element, now) if date_element is not None else None
    return with_keys(
        Entry(
            key=entry_key(None, link, title, published),
            title=title,
            link=link,
            summary=summary,
            published=published,
        )
    )


def _link(item: Any, rule: ScrapeRule, title_element: Any | None, base: str) -> str | None:
    if rule.link is not None:
        candidates = [_first(item, rule.link)]
    else:
        # The title's own link, else the item's first link (or the item, if it is one).
        candidates = [title_element, _first(title_element, "a[href]") if title_element is not None
                      else None, item, _first(item, "a[href]")]  # fmt: skip
    for element in candidates:
        if element is None:
            continue
        href = element.get("href")
        if href is None and rule.link is not None:
            found = element.cssselect("a[href]")
            href = found[0].get("href") if found else None
        if href:
            return safe_link(urljoin(base, href.strip()))
    return None


def _published(element: Any, now: float) -> float | None:
    # A machine-readable date first: on the element, or on a <time> inside it.
    for holder in (element, *element.xpath(".//*[@datetime]")[:1]):
        for attribute in _DATE_ATTRIBUTES:
            value = holder.get(attribute)
            if value and (stamp := parse_date(value, now)) is not None:
                return stamp
    return parse_date(normalize_text(element.text_content()), now)


def parse_date(text: str, now: float) -> float | None:
    """Unix time of a date as pages write it, or None; never in the future."""
    from feedparser.datetimes import _parse_date

    text = text.strip()
    if not text or len(text) > 200:
        return None
    parsed = _parse_date(text)
    if parsed is None and _YEAR_RE.search(text):
        parsed = _printed_date(text)
    return sane_timestamp(parsed, now)


def _printed_date(text: str) -> Any:
    from dateutil import parser as dateutil_parser
    from dateutil.tz import UTC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unknown zone name ("CET") is read as UTC
        try:
            when = dateutil_parser.parse(text, fuzzy=True)
        except (ValueError, OverflowError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).timetuple()
