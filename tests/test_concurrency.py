"""How many polls run at once: the default grows with the machine's room, a set value holds,
and a site's queue never takes the slots other sites could use.

Real servers on loopback addresses (one per site) hold every request at a gate until the
test has seen how many arrive together; then they all answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from monitor.concurrency import CEILING, Headroom, PollLimit, next_limit
from monitor.config_load import load_config
from monitor.runtime import open_runtime
from tests.helpers import rss, write_config
from tests.servers import QuietHandler, serving

BODY = rss([{"title": "One story", "link": "https://example.org/1", "guid": "1"}]).encode()
ROOMY = Headroom(loop_lag=0.001, cpu=0.1, rss=50 << 20)


class Gate:
    """Requests in flight at the sites; each is held until ``release``."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.in_flight = 0
        self.peak = 0
        self.paths: list[str] = []
        self.opened = False

    def arrive(self, path: str) -> None:
        with self.cond:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.paths.append(path)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.opened, timeout=20)
            self.in_flight -= 1

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def release(self) -> None:
        with self.cond:
            self.opened = True
            self.cond.notify_all()


@contextmanager
def sites(count: int, gate: Gate) -> Iterator[list[str]]:
    """One server per loopback address 127.0.0.2, 127.0.0.3, ...; yields their base URLs."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            host, _ = self.connection.getsockname()  # the address this site serves on
            gate.arrive(f"{host}{self.path}")
            self.reply(200, BODY, {"Content-Type": "application/rss+xml"})

    with ExitStack() as stack:
        bases = []
        for n in range(count):
            port = stack.enter_context(serving(Handler, f"127.0.0.{n + 2}"))
            bases.append(f"http://127.0.0.{n + 2}:{port}")
        stack.callback(gate.release)  # never leave a handler waiting
        yield bases


def poll_while(config_path: Path, gate: Gate, watch: Callable[[], bool], timeout: float) -> bool:
    """Poll every feed once; meanwhile wait (up to ``timeout``) for ``watch``, then let the
    sites answer. Returns whether ``watch`` came true."""

    async def run() -> bool:
        async with open_runtime(load_config(config_path)) as runtime:
            polls = asyncio.ensure_future(runtime.poller.poll_all())
            seen = await asyncio.to_thread(gate.wait_for, watch, timeout)
            gate.release()
            outcomes = await polls
            # What was seen decides the test; a fetch timing out at the gate is not it.
            assert not seen or all(outcome.ok for outcome in outcomes), outcomes
            return seen

    return asyncio.run(run())


def test_the_default_concurrency_grows_past_its_floor_while_polls_wait(tmp_path: Path) -> None:
    """Slow sites, many feeds: with no `concurrency` set, more than 16 polls run at once."""
    gate = Gate()
    with sites(32, gate) as bases:
        urls = [f"{base}/feed/{n}.xml" for base in bases for n in range(2)]  # per_host 2 each
        config = write_config(tmp_path, feeds=urls)
        grew = poll_while(config, gate, lambda: gate.in_flight >= 48, timeout=4)
    assert grew, f"at most {gate.peak} polls at once"
    assert gate.peak <= 64  # never more than per_host allows: 2 on each of 32 sites


def test_a_concurrency_the_user_set_is_kept(tmp_path: Path) -> None:
    gate = Gate()
    with sites(8, gate) as bases:
        urls = [f"{base}/feed/{n}.xml" for base in bases for n in range(2)]
        config = write_config(tmp_path, feeds=urls, extra="concurrency: 4")
        # Long enough for several of the limit's measurements: it must not grow.
        grew = poll_while(config, gate, lambda: gate.in_flight > 4, timeout=2.0)
    assert not grew
    assert gate.peak == 4


def test_a_poll_waiting_for_its_site_takes_no_slot_from_other_sites(tmp_path: Path) -> None:
    """Three feeds on a site allowing one request at a time, one feed elsewhere, two slots:
    the other site's feed is fetched at once, not after the busy site's queue."""
    gate = Gate()
    with sites(2, gate) as (busy, other):
        urls = [f"{busy}/a.xml", f"{busy}/b.xml", f"{busy}/c.xml", f"{other}/d.xml"]
        config = write_config(tmp_path, feeds=urls, extra="concurrency: 2\nper_host: 1")
        together = poll_while(config, gate, lambda: gate.in_flight == 2, timeout=3)
    assert together, f"requests held together: {gate.peak}; order: {gate.paths}"
    assert {path.rsplit("/", 1)[1] for path in gate.paths[:2]} == {"a.xml", "d.xml"}


def test_the_limit_doubles_only_when_polls_wait_and_the_process_has_room() -> None:
    assert next_limit(16, waiting=5, headroom=ROOMY, floor=16, ceiling=256) == 32
    assert next_limit(16, waiting=0, headroom=ROOMY, floor=16, ceiling=256) == 16
    assert next_limit(200, waiting=5, headroom=ROOMY, floor=16, ceiling=256) == 256
    busy_loop = Headroom(loop_lag=0.1, cpu=0.1, rss=50 << 20)
    assert next_limit(64, waiting=5, headroom=busy_loop, floor=16, ceiling=256) == 64


def test_the_limit_falls_back_when_cpu_loop_or_memory_run_short() -> None:
    for short in (
        Headroom(loop_lag=0.5, cpu=0.1, rss=50 << 20),
        Headroom(loop_lag=0.001, cpu=0.95, rss=50 << 20),
        Headroom(loop_lag=0.001, cpu=0.1, rss=2 << 30),
    ):
        assert next_limit(64, waiting=5, headroom=short, floor=16, ceiling=256) == 48
        assert next_limit(16, waiting=5, headroom=short, floor=16, ceiling=256) == 16


def test_a_fixed_limit_has_no_room_to_move() -> None:
    assert PollLimit(8, adaptive=False).ceiling == 8
    assert 8 <= PollLimit(8, adaptive=True).ceiling <= CEILING


def test_many_feeds_due_at_start_are_spread_not_started_at_once(tmp_path: Path) -> None:
    """A first start with thousands of feeds: their first polls are spread at about
    START_RATE a second (within their interval), not all queued in the first seconds,
    where each would wait as a task holding memory."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from monitor.daemon import START_RATE, START_SPREAD, Daemon

    urls = [f"http://127.0.0.1:9/feed/{n}.xml" for n in range(2000)]  # never fetched here
    path = write_config(tmp_path, feeds=urls, defaults="{interval: 15m, jitter: 30s}")
    config = load_config(path)

    async def first_polls() -> list[float]:
        daemon = Daemon(path, config)
        async with open_runtime(config) as runtime:
            daemon.runtime = runtime
            daemon.scheduler = AsyncIOScheduler()
            now = daemon.clock()
            daemon._schedule_feeds(config.feeds)
            return [job.next_run_time.timestamp() - now for job in daemon.scheduler.get_jobs()]

    delays = asyncio.run(first_polls())
    assert len(delays) == len(urls)
    window = len(urls) / START_RATE  # 40 s
    assert max(delays) <= window + 1
    # Uniform over the window: about half of them after its middle, none crowded early.
    assert sum(1 for delay in delays if delay > START_SPREAD) > len(urls) / 2
