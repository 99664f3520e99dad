"""Full article text: teaser detection, extraction from news-style pages, the fetch step.

The fetch tests run the project's real ``Fetcher`` against a real server on 127.0.0.1
serving a teaser feed's article pages and hostile ones: huge, slow, looping, missing,
not HTML, behind a paywall. Entries come from the real feed parser.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

import pytest

from monitor.article import (
    ArticleLimits,
    ArticleOutcome,
    FullTextRule,
    check_selector,
    extract_article,
    fetch_articles,
    is_teaser,
    needs_article,
    with_article,
)
from monitor.config import Watchlist
from monitor.errors import ArticleError
from monitor.fetch import Fetcher, RedirectPolicy
from monitor.match import Matcher
from monitor.models import Entry
from monitor.parse import parse_feed
from tests.helpers import rss
from tests.news_pages import (
    BOILERPLATE,
    FORUM_POST,
    PAGE_STYLES,
    Article,
    forum_page,
    radar_article,
    seed_article,
)
from tests.servers import QuietHandler, serving

HTML = "text/html; charset=utf-8"
LONG_TEXT = " ".join(["The ministry published the full text of the agreement today."] * 12)


def entry(summary: str = "", content: str = "", **kwargs: Any) -> Entry:
    fields: dict[str, Any] = {"key": "k", "title": "Title", "link": "https://news.example/a/1"}
    return Entry(summary=summary, content=content, **{**fields, **kwargs})


# --- Teasers and the decision ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Estonia, Latvia and Lithuania signed a joint purchase of radars on Tuesday.",
        LONG_TEXT + " The deal covers eighteen…",
        LONG_TEXT + " The deal covers eighteen [...]",
        LONG_TEXT + " The deal covers eighteen [ … ]",
        LONG_TEXT + " The deal covers eighteen [&hellip;]",
        LONG_TEXT + " The deal covers eighteen radars. READ MORE",
        LONG_TEXT + " Das Abkommen umfasst achtzehn Radare. Weiterlesen",
        LONG_TEXT + " The deal covers eighteen radars. Read more",
        LONG_TEXT + " The deal covers eighteen radars. Continue reading →",
        LONG_TEXT + " Read the full story at Defense Daily Wire",
        LONG_TEXT + " More »",
        # A WordPress excerpt: cut off, then the footer WordPress adds to every item.
        LONG_TEXT + " The deal covers […] The post Baltic radars appeared first on Wire.",
        # The longest footer the rule knows (a 300-character title, a 200-character site).
        LONG_TEXT
        + " The deal covers […]\n\n The post "
        + "Radars " * 42
        + "appeared first on "
        + "Defense Daily Wire " * 10
        + ".\n",
        "Short excerpt. The post Baltic radars appeared first on Defense Daily Wire.",
    ],
)
def test_teasers_are_recognized(text: str) -> None:
    assert is_teaser(text)


@pytest.mark.parametrize(
    "text",
    [
        LONG_TEXT,
        # A full WordPress post ends with the same footer: it is no teaser.
        LONG_TEXT + " The post Baltic radars appeared first on Defense Daily Wire.",
        LONG_TEXT + " Officials said more would follow next year.",
    ],
)
def test_full_texts_are_not_teasers(text: str) -> None:
    assert not is_teaser(text)


def test_needs_article_follows_the_rule_and_skips_old_or_linkless_stories() -> None:
    now = 2_000_000_000.0
    teaser, full = entry("A headline and a sentence…"), entry(LONG_TEXT)
    auto, always, never = FullTextRule("auto"), FullTextRule("always"), FullTextRule("never")
    ask = dict(now=now, max_age=86400.0)
    assert needs_article(teaser, auto, **ask)
    assert not needs_article(full, auto, **ask)
    assert needs_article(full, always, **ask)
    assert not needs_article(teaser, never, **ask)
    assert not needs_article(entry("x", link=None), always, **ask)
    assert not needs_article(entry("x", link="ftp://news.example/a"), always, **ask)
    old = entry("A headline and a sentence…", published=now - 2 * 86400)
    assert not needs_article(old, always, **ask)
    assert needs_article(entry("x", published=now - 3600), always, **ask)


def test_with_article_keeps_the_feed_text_when_the_page_gave_nothing_better() -> None:
    teaser = entry(content="Turkey buys more S-400 […]")
    kept, failure = with_article(teaser, ArticleOutcome("u", failure="HTTP 404 Not Found"))
    assert kept == teaser and failure == "HTTP 404 Not Found"
    kept, failure = with_article(teaser, ArticleOutcome("u", text="Subscribe to read."))
    assert kept == teaser and failure is not None and "paywall" in failure
    full, failure = with_article(teaser, ArticleOutcome("u", text=LONG_TEXT))
    assert failure is None
    assert full.content == LONG_TEXT and full.summary == "Turkey buys more S-400 […]"


# --- Extraction -------------------------------------------------------------------------


ARTICLES = {"seed": seed_article(), "radar": radar_article()}


@pytest.mark.parametrize("style", sorted(PAGE_STYLES))
@pytest.mark.parametrize("name", sorted(ARTICLES))
def test_extraction_keeps_the_article_and_nothing_around_it(style: str, name: str) -> None:
    article = ARTICLES[name]
    text = extract_article(
        PAGE_STYLES[style](article).encode(), url="https://news.example/a/1", content_type=HTML
    )
    for paragraph in (article.paragraphs[1], article.paragraphs[-1]):
        assert paragraph[:60] in text
    leaked = [phrase for phrase in BOILERPLATE if phrase.lower() in text.lower()]
    assert leaked == []


def test_select_reads_only_the_chosen_element() -> None:
    article = radar_article()
    page = forum_page(article).encode()
    text = extract_article(
        page, url="https://news.example/a/1", content_type=HTML, select="div.story-text"
    )
    assert article.paragraphs[0] in text and article.paragraphs[-1] in text
    assert FORUM_POST.split(":")[1][:40] not in text
    assert not [phrase for phrase in BOILERPLATE if phrase.lower() in text.lower()]
    with pytest.raises(ArticleError, match="matched nothing"):
        extract_article(page, url="u", content_type=HTML, select="div.no-such-class")


def test_invalid_selectors_are_explained() -> None:
    assert check_selector("article .body") is None
    problem = check_selector("div[")
    assert problem is not None and "div[" in problem


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/pdf", b"%PDF-1.7 ...", "not an HTML page (application/pdf)"),
        ("application/json", b'{"html": "<p>x</p>"}', "not an HTML page (application/json)"),
        ("image/jpeg", b"\xff\xd8\xff\xe0", "not an HTML page (image/jpeg)"),
        (None, b"just some words", "not an HTML page (no content type)"),
        (HTML, b"<html><body></body></html>", "no article text"),
    ],
)
def test_pages_without_article_text_are_refused(
    content_type: str | None, body: bytes, reason: str
) -> None:
    with pytest.raises(ArticleError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        extract_article(body, url="https://news.example/a/1", content_type=content_type)


def test_unlabelled_html_is_recognized_by_its_start() -> None:
    page = PAGE_STYLES["ministry"](radar_article()).encode()
    text = extract_article(page, url="https://news.example/a/1", content_type=None)
    assert "Giraffe 1X" in text


def test_size_is_capped_before_extraction() -> None:
    page = PAGE_STYLES["ministry"](radar_article()).encode()
    with pytest.raises(ArticleError, match="larger than 1 KiB"):
        extract_article(page, url="u", content_type=HTML, max_bytes=1024)


def test_charset_from_the_header_is_used() -> None:
    article = Article("Sécurité", ("Le ministère a signé un accord sur les radars Giraffe. " * 20,))
    page = PAGE_STYLES["ministry"](article).replace('<meta charset="utf-8">', "")
    text = extract_article(
        page.encode("latin-1"), url="u", content_type="text/html; charset=ISO-8859-1"
    )
    assert "Le ministère a signé" in text


# --- Fetching against a real server -----------------------------------------------------


@dataclass
class ArticleSite:
    """A news site on 127.0.0.1: article pages by path, plus hostile ones."""

    pages: dict[str, tuple[int, str, bytes, dict[str, str]]] = field(default_factory=dict)
    port: int = 0
    delay: float = 0.0  # server-side latency of every answer, so requests overlap
    release: threading.Event = field(default_factory=threading.Event)  # ends /slow/ pages
    arrived: int = 0  # requests received
    slow_open: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def page(self, path: str, body: bytes | str, content_type: str = HTML, status: int = 200,
             headers: dict[str, str] | None = None) -> str:  # fmt: skip
        data = body.encode() if isinstance(body, str) else body
        self.pages[path] = (status, content_type, data, headers or {})
        return self.url(path)


@pytest.fixture
def site() -> Iterator[ArticleSite]:
    state = ArticleSite()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            # Counted from arrival until just before the answer is sent: the client can
            # ask again only after reading an answer, so this is what it has open at once.
            with state.lock:
                state.arrived += 1
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            if state.delay:
                time.sleep(state.delay)  # the server's latency, not test synchronization
            with state.lock:
                state.in_flight -= 1
            if self.path.startswith("/slow/"):
                self.send_response(200)
                self.send_header("Content-Type", HTML)
                self.end_headers()
                self.wfile.write(b"<html><body><p>Loading")
                self.wfile.flush()
                state.slow_open.release()  # one more slow page is being sent
                state.release.wait(30)  # hold the connection until the test ends
                return
            if self.path not in state.pages:
                self.reply(404)
                return
            status, content_type, body, headers = state.pages[self.path]
            self.reply(status, body, {"Content-Type": content_type, **headers})

    with serving(Handler) as port:
        state.port = port
        try:
            yield state
        finally:
            state.release.set()


def host_limiter(per_host: int) -> Callable[[str], asyncio.Semaphore]:
    """What ``Poller._host_limit`` is: one semaphore per host, made on first use."""
    semaphores: dict[str, asyncio.Semaphore] = {}
    return lambda host: semaphores.setdefault(host, asyncio.Semaphore(per_host))


def teaser_feed(site: ArticleSite, items: list[tuple[str, str, str]]) -> list[Entry]:
    """Entries as the real parser makes them from a teaser feed: (title, path, teaser)."""
    now = time.time()
    document = rss(
        [
            {"title": title, "link": site.url(path), "guid": path, "description": teaser,
             "published": now - 600}
            for title, path, teaser in items
        ]
    )  # fmt: skip
    parsed = parse_feed(document.encode(), url=site.url("/feed.xml"), now=now)
    return parsed.entries


def run_articles(entries: list[Entry], limits: ArticleLimits, per_host: int = 2,
                 select: str | None = None) -> dict[str, ArticleOutcome]:  # fmt: skip
    async def main() -> dict[str, ArticleOutcome]:
        async with Fetcher(max_bytes=8 * 1024 * 1024) as fetcher:
            # The step's own deadline must hold: this outer one only stops a broken test.
            async with asyncio.timeout(limits.total_timeout + 10):
                links = [e.link for e in entries if e.link]
                return await fetch_articles(
                    links, fetcher, host_limiter(per_host), linked_from=entries[0].link,
                    select=select, limits=limits,
                )  # fmt: skip

    return asyncio.run(main())


def test_a_term_only_in_the_article_body_is_matched_on_the_extracted_text(
    site: ArticleSite,
) -> None:
    seed = seed_article()
    site.page("/2026/11/s400-turkey/", PAGE_STYLES["wordpress"](seed))
    radar = radar_article()
    site.page("/2026/11/baltic-radars/", PAGE_STYLES["news-site"](radar))
    entries = teaser_feed(
        site,
        [(seed.headline, "/2026/11/s400-turkey/", seed.teaser),
         (radar.headline, "/2026/11/baltic-radars/", radar.teaser)],
    )  # fmt: skip
    matcher = Matcher([Watchlist(name="jets", keywords=["F-35", "Giraffe 1X"])])
    assert all(needs_article(e, FullTextRule(), now=time.time(), max_age=86400) for e in entries)
    assert matcher.match(entries[0]) == [] and matcher.match(entries[1]) == []

    outcomes = run_articles(entries, ArticleLimits(page_timeout=5, total_timeout=10))

    for story, keyword in zip(entries, ("F-35", "Giraffe 1X"), strict=True):
        assert story.link is not None
        full, failure = with_article(story, outcomes[story.link])
        assert failure is None
        [match] = matcher.match(full)
        assert match.keywords == (keyword,)
        assert keyword in match.snippet
        assert not [p for p in BOILERPLATE if p.lower() in match.snippet.lower()]


def test_each_failing_page_is_recorded_and_falls_back_to_the_feed_text(
    site: ArticleSite,
) -> None:
    site.page("/ok/", PAGE_STYLES["ministry"](radar_article()))
    site.page("/huge/", "<html><body>" + "<p>padding words here</p>" * 200_000)
    site.page("/loop/", b"", status=302, headers={"Location": "/loop/"})
    site.page("/report.pdf", b"%PDF-1.7 binary", content_type="application/pdf")
    paywall = "<html><body><article><p>Subscribe to continue reading.</p></article></body>"
    site.page("/paywall/", paywall)
    site.page("/gone/", b"", status=410)
    paths = ["/ok/", "/missing/", "/huge/", "/loop/", "/report.pdf", "/slow/1", "/paywall/",
             "/gone/"]  # fmt: skip
    teaser = "Officials said the Giraffe radar deal would close coverage gaps […]"
    entries = teaser_feed(site, [(f"Story {n}", path, teaser) for n, path in enumerate(paths)])

    outcomes = run_articles(entries, ArticleLimits(page_timeout=1, total_timeout=8))

    reasons = {}
    matcher = Matcher([Watchlist(name="radar", keywords=["Giraffe"])])
    for story in entries:
        assert story.link is not None
        kept, failure = with_article(story, outcomes[story.link])
        reasons[story.link.removeprefix(site.url(""))] = failure
        assert matcher.match(kept), "the teaser's own term must still match"
    assert reasons["/ok/"] is None
    expected = {
        "/missing/": "HTTP 404",
        "/huge/": "larger than 2048 KiB",
        "/loop/": "redirect",
        "/report.pdf": "not an HTML page (application/pdf)",
        "/slow/1": "timed out after 1s",
        "/paywall/": "no more text than the feed",
        "/gone/": "HTTP 410",
    }
    for path, words in expected.items():
        reason = reasons[path]
        assert reason is not None and words in reason, (path, reason)


def test_many_slow_pages_end_by_the_total_deadline(site: ArticleSite) -> None:
    entries = teaser_feed(site, [(f"Slow {n}", f"/slow/{n}", "Teaser…") for n in range(40)])
    limits = ArticleLimits(page_timeout=30, total_timeout=1.0)

    async def main() -> dict[str, ArticleOutcome]:
        async with Fetcher() as fetcher:
            # Fails the test if the step overruns its own 1 s budget by much.
            async with asyncio.timeout(4):
                links = [e.link for e in entries if e.link]
                return await fetch_articles(
                    links, fetcher, host_limiter(4), linked_from=None, limits=limits
                )

    outcomes = asyncio.run(main())
    assert len(outcomes) == 40
    assert {o.failure for o in outcomes.values()} == {
        "not done within the 1s allowed for article pages"
    }
    assert site.arrived == 4  # slow pages hold their slots: no fifth request started


def test_a_cold_start_of_many_teasers_never_exceeds_the_per_host_limit(
    site: ArticleSite,
) -> None:
    article = radar_article()
    for n in range(30):
        site.page(f"/news/{n}/", PAGE_STYLES["news-site"](article))
    site.delay = 0.02
    entries = teaser_feed(site, [(f"Story {n}", f"/news/{n}/", "Teaser…") for n in range(30)])

    outcomes = run_articles(entries, ArticleLimits(page_timeout=5, total_timeout=20), per_host=2)

    assert all(o.text and "Giraffe 1X" in o.text for o in outcomes.values())
    assert site.most_in_flight == 2  # overlapping, and never more than the limit


def test_the_same_link_twice_is_fetched_once(site: ArticleSite) -> None:
    site.page("/a/", PAGE_STYLES["ministry"](radar_article()))
    entries = teaser_feed(site, [("One", "/a/", "Teaser…"), ("Two", "/a/", "Other…")])
    outcomes = run_articles(entries, ArticleLimits())
    assert list(outcomes) == [site.url("/a/")]
    assert outcomes[site.url("/a/")].text is not None


def test_a_public_feed_cannot_send_the_daemon_to_pages_on_its_own_network(
    site: ArticleSite,
) -> None:
    """The redirect policy holds for article pages: 127.0.0.1 stands for the local
    network, and a feed served from 127.0.0.2 for a public one (as in
    tests/test_redirect_policy.py)."""
    site.page("/admin/", PAGE_STYLES["ministry"](radar_article()))
    policy = RedirectPolicy(local_networks=(ip_network("127.0.0.1/32"), ip_network("::1/128")))

    async def main(linked_from: str) -> ArticleOutcome:
        async with Fetcher(redirect_policy=policy) as fetcher:
            outcomes = await fetch_articles(
                [site.url("/admin/")], fetcher, host_limiter(2), linked_from=linked_from
            )
            return outcomes[site.url("/admin/")]

    refused = asyncio.run(main("http://127.0.0.2:8080/feed.xml"))
    assert refused.text is None and refused.failure is not None and "refused" in refused.failure
    assert site.arrived == 0  # refused before connecting
    allowed = asyncio.run(main(site.url("/feed.xml")))  # an intranet feed's own pages
    assert allowed.text is not None and "Giraffe 1X" in allowed.text


def test_a_poll_cancelled_while_reading_pages_leaves_no_page_task_behind(
    site: ArticleSite,
) -> None:
    """The daemon's shutdown cancels a poll still reading slow pages: every page's task
    ends with it, none is left to finish (or fail unretrieved) after the loop moves on."""
    entries = teaser_feed(site, [(f"Slow {n}", f"/slow/{n}", "Teaser…") for n in range(6)])
    limits = ArticleLimits(page_timeout=30, total_timeout=60)

    async def main() -> set[asyncio.Task[object]]:
        async with Fetcher() as fetcher:
            links = [e.link for e in entries if e.link]
            poll = asyncio.create_task(
                fetch_articles(links, fetcher, host_limiter(2), linked_from=None, limits=limits)
            )
            for _ in range(2):  # both slots of the site taken by slow pages
                assert await asyncio.to_thread(site.slow_open.acquire, True, 10)
            poll.cancel()
            with pytest.raises(asyncio.CancelledError):
                await poll
            return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[return-value]

    assert asyncio.run(main()) == set()
