"""Polling a whole feed list: `feed-monitor once` against the reader library and the floor.

Twenty local web sites (one HTTP server on each of 127.0.0.2 to 127.0.0.21, in this
process) serve 400 realistic RSS feeds of 25 items each (about 12 MB), 20 feeds a site,
with ETags; like real servers they set TCP_NODELAY and listen with a backlog of 128.
Three contenders, each timed as a whole process:

- feed-monitor: ``feed-monitor once`` with the shipped defaults (no ``concurrency`` or
  ``per_host`` override): fetch, parse, identity, match, store, alerts to a local json://
  endpoint (one item in a hundred mentions a watched term);
- reader 3.27 (its newest release; it needs Python 3.12) with sgmllib3k beside it:
  ``update_feeds(workers=16, scheduled=False)``, from its own virtual environment
  (.venv/reader, made on first use from benchmarks/reader.lock);
- the floor: a process that only downloads every feed (aiohttp, 16 at a time).

Every contender runs from compiled bytecode, as an installed package does: pip compiles
reader and every dependency at install, and ``monitor/`` is compiled here first (where
PYTHONDONTWRITEBYTECODE is set, as on these machines, Python would otherwise compile
feed-monitor's 40 modules from source on every start: 80 ms of each warm run).

Cold: empty databases, every feed new. Warm: the same databases again, every feed
answering 304 Not Modified. 5 cold runs and 15 warm runs each, the contenders taking turns
(in reverse order every other turn); times are medians, ratios the median of each run over
the neighbouring run of the other. A cold run is feed-monitor's first with its config: the
config is validated (a later run reads it from the cache, ``monitor.config_load``).
"""

from __future__ import annotations

import compileall
import glob
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
FEEDS, ITEMS, RUNS = 400, 25, 5
SITES = [f"127.0.0.{n}" for n in range(2, 22)]  # 20 sites, 20 feeds each
WARM_REPEATS = 3  # warm runs per cold run
READER_VERSION = "3.27"
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
    """Serves the feeds with ETags on ``address``, and receives alerts on /alerts."""

    def __init__(self, feeds: dict[str, bytes], address: str = "127.0.0.1") -> None:
        self.address = address
        self.alerts = 0
        tags = {path: etag(body) for path, body in feeds.items()}
        self.tags = tags
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real servers set it: without it a small response waits
            # for the client's delayed ACK (40 ms on Linux) and every client looks slow.
            disable_nagle_algorithm = True

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

        self.httpd = Listener((address, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def urls(self, feeds: dict[str, bytes]) -> list[str]:
        return [f"http://{self.address}:{self.port}{path}" for path in feeds]


class Sites:
    """One server per loopback address; feed ``n`` lives on site ``n % len(addresses)``."""

    def __init__(self, feeds: dict[str, bytes], addresses: list[str]) -> None:
        paths = list(feeds)
        self.servers = [
            Server({path: feeds[path] for path in paths[n :: len(addresses)]}, address)
            for n, address in enumerate(addresses)
        ]
        # Every URL with the ETag its feed is served with, in the order of ``feeds``.
        self.urls: list[str] = []
        self.tags: list[str] = []
        for n, path in enumerate(paths):
            server = self.servers[n % len(addresses)]
            self.urls.append(f"http://{server.address}:{server.port}{path}")
            self.tags.append(server.tags[path])

    @property
    def alerts(self) -> int:
        return sum(server.alerts for server in self.servers)

    @property
    def alert_url(self) -> str:
        first = self.servers[0]
        return f"json://{first.address}:{first.port}/alerts"


def timed(command: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def feed_monitor_config(directory: Path, urls: list[str], alert_url: str) -> Path:
    """The config a user writes: feeds, a watchlist, a target; every setting at its default."""
    path = directory / "monitor.yaml"
    path.write_text(
        json.dumps(  # JSON is YAML
            {
                "database": "monitor.db",
                "feeds": [{"url": url} for url in urls],
                "watchlists": [{"name": "turkey", "keywords": ["S-400", "CAATSA", "F-35"]}],
                "notify": [alert_url],
            }
        )
    )
    return path


def python312() -> str:
    """A Python 3.12 or newer interpreter for reader (3.27 needs it)."""
    candidates = [
        shutil.which("python3.13"),
        shutil.which("python3.12"),
        *sorted(glob.glob("/root/.pyenv/versions/3.1[23]*/bin/python3"), reverse=True),
        *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.1[23]*/bin/python3")), reverse=True),
    ]
    check = "import sys; assert sys.version_info >= (3, 12)"
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", check], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit("reader 3.27 needs Python 3.12 or newer; none found (python3.12 on PATH?)")


def ensure_reader() -> None:
    """.venv/reader with the pinned reader; remade when it holds another version."""
    if READER_PYTHON.exists():
        probe = "import importlib.metadata as m; print(m.version('reader'))"
        found = subprocess.run([str(READER_PYTHON), "-c", probe], capture_output=True, text=True)
        if found.stdout.strip() == READER_VERSION:
            return
        shutil.rmtree(READER_PYTHON.parent.parent)
    subprocess.run([python312(), "-m", "venv", str(READER_PYTHON.parent.parent)], check=True)
    subprocess.run(
        [str(READER_PYTHON), "-m", "pip", "install", "--quiet", "-r",
         str(ROOT / "benchmarks" / "reader.lock")],
        check=True,
    )  # fmt: skip


def main() -> None:
    ensure_reader()
    compileall.compile_dir(ROOT / "monitor", quiet=1)
    feeds = make_feeds(random.Random(5))
    sites = Sites(feeds, SITES)
    urls = sites.urls
    size = sum(map(len, feeds.values())) / 1e6
    monitor = [sys.executable, "-m", "monitor", "once", "--config"]
    results: dict[str, dict[str, list[float]]] = {
        name: {"cold": [], "warm": []} for name in ("feed-monitor", "reader", "floor")
    }
    # The floor's requests: plain (cold), or conditional, every one answered 304 (warm).
    floor = {
        "cold": [sys.executable, "-c", FLOOR_SCRIPT, *urls],
        "warm": [sys.executable, "-c", FLOOR_SCRIPT,
                 *(f"{url} {tag}" for url, tag in zip(urls, sites.tags, strict=True))],
    }  # fmt: skip
    for run in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            config = feed_monitor_config(directory, urls, sites.alert_url)
            reader = [str(READER_PYTHON), "-c", READER_SCRIPT, str(directory / "reader.db")]
            commands = {
                "feed-monitor": ([*monitor, str(config)], {"cwd": ROOT}),
                "reader": ([*reader, *urls], {}),
            }
            # A warm run changes nothing, so it is repeated: short runs are the noisy ones.
            # The three contenders take turns, so that the machine's changing speed (it
            # varies by a third here within minutes) falls on all of them alike; and they
            # swap places every other turn, so that a drift during a turn does too.
            for turn, phase in enumerate(("cold", *["warm"] * WARM_REPEATS)):
                order = ["feed-monitor", "reader", "floor"]
                for name in order if (run + turn) % 2 == 0 else reversed(order):
                    command, options = commands.get(name, (floor[phase], {}))
                    results[name][phase].append(timed(command, **options))
            shutil.rmtree(directory, ignore_errors=True)

    def median(name: str, phase: str) -> float:
        return statistics.median(results[name][phase])

    def ratio(name: str, other: str, phase: str) -> tuple[float, float, float]:
        """The median, lowest and highest of the ratios of runs made one after the other:
        the machine's speed changes between minutes more than between neighbours."""
        pairs = [a / b for a, b in zip(results[name][phase], results[other][phase], strict=True)]
        return statistics.median(pairs), min(pairs), max(pairs)

    print(
        f"Polling {FEEDS} feeds of {ITEMS} items ({size:.1f} MB) from {len(SITES)} local sites; "
        f"shipped defaults; whole processes taking turns, {RUNS} cold and {RUNS * WARM_REPEATS} "
        f"warm runs each (times: medians; ratios: median of each run over its neighbour's, "
        f"lowest–highest); {sites.alerts // RUNS} alerts per cold run"
    )
    print()
    print(f"| run | feed-monitor (s) | reader {READER_VERSION} (s) | download only (s) | "
          "feed-monitor / reader | feed-monitor / download |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for phase in ("cold", "warm"):
        fm, rd, fl = median("feed-monitor", phase), median("reader", phase), median("floor", phase)
        by_reader, by_floor = (
            ratio("feed-monitor", "reader", phase),
            ratio("feed-monitor", "floor", phase),
        )
        print(f"| {phase} | {fm:.2f} | {rd:.2f} | {fl:.2f} | "
              f"{by_reader[0]:.2f} ({by_reader[1]:.2f}–{by_reader[2]:.2f}) | "
              f"{by_floor[0]:.2f} ({by_floor[1]:.2f}–{by_floor[2]:.2f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
