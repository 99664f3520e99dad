"""The cost of full article text: extraction per page, and a feed with ``always`` vs ``never``.

1. Extraction: ``extract_article`` (trafilatura, or a CSS ``select``) on the news-style
   pages of tests/news_pages.py; median of 9 runs each, one core.
2. A run: a local server (in this process, on 127.0.0.1, 20 ms latency per answer, like a
   nearby site) serves a feed of 50 teasers whose pages are spread over the page styles.
   ``never`` fetches and parses the feed and matches its entries; ``always`` also fetches
   and extracts all 50 pages (per-host limit 2, then 8) and matches the article text.
   Medians of 3 runs. The watched term is in the article bodies only, never in the feed.
   The poll pipeline is not wired yet, so this times the steps directly, not ``once``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.article import ArticleLimits, extract_article, fetch_articles, with_article
from monitor.config import Watchlist
from monitor.fetch import Fetcher
from monitor.match import Matcher
from monitor.parse import parse_feed
from tests.helpers import rss
from tests.news_pages import PAGE_STYLES, forum_page, radar_article, seed_article

STORIES, LATENCY, RUNS = 50, 0.02, 3
HTML = "text/html; charset=utf-8"


def extraction_table() -> None:
    pages = [
        (f"{name} / {style}", builder(article), None)
        for name, article in (("seed", seed_article()), ("radar", radar_article()))
        for style, builder in sorted(PAGE_STYLES.items())
    ]
    pages.append(("seed / news-site, 300 KB", heavy(PAGE_STYLES["news-site"](seed_article())),
                  None))  # fmt: skip
    pages.append(("radar / forum, select", forum_page(radar_article()), "div.story-text"))
    extract_article(pages[0][1].encode(), url="https://e.org/", content_type=HTML)  # import
    print("Extraction, median of 9 runs, one core")
    print()
    print("| page | size (KB) | ms per page | words kept |")
    print("| --- | ---: | ---: | ---: |")
    for label, page, select in pages:
        body = page.encode()
        times, text = [], ""
        for _ in range(9):
            started = time.perf_counter()
            text = extract_article(body, url="https://e.org/a", content_type=HTML, select=select)
            times.append(time.perf_counter() - started)
        ms = statistics.median(times) * 1000
        print(f"| {label} | {len(body) / 1024:.0f} | {ms:.1f} | {len(text.split())} |")


def heavy(page: str) -> str:
    """``page`` with the weight of a real news page: a state blob, a mega menu, a footer."""
    state = (
        '<script>window.__STATE__={"items":['
        + ",".join(
            f'{{"id":{n},"title":"Story headline number {n}","url":"/a/{n}"}}' for n in range(2500)
        )
        + "]}</script>"
    )
    menu = (
        "<nav class='mega'>"
        + "".join(
            f"<div class='col'><h4>Section {s}</h4><ul>"
            + "".join(
                f"<li><a href='/s{s}/t{t}/'>Topic {t} of section {s}</a></li>" for t in range(40)
            )
            + "</ul></div>"
            for s in range(25)
        )
        + "</nav>"
    )
    return page.replace("</head>", state + "</head>").replace("</header>", menu + "</header>")


def serve(routes: dict[str, tuple[str, bytes]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(LATENCY)  # the network's round trip
            content_type, body = routes.get(self.path, ("text/plain", b""))
            self.send_response(200 if self.path in routes else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    return server


async def one_run(feed_url: str, mode: str, per_host: int) -> tuple[float, int, int]:
    """Seconds, pages fetched and stories matching, for one poll of the feed."""
    matcher = Matcher([Watchlist(name="radar", keywords=["Giraffe 1X"])])
    started = time.perf_counter()
    async with Fetcher() as fetcher:
        result = await fetcher.fetch(feed_url, timeout=30)
        entries = parse_feed(result.body, url=result.url, now=time.time()).entries
        fetched = 0
        if mode == "always":
            semaphores: dict[str, asyncio.Semaphore] = {}
            outcomes = await fetch_articles(
                [e.link for e in entries if e.link],
                fetcher,
                lambda host: semaphores.setdefault(host, asyncio.Semaphore(per_host)),
                linked_from=feed_url,
                limits=ArticleLimits(total_timeout=120),
            )
            fetched = sum(1 for o in outcomes.values() if o.text)
            entries = [with_article(e, outcomes[e.link])[0] if e.link else e for e in entries]
        matching = sum(1 for e in entries if matcher.match(e))
    return time.perf_counter() - started, fetched, matching


def run_table() -> None:
    article = radar_article()
    styles = sorted(PAGE_STYLES.items())
    routes: dict[str, tuple[str, bytes]] = {}
    items = []
    for n in range(STORIES):
        _, builder = styles[n % len(styles)]
        path = f"/news/{n}/"
        routes[path] = (HTML, builder(article).encode())
        items.append({"title": f"Story {n}", "link": path, "guid": path,
                      "description": article.teaser, "published": time.time() - 600})  # fmt: skip
    server = serve(routes)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for item in items:
        item["link"] = base + item["link"]
    routes["/feed.xml"] = ("application/rss+xml", rss(items).encode())
    print(f"One poll of a feed of {STORIES} teasers, {LATENCY * 1000:.0f} ms latency per "
          f"request, median of {RUNS} runs")  # fmt: skip
    print()
    print("| full_text | per_host | seconds | pages extracted | stories matching |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode, per_host in (("never", 2), ("always", 2), ("always", 8)):
        runs = [asyncio.run(one_run(base + "/feed.xml", mode, per_host)) for _ in range(RUNS)]
        seconds = statistics.median(run[0] for run in runs)
        _, fetched, matching = runs[-1]
        print(f"| {mode} | {per_host} | {seconds:.2f} | {fetched} | {matching} |")
    server.shutdown()
    server.server_close()


def main() -> None:
    extraction_table()
    print()
    run_table()


if __name__ == "__main__":
    main()
