"""Pages without a feed: a press room's list of releases, read by CSS selectors.

The page is served by a real server on 127.0.0.1 and fetched by the project's Fetcher.
"""

from __future__ import annotations

import asyncio
import calendar

import pytest

from monitor.config import Watchlist
from monitor.errors import ParseError
from monitor.fetch import Fetcher
from monitor.identity import canonical_url, entry_key, title_key
from monitor.match import Matcher
from monitor.models import FetchResult
from monitor.scrape import ScrapeRule, check_rule, parse_date, scrape_page
from tests.news_pages import BOILERPLATE, press_list_page, press_releases
from tests.servers import FeedServer

RULE = ScrapeRule(item="div.release", title="h2", link="h2 a", date=".meta", summary="p")
NOW = calendar.timegm((2026, 11, 25, 12, 0, 0))


def fetch(url: str) -> FetchResult:
    async def main() -> FetchResult:
        async with Fetcher() as fetcher:
            return await fetcher.fetch(url, timeout=5)

    return asyncio.run(main())


def test_a_press_page_becomes_entries_like_a_feeds(feeds: FeedServer) -> None:
    releases = press_releases()
    url = feeds.serve("/press/", press_list_page(releases), content_type="text/html")
    result = fetch(url)

    parsed = scrape_page(
        result.body, url=result.url, rule=RULE, content_type=result.content_type, now=NOW
    )

    assert parsed.title == "Press releases - Ministry of Defence"
    assert [e.title for e in parsed.entries] == [r.title for r in releases]
    assert [e.link for e in parsed.entries] == [
        feeds.url("/press/2026/11/radar-agreement"),
        feeds.url("/press/2026/11/f35-detachment"),
        feeds.url("/press/press/2026/11/tender-patrol-vessels?lang=en"),  # relative to /press/
    ]
    assert [e.summary for e in parsed.entries] == [r.summary for r in releases]
    assert [e.published for e in parsed.entries] == [
        calendar.timegm((2026, 11, 12, 9, 0, 0)),  # the datetime attribute, +01:00
        calendar.timegm((2026, 11, 10, 0, 0, 0)),  # "10 November 2026"
        calendar.timegm((2026, 11, 3, 0, 0, 0)),  # "November 3, 2026"
    ]
    for entry in parsed.entries:
        assert entry.key == entry_key(None, entry.link, entry.title, entry.published)
        assert entry.link_key == canonical_url(entry.link)
        assert entry.title_key == title_key(entry.title)
        assert entry.opaque_link is False
        text = " ".join((entry.title, entry.summary))
        assert not [p for p in BOILERPLATE if p.lower() in text.lower()]
    [match] = Matcher([Watchlist(name="jets", keywords=["F-35"])]).match(parsed.entries[1])
    assert match.terms == ("F-35",)


def test_only_item_given_finds_title_link_and_time_inside_it() -> None:
    page = press_list_page(press_releases()).encode()
    parsed = scrape_page(page, url="https://mod.example/press/", rule=ScrapeRule("div.release"),
                         now=NOW)  # fmt: skip
    first = parsed.entries[0]
    assert first.title == press_releases()[0].title
    assert first.link == "https://mod.example/press/2026/11/radar-agreement"
    assert first.published == calendar.timegm((2026, 11, 12, 9, 0, 0))
    assert parsed.entries[1].published is None  # no <time> element: no guessing


def test_links_resolve_against_base_and_only_http_links_survive() -> None:
    page = b"""<html><head><base href="https://cdn.mod.example/en/"></head><body>
    <ul class="news">
      <li><a href="releases/1">Release one</a></li>
      <li><a href="javascript:alert(1)">Release two</a></li>
      <li><a href="data:text/html,hi">Release three</a></li>
      <li><a href="//other.example/4">Release four</a></li>
      <li class="ad"></li>
    </ul></body></html>"""
    parsed = scrape_page(page, url="https://mod.example/", rule=ScrapeRule("ul.news li"), now=NOW)
    assert [(e.title, e.link) for e in parsed.entries] == [
        ("Release one", "https://cdn.mod.example/en/releases/1"),
        ("Release two", None),
        ("Release three", None),
        ("Release four", "https://other.example/4"),
    ]
    # Linkless entries still get a stable identity within the source.
    assert parsed.entries[1].key.startswith("hash:")


def test_an_item_selector_matching_nothing_is_an_error_on_the_source() -> None:
    page = press_list_page(press_releases()).encode()
    with pytest.raises(ParseError, match=r"scrape.item 'article.release' matched nothing"):
        scrape_page(page, url="https://mod.example/", rule=ScrapeRule("article.release"), now=NOW)


def test_a_page_that_is_not_html_is_an_error() -> None:
    with pytest.raises(ParseError, match="not an HTML page"):
        scrape_page(b"%PDF-1.7", url="u", rule=RULE, content_type="application/pdf", now=NOW)


def test_check_names_each_bad_selector_by_its_key() -> None:
    assert check_rule(RULE) == []
    problems = check_rule(ScrapeRule(item="div.release", title="h2[", date="  "))
    assert len(problems) == 2
    assert problems[0].startswith("scrape.title: invalid CSS selector 'h2['")
    assert problems[1] == "scrape.date: empty CSS selector"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-12T10:00:00+01:00", calendar.timegm((2026, 11, 12, 9, 0, 0))),
        ("Wed, 12 Nov 2026 09:30:00 GMT", calendar.timegm((2026, 11, 12, 9, 30, 0))),
        ("Published: 12 November 2026 14:30", calendar.timegm((2026, 11, 12, 14, 30, 0))),
        ("Nov 3, 2026 09:30 AM", calendar.timegm((2026, 11, 3, 9, 30, 0))),
        ("5 comments", None),
        ("2 hours ago", None),
        ("", None),
        ("12 March 1975", None),  # before any news feed: nonsense, as for feeds
        ("12 November 2099", NOW),  # in the future: now, as for feeds
    ],
)
def test_dates_as_pages_print_them(text: str, expected: float | None) -> None:
    assert parse_date(text, NOW) == expected
