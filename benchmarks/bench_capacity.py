"""Capacity of one machine: how many feeds the daemon keeps polling on time, and at what cost.

``feed-monitor run`` with the shipped defaults (no ``concurrency`` or ``per_host``
override) polls N feeds spread over 250 sites (loopback addresses 127.0.1.1 to
127.0.1.250) served by ``benchmarks/capacity_server.py`` in its own process: every
response takes 50 to 300 ms, and a tenth of the feeds change in each cycle (a new item
on top of 25); the rest answer 304.

Time is scaled down 15 times so that a run takes minutes: a 1-minute interval with N/15
feeds is the same poll rate as N feeds at 15 minutes, and the jitter (30 s) and the
lateness allowed (60 s) are scaled with it (2 s and 4 s). Timeline, in cycles of one
interval: cycles 0-2 warm up (cycle 0 is the cold start: every feed new, 25 stories
each), cycle 3 is quiet (no feed changes: every poll is a 304), cycles 4-5 change. From
the server's log of requests: the lateness of each poll (the gap since the feed's previous
poll, less the interval and the jitter), over cycles 3-5; from /proc: the CPU of the
daemon and its helpers in the quiet cycle (per unchanged poll) and the changing ones (per
changed poll, once the unchanged polls' share is taken out), and the largest resident
memory of the daemon plus its helpers.

reader beside it, on the same server with the same feeds: ``update_feeds(workers=16)`` in
a loop (how reader users run it), its update interval set to 1 minute.

``make bench BENCH=capacity`` runs feed-monitor at 100,000 and 200,000 feeds per 15
minutes and reader at 100,000; ``CAPACITY_FEEDS=150000,300000`` picks other sizes.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from benchmarks.bench_idle import cpu_seconds, descendants, rss_mb
from benchmarks.bench_poll import READER_PYTHON, READER_VERSION, ROOT, ensure_reader
from benchmarks.capacity_server import host_address

SCALE = 15  # a 1-minute cycle stands for a 15-minute one
INTERVAL = 60.0
JITTER = 30.0 / SCALE
ALLOWED_LATENESS = 60.0 / SCALE
HOSTS = 250
CHANGE_EVERY = 10  # a tenth of the feeds change in each cycle
WARMUP, QUIET, CHANGING = 3, 1, 2  # cycles (the cold start needs a few)
START_DELAY = 5.0  # for the contender to start before cycle 0
LINGER = 5.0  # the server outlives the measured cycles, so the contender stops first
SAMPLE_EVERY = 2.0  # resident memory is sampled this often
DEFAULT_SIZES = (100_000, 200_000)  # feeds per 15 minutes
FULL_SIZE_SECONDS = 120.0

READER_SCRIPT = """
import sys, time
from reader import make_reader
database, urls, stop_at = sys.argv[1], open(sys.argv[2]).read().split(), float(sys.argv[3])
reader = make_reader(database)
reader.set_tag((), ".reader.update", {"interval": 1})  # minutes: the scaled 15-minute cycle
for url in urls:
    reader.add_feed(url, exist_ok=True)
while time.time() < stop_at:
    reader.update_feeds(workers=16)
    time.sleep(0.5)
"""


@dataclass
class Result:
    contender: str
    per_15min: int
    feeds: int
    polls_per_s: float
    on_time: float  # share of polls within the allowed lateness
    p99_late: float
    unpolled: int  # feeds never polled in the measured cycles
    cpu_unchanged_ms: float
    cpu_changed_ms: float
    cpu_share: float  # cores, over the measured cycles
    rss_mb: float
    processes: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((host_address(0), 0))
        port: int = sock.getsockname()[1]
        return port


Started = tuple[subprocess.Popen[bytes], list[str], int, float]


def start_server(directory: Path, feeds: int, interval: float, seconds: float,
                 quiet: list[int]) -> Started:  # fmt: skip
    """The simulated sites in their own process; returns it, the feed URLs, the port and
    the wall-clock time of cycle 0."""
    port = free_port()
    urls = [f"http://{host_address(n % HOSTS)}:{port}/f/{n}" for n in range(feeds)]
    start = time.time() + START_DELAY
    spec = {
        "start": start,
        "interval": interval,
        "change_every": CHANGE_EVERY,
        "quiet": quiet,
        "hosts": HOSTS,
        "port": port,
        "min_delay": 0.05,
        "max_delay": 0.3,
        "duration": seconds + LINGER,
        "log": str(directory / "requests.json"),
        "ready": str(directory / "ready"),
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.capacity_server", str(directory / "spec.json")],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not (directory / "ready").exists():
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the capacity server did not start")
        time.sleep(0.05)  # waiting on a condition with a deadline
    return server, urls, port, start


def watch(process: subprocess.Popen[bytes], until: float,
          on_cpu: Callable[[float, float], None]) -> tuple[float, int]:  # fmt: skip
    """Sample the process tree until ``until``: CPU seconds to ``on_cpu(now, cpu)``; returns
    the peak resident memory (MB) of the whole tree and how many processes it had then."""
    peak_rss, processes = 0.0, 1
    while time.time() < until and process.poll() is None:
        pids = [process.pid, *descendants(process.pid)]
        on_cpu(time.time(), sum(_safe(cpu_seconds, pid) for pid in pids))
        rss = sum(_safe(rss_mb, pid) for pid in pids)
        if rss > peak_rss:
            peak_rss, processes = rss, len(pids)
        time.sleep(SAMPLE_EVERY)
    return peak_rss, processes


def stop(process: subprocess.Popen[bytes], server: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
    server.wait(60)


def measure(contender: str, per_15min: int, directory: Path) -> Result:
    feeds = per_15min // SCALE
    cycles = WARMUP + QUIET + CHANGING
    quiet = list(range(WARMUP, WARMUP + QUIET))
    server, urls, port, start = start_server(directory, feeds, INTERVAL, cycles * INTERVAL, quiet)
    end = start + cycles * INTERVAL
    command = contender_command(contender, urls, directory, end, port)
    with open(directory / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    marks: dict[int, float] = {}  # cycle -> CPU seconds of the process tree at its start

    def mark(now: float, cpu: float) -> None:
        cycle = int((now - start) // INTERVAL)
        if cycle >= WARMUP and cycle not in marks:
            marks[cycle] = cpu
        marks[cycles] = cpu  # the latest sample stands for the end

    try:
        peak_rss, processes = watch(process, end, mark)
    finally:
        stop(process, server)
    log = json.loads((directory / "requests.json").read_text())["requests"]
    return summarize(contender, per_15min, feeds, start, log, marks, peak_rss, processes)


def full_size(feeds: int, seconds: float, directory: Path) -> tuple[float, int, float, int]:
    """The daemon with ``feeds`` feeds at the shipped 15-minute interval, unscaled, from a
    cold start (every feed due at once): peak memory of the process tree, its process
    count, polls a second and polls done in ``seconds``."""
    server, urls, port, start = start_server(directory, feeds, 900.0, seconds, [])
    config = directory / "monitor.yaml"
    config.write_text(json.dumps({  # JSON is YAML; everything else is the shipped default
        "database": "monitor.db",
        "feeds": [{"url": url} for url in urls],
        "watchlists": [{"name": "w", "keywords": ["S-400", "CAATSA", "F-35"]}],
        "notify": [f"json://{host_address(0)}:{port}/alerts"],
    }))  # fmt: skip
    command = [sys.executable, "-m", "monitor", "run", "--config", str(config)]
    with open(directory / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        peak_rss, processes = watch(process, start + seconds, lambda now, cpu: None)
    finally:
        stop(process, server)
    log = json.loads((directory / "requests.json").read_text())["requests"]
    polls = sum(1 for _, when, _ in log if start <= when < start + seconds)
    return peak_rss, processes, polls / seconds, polls


def _safe(read: object, pid: int) -> float:
    try:
        return float(read(pid))  # type: ignore[operator]
    except (OSError, IndexError, ValueError):
        return 0.0  # the process ended between listing and reading


def summarize(contender: str, per_15min: int, feeds: int, start: float,
              log: list[list[float]], marks: dict[int, float], peak_rss: float,
              processes: int) -> Result:  # fmt: skip
    measured_from = start + WARMUP * INTERVAL
    end = start + (WARMUP + QUIET + CHANGING) * INTERVAL
    polls: dict[int, list[float]] = defaultdict(list)
    unchanged = {"quiet": 0, "changing": 0}
    changed = 0
    quiet_end = measured_from + QUIET * INTERVAL
    for feed, when, status in log:
        polls[int(feed)].append(when)
        if when < measured_from:
            continue
        window = "quiet" if when < quiet_end else "changing"
        if status == 304:
            unchanged[window] += 1
        elif window == "changing":
            changed += 1
    late: list[float] = []
    unpolled = 0
    for feed in range(feeds):
        times = sorted(polls.get(feed, []))
        inside = [t for t in times if t >= measured_from]
        if not inside:
            unpolled += 1
            # Never polled in the measured cycles: as late as the whole window.
            late.append(end - max([measured_from, *times]) - INTERVAL - JITTER)
            continue
        chain = [t for t in times if t < measured_from][-1:] + inside
        late.extend(later - earlier - INTERVAL - JITTER for earlier, later in pairwise(chain))
        # A feed whose last poll is long before the end is late too (not polled again).
        late.append(end - inside[-1] - INTERVAL - JITTER)
    late = [max(0.0, value) for value in late]
    cpu_quiet = marks.get(WARMUP + QUIET, 0.0) - marks.get(WARMUP, 0.0)
    cpu_changing = marks.get(WARMUP + QUIET + CHANGING, 0.0) - marks.get(WARMUP + QUIET, 0.0)
    per_unchanged = cpu_quiet / unchanged["quiet"] if unchanged["quiet"] else 0.0
    per_changed = (
        (cpu_changing - per_unchanged * unchanged["changing"]) / changed if changed else 0.0
    )
    measured_polls = unchanged["quiet"] + unchanged["changing"] + changed
    span = end - measured_from
    return Result(
        contender=contender,
        per_15min=per_15min,
        feeds=feeds,
        polls_per_s=measured_polls / span,
        on_time=sum(1 for value in late if value <= ALLOWED_LATENESS) / max(1, len(late)),
        p99_late=statistics.quantiles(late, n=100)[98] if len(late) > 1 else 0.0,
        unpolled=unpolled,
        cpu_unchanged_ms=per_unchanged * 1000,
        cpu_changed_ms=per_changed * 1000,
        cpu_share=(cpu_quiet + cpu_changing) / span,
        rss_mb=peak_rss,
        processes=processes,
    )


def changed_ms(result: Result) -> str:
    # A contender that has not caught up with the cold start is still working on earlier
    # cycles' changes in the quiet one, which makes this difference meaningless.
    return f"{result.cpu_changed_ms:.1f} ms" if result.cpu_changed_ms > 0 else "n/a (behind)"


def contender_command(contender: str, urls: list[str], directory: Path, stop_at: float,
                      port: int) -> list[str]:  # fmt: skip
    if contender == "reader":
        (directory / "urls.txt").write_text("\n".join(urls))
        return [str(READER_PYTHON), "-c", READER_SCRIPT, str(directory / "reader.db"),
                str(directory / "urls.txt"), str(stop_at)]  # fmt: skip
    config = directory / "monitor.yaml"
    config.write_text(json.dumps({  # JSON is YAML; every other setting is the shipped default
        "database": "monitor.db",
        "defaults": {"interval": f"{INTERVAL:g}s", "jitter": f"{JITTER:g}s",
                     "min_interval": f"{INTERVAL:g}s", "adaptive": False},
        "feeds": [{"url": url} for url in urls],
        "watchlists": [{"name": "w", "keywords": ["S-400", "CAATSA", "F-35"]}],
        "notify": [f"json://{host_address(0)}:{port}/alerts"],
    }))  # fmt: skip
    return [sys.executable, "-m", "monitor", "run", "--config", str(config)]


def main() -> None:
    ensure_reader()
    sizes = [int(size) for size in os.environ.get("CAPACITY_FEEDS", "").split(",") if size]
    runs = [("feed-monitor", size) for size in sizes or DEFAULT_SIZES]
    runs.append(("reader", min(size for _, size in runs)))
    results = []
    for contender, size in runs:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure(contender, size, Path(tmp)))
    full_feeds = min(size for _, size in runs)
    with tempfile.TemporaryDirectory() as tmp:
        full_rss, full_processes, full_rate, full_polls = full_size(
            full_feeds, FULL_SIZE_SECONDS, Path(tmp)
        )
    print(
        f"Capacity: the daemon against {HOSTS} local sites (responses 50-300 ms, a tenth of "
        f"the feeds changing each cycle), time scaled {SCALE}x (1-minute cycles with N/{SCALE} "
        f"feeds; jitter {JITTER:g} s; on time = at most {ALLOWED_LATENESS:g} s late, 60 s at "
        "15 minutes); shipped defaults"
    )
    print()
    print("| contender | feeds per 15 min | polls/s | on time | p99 lateness (scaled s) | "
          "CPU per unchanged poll | CPU per changed poll | CPU (cores) | "
          "peak RSS, all processes |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        name = r.contender if r.contender == "feed-monitor" else f"reader {READER_VERSION}"
        print(
            f"| {name} | {r.per_15min:,} | {r.polls_per_s:.0f} | {r.on_time:.1%} | "
            f"{r.p99_late:.1f} | {r.cpu_unchanged_ms:.2f} ms | {changed_ms(r)} | "
            f"{r.cpu_share:.2f} | {r.rss_mb:.0f} MB ({r.processes} processes) |"
        )

    print()
    print(
        f"Memory at full size: {full_feeds:,} feeds at the shipped 15-minute interval, not "
        f"scaled, from a cold start (every feed due at once), the first {FULL_SIZE_SECONDS:g} s"
    )
    print()
    print("| feeds | polls in the first minutes | polls/s | peak RSS, all processes |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {full_feeds:,} | {full_polls:,} | {full_rate:.0f} | "
          f"{full_rss:.0f} MB ({full_processes} processes) |")  # fmt: skip


if __name__ == "__main__":
    main()
