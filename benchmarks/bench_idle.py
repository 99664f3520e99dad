"""An idle daemon with 1,000 feeds: resident memory and CPU between polls.

Starts ``feed-monitor run`` with the shipped defaults on 1,000 feeds served by 20 local
sites (25 items each), waits until every feed has been polled once, then samples the
daemon and its helper processes from /proc for 30 seconds in which no poll is due, once
the parser workers have been idle long enough to stop (``IDLE_EXIT_AFTER``).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_poll import ROOT, SITES, Sites, make_feeds
from monitor.parser_pool import IDLE_EXIT_AFTER

FEEDS = 1000
SAMPLE_SECONDS = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ...: parser workers are forked by a fork server."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    direct = [int(child) for child in path.read_text().split()] if path.exists() else []
    return [grand for child in direct for grand in (child, *descendants(child))]


def main() -> None:
    feeds = make_feeds(random.Random(9))
    paths = list(feeds)
    many = {f"/f{n}{paths[n % len(paths)]}": feeds[paths[n % len(paths)]] for n in range(FEEDS)}
    sites = Sites(many, SITES)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "monitor.yaml"
        config.write_text(json.dumps({
            "database": "monitor.db",
            "defaults": {"interval": "1h", "jitter": "1m"},
            "feeds": [{"url": url} for url in sites.urls],
            "watchlists": [{"name": "w", "keywords": ["S-400", "CAATSA", "F-35"]}],
            "notify": [sites.alert_url],
        }))  # fmt: skip
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                time.sleep(1)
                try:
                    with sqlite3.connect(Path(tmp) / "monitor.db") as db:
                        polled = db.execute(
                            "SELECT count(*) FROM feeds WHERE last_polled_at IS NOT NULL"
                        ).fetchone()[0]
                except sqlite3.Error:
                    continue
                if polled >= FEEDS:
                    break
            time.sleep(2)  # let the last deliveries and the search index settle
            busy = [daemon.pid, *descendants(daemon.pid)]
            busy_rss = sum(rss_mb(pid) for pid in busy)
            # Parser workers stop after IDLE_EXIT_AFTER seconds without a feed to parse.
            time.sleep(IDLE_EXIT_AFTER + 5)
            pids = [daemon.pid, *descendants(daemon.pid)]
            before = {pid: cpu_seconds(pid) for pid in pids}
            time.sleep(SAMPLE_SECONDS)
            cpu = sum(cpu_seconds(pid) - before[pid] for pid in pids) / SAMPLE_SECONDS
            own = rss_mb(daemon.pid)
            workers = sum(rss_mb(pid) for pid in pids[1:])
        finally:
            daemon.terminate()
            daemon.wait(60)
    print(
        f"Idle daemon, {FEEDS} feeds, every one polled once; measured after "
        f"{IDLE_EXIT_AFTER + 5:.0f} s with nothing to parse, over {SAMPLE_SECONDS:.0f} s idle"
    )
    print()
    print("| whole tree just after polling | daemon RSS idle | helper processes RSS idle | "
          "whole tree idle | CPU while idle (daemon + helpers) |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: |")
    helpers = len(pids) - 1
    print(
        f"| {busy_rss:.0f} MB ({len(busy)} processes) | {own:.0f} MB | {workers:.0f} MB "
        f"({helpers} processes) | {own + workers:.0f} MB | {cpu * 100:.2f}% of a core |"
    )


if __name__ == "__main__":
    main()
