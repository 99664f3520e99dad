"""Polling a whole feed list: `feed-monitor once` against the reader library and the floor.

A local HTTP server (in this process, on 127.0.0.1) serves 400 realistic RSS feeds of 25
items each (about 12 MB), with ETags. Three contenders, each timed as a whole process:

- feed-monitor: ``feed-monitor once`` (fetch, parse, identity, match, store, alerts to a
  local json:// endpoint; one item in a hundred mentions a watched term);
- reader 3.26 with sgmllib3k beside it: ``update_feeds(workers=16, scheduled=False)``,
  from its own virtual environment (.venv/reader, made on first use);
- the floor: a process that only downloads every feed (aiohttp, 16 at a time).

Cold: empty databases, every feed new. Warm: the same databases again, every feed
answering 304 Not Modified. Medians of 3 cold runs and 9 warm runs each.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.bench_match import GENERIC, SAMPLE

ROOT = Path(__file__).resolve().parent.parent
FEEDS, ITEMS, RUNS = 400, 25, 3
WARM_REPEATS = 3  # warm runs per cold run
READER_PYTHON = ROOT / ".venv" / "reader" / "bin" / "python"  # inside .venv: ignored

READER_SCRIPT = """
import sys
from reader import make_reader
reader = make_reader(sys.argv[1])
for url in sys.argv[2:]:
    reader.add_feed(url, exist_ok=True)
reader.update_feeds(workers=16, scheduled=False)
"""

FLOOR_SCRIPT = """
import asyncio, sys, aiohttp
async def main(requests):
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as client:
        async def get(url, etag):
            async with limit:
                headers = {"If-None-Match": etag} if etag else {}
                async with client.get(url, headers=headers) as response:
                    await response.read()
        await asyncio.gather(*(get(url, etag) for url, etag in requests))
asyncio.run(main([arg.split(" ", 1) if " " in arg else (arg, "") for arg in sys.argv[1:]]))
"""


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def make_feeds(rng: random.Random) -> dict[str, bytes]:
    """400 RSS documents of 25 items, ~30 KB each, like a WordPress or CMS feed."""
    article = SAMPLE.read_text(encoding="utf-8").split("\n")
    article = [line for line in article if len(line.split()) > 6]
    now = time.time()
    feeds = {}
    for f in range(FEEDS):
        items = []
        for i in range(ITEMS):
            hot = rng.random() < 0.01
            pool = article if hot else GENERIC
            title = rng.choice(pool)[:120]
            paragraphs = "".join(
                f"<p>{escape(rng.choice(pool))}</p>" for _ in range(rng.randint(8, 10))
            )
            link = f"https://site{f % 97}.example/{2026}/{f}/{i}/story-{f}-{i}/"
            items.append(
                f"<item><title>{escape(title)}</title><link>{link}</link>"
                f'<guid isPermaLink="true">{link}</guid>'
                f"<pubDate>{formatdate(now - (f * ITEMS + i) * 60, usegmt=True)}</pubDate>"
                f"<description>{escape(paragraphs)}</description></item>"
            )
        feeds[f"/feed/{f}.xml"] = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Site {f}</title><link>https://site{f % 97}.example/</link>"
            f"<description>Defense news {f}</description>{''.join(items)}</channel></rss>"
        ).encode()
    return feeds


class Server:
    """Serves the feeds with ETags, and receives alerts on /alerts."""

    def __init__(self, feeds: dict[str, bytes]) -> None:
        self.alerts = 0
        tags = {path: etag(body) for path, body in feeds.items()}
        self.tags = tags
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body, tag = feeds.get(self.path), tags.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.headers.get("If-None-Match") == tag:
                    self.send_response(304)
                    self.send_header("ETag", tag)
                    self.end_headers()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("ETag", tag)
                    self.end_headers()
                    self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.alerts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Listener(ThreadingHTTPServer):
            # socketserver's default listen backlog is 5: a client opening 16 connections
            # at once has the rest dropped and retried by TCP a whole second later, which
            # no real web server (nginx: 511) would do to it.
            request_queue_size = 128

        self.httpd = Listener(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def urls(self, feeds: dict[str, bytes]) -> list[str]:
        return [f"http://127.0.0.1:{self.port}{path}" for path in feeds]


def timed(command: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def feed_monitor_config(directory: Path, urls: list[str], port: int) -> Path:
    path = directory / "monitor.yaml"
    path.write_text(
        json.dumps(  # JSON is YAML
            {
                "database": "monitor.db",
                "per_host": 16,  # every feed is on 127.0.0.1 here; real lists span many sites
                "feeds": [{"url": url} for url in urls],
                "watchlists": [{"name": "turkey", "keywords": ["S-400", "CAATSA", "F-35"]}],
                "notify": [f"json://127.0.0.1:{port}/alerts"],
            }
        )
    )
    return path


def ensure_reader() -> None:
    if READER_PYTHON.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(READER_PYTHON.parent.parent)], check=True)
    subprocess.run(
        [str(READER_PYTHON), "-m", "pip", "install", "--quiet", "-r",
         str(ROOT / "benchmarks" / "reader.lock")],
        check=True,
    )  # fmt: skip


def main() -> None:
    ensure_reader()
    feeds = make_feeds(random.Random(5))
    server = Server(feeds)
    urls = server.urls(feeds)
    size = sum(map(len, feeds.values())) / 1e6
    monitor = [sys.executable, "-m", "monitor", "once", "--config"]
    results: dict[str, dict[str, list[float]]] = {
        name: {"cold": [], "warm": []} for name in ("feed-monitor", "reader", "floor")
    }
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            config = feed_monitor_config(directory, urls, server.port)
            reader = [str(READER_PYTHON), "-c", READER_SCRIPT, str(directory / "reader.db")]
            # A warm run changes nothing, so it is repeated: short runs are the noisy ones.
            for phase in ("cold", *["warm"] * WARM_REPEATS):
                results["feed-monitor"][phase].append(timed([*monitor, str(config)], cwd=ROOT))
                results["reader"][phase].append(timed([*reader, *urls]))
            results["floor"]["cold"].append(timed([sys.executable, "-c", FLOOR_SCRIPT, *urls]))
            shutil.rmtree(directory, ignore_errors=True)
    # The warm floor: the same conditional requests, every one answered 304.
    conditional = [f"{url} {server.tags[path]}" for url, path in zip(urls, feeds, strict=True)]
    for _ in range(RUNS * WARM_REPEATS):
        results["floor"]["warm"].append(timed([sys.executable, "-c", FLOOR_SCRIPT, *conditional]))

    def median(name: str, phase: str) -> float:
        return statistics.median(results[name][phase])

    print(
        f"Polling {FEEDS} feeds of {ITEMS} items ({size:.1f} MB) from a local server; whole "
        f"processes, medians of {RUNS} cold and {RUNS * WARM_REPEATS} warm runs; "
        f"{server.alerts // RUNS} alerts per cold run"
    )
    print()
    print("| run | feed-monitor (s) | reader 3.26 (s) | download only (s) | "
          "feed-monitor / reader | feed-monitor / download |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for phase in ("cold", "warm"):
        fm, rd, fl = median("feed-monitor", phase), median("reader", phase), median("floor", phase)
        print(f"| {phase} | {fm:.2f} | {rd:.2f} | {fl:.2f} | {fm / rd:.2f} | {fm / fl:.2f} |")


if __name__ == "__main__":
    main()
