"""Identity keys: canonical URLs of real-world shapes, title keys, opaque and shared links."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from monitor.identity import (
    _names_a_page,
    canonical_url,
    is_opaque_url,
    publisher_names,
    shared_links,
    title_key,
    with_keys,
)
from monitor.models import Entry

SAME_PAGE = [
    "https://www.defensenews.com/global/europe/2020/08/24/russia-s400-turkey/",
    "http://defensenews.com/global/europe/2020/08/24/russia-s400-turkey",
    "https://WWW.DefenseNews.com:443/global/europe/2020/08/24/russia-s400-turkey/#comments",
    "https://www.defensenews.com/global/europe/2020/08/24/russia-s400-turkey/?utm_source=rss&utm_medium=feed&utm_campaign=x",
    "https://defensenews.com/global/europe/2020/08/24/russia-s400-turkey?fbclid=IwAR0abc",
    "https://www.defensenews.com/global/europe/2020/08/24/russia-s400-turkey/?gclid=1&mc_cid=2&mc_eid=3",
    "http://www.defensenews.com:80//global/europe/2020/08/24/russia-s400-turkey/",
]


@pytest.mark.parametrize("url", SAME_PAGE)
def test_copies_of_one_page_share_a_canonical_url(url: str) -> None:
    assert canonical_url(url) == (
        "https://defensenews.com/global/europe/2020/08/24/russia-s400-turkey"
    )


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://e.org/story?id=5&page=2", "https://e.org/story?id=5&page=2"),
        ("https://e.org/story?page=2&id=5", "https://e.org/story?id=5&page=2"),
        ("https://e.org/story?id=5&utm_term=x&ref_src=twsrc", "https://e.org/story?id=5"),
        ("https://e.org:8080/a/", "https://e.org:8080/a"),
        ("https://news.e.org/a", "https://news.e.org/a"),
        ("https://e.org/A/Case", "https://e.org/A/Case"),  # paths keep their case
    ],
)
def test_canonical_url_keeps_what_identifies(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "url", [None, "", "javascript:alert(1)", "ftp://e.org/x", "/relative", "https://[bad"]
)
def test_non_web_urls_have_no_canonical_form(url: str | None) -> None:
    assert canonical_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://news.google.com/rss/articles/CBMiWGh0dHBzOi8vd3d3LmV4YW1wbGUuY29tL25ld3M?oc=5",
        "https://feedproxy.google.com/~r/example/~3/AbCdEf/",
        "https://t.co/AbCdEf123",
        "https://agg.example/r/aHR0cHM6Ly9leGFtcGxlLm9yZy9hcnRpY2xlLzEyMw",
        "https://e.org/",
        None,
    ],
)
def test_opaque_links(url: str | None) -> None:
    assert is_opaque_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://bulgarianmilitary.com/2020/08/24/russia-sells-s-400-to-turkey/",
        "https://e.org/news/12345",
        "https://e.org/2020/08/some-long-slug-of-an-article-title-here",
    ],
)
def test_article_links_are_not_opaque(url: str) -> None:
    assert not is_opaque_url(url)


def test_title_key_drops_case_punctuation_and_publisher() -> None:
    original = "Russia to deliver second S-400 batch to Turkey"
    publishers = publisher_names("Reuters", None) | publisher_names("Defense News", None)
    publishers |= publisher_names(None, "https://breakingdefense.com/feed/")
    for copy in [
        "Russia to deliver second S-400 batch to Turkey - Reuters",
        "Russia to deliver second S-400 batch to Turkey | Defense News",
        "RUSSIA to deliver second S-400 batch to Turkey!",
        "Russia  to deliver second S-400 batch to Turkey — Breaking Defense",
    ]:
        assert title_key(copy, publishers) == title_key(original)


def test_title_key_keeps_names_and_numbers_apart() -> None:
    assert title_key("Russia to deliver S-400 to Turkey") != title_key(
        "Russia to deliver S-400 to India"
    )
    assert title_key("Second S-400 batch") != title_key("Second S-500 batch")
    # A short title's dash is part of it, not a publisher.
    assert title_key("S-400 - explained") == "s 400 explained"


def test_shared_links_are_detected() -> None:
    page = "https://gov.example/press-releases"
    links = [page, page, "https://gov.example/a"]
    titles = ["Release one", "Release two", "Other"]
    entries = [
        with_keys(Entry("k", title, link)) for link, title in zip(links, titles, strict=True)
    ]
    assert shared_links(entries) == {page}
    same = [with_keys(Entry("k", "Same title", page)) for _ in range(2)]
    assert shared_links(same) == set()


@pytest.mark.parametrize(
    ("link", "names_a_page"),
    [
        ("https://a.org", False), ("https://a.org/", False), ("http://www.a.org//", False),
        ("https://a.org/#top", False), ("https://a.org:8080", False),
        ("https://a.org/x", True), ("https://a.org:8080/x/", True), ("https://a.org/?p=1", True),
        ("https://a.org?u=/x", True), ("https://[::1]/story", True),
    ],
)  # fmt: skip
def test_a_front_page_names_no_page_whatever_its_spelling(link: str, names_a_page: bool) -> None:
    """``_names_a_page`` reads canonical_url's form without urlsplit (it runs for every
    entry); it must agree with what urlsplit says of the same link."""
    canonical = canonical_url(link)
    assert _names_a_page(canonical) is names_a_page
    parts = urlsplit(canonical or "")
    assert bool(parts.path.strip("/") or parts.query) is names_a_page
