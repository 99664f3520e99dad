"""How many polls run at once: a limit that grows while the machine has room for more.

Polls spend most of their time waiting for remote servers, so a fixed limit caps a
machine's throughput at ``limit / response time`` (16 polls at once and 1 s responses:
16 polls a second, about 15,000 feeds per 15 minutes) while its CPU idles. ``PollLimit``
starts at a floor and, while polls queue for a slot, doubles (up to a ceiling) as long as
the process has headroom: its event loop answers on time, its CPU is not saturated and
its memory is within budget. When one of those runs short, the limit falls back by a
quarter, never below the floor. Politeness to each site is ``per_host``'s job, apart.

``next_limit`` is the pure decision; ``PollLimit`` measures and applies it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
import time
from pathlib import Path
from types import TracebackType

from msgspec import Struct

log = logging.getLogger(__name__)

CEILING = 256  # polls at once at most, whatever the headroom
TICK = 0.5  # seconds between measurements while polls are waiting or running
MEMORY_BUDGET = 300 * 1024 * 1024  # resident bytes of this process; over it: no growth
_LAG_OK, _LAG_BAD = 0.05, 0.25  # event-loop lateness (s): room to grow / too busy
_CPU_OK, _CPU_BAD = 0.7, 0.9  # this process's CPU, in cores (its loop runs on one)


class Headroom(Struct, frozen=True):
    """What one tick measured."""

    loop_lag: float  # seconds a timer fired late
    cpu: float  # this process's CPU time per wall second over the tick
    rss: int  # resident bytes


def next_limit(limit: int, *, waiting: int, headroom: Headroom, floor: int, ceiling: int) -> int:
    """The limit for the next tick."""
    if headroom.loop_lag > _LAG_BAD or headroom.cpu > _CPU_BAD or headroom.rss > MEMORY_BUDGET:
        return max(floor, limit - max(1, limit // 4))
    if waiting and headroom.loop_lag < _LAG_OK and headroom.cpu < _CPU_OK:
        return min(ceiling, limit * 2)
    return limit


def resident_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ceiling_for_files(ceiling: int) -> int:
    """Each poll holds a socket; leave most file descriptors for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(1, min(ceiling, soft // 4))


class PollLimit:
    """An async context manager admitting at most ``limit`` holders at once.

    With ``adaptive`` the limit moves between ``floor`` and ``ceiling`` as ``next_limit``
    decides, measured every ``TICK`` while there is work; without, it stays at ``floor``
    (a ``concurrency`` the user set is a promise). Measuring stops when nothing runs, so
    an idle daemon pays nothing.
    """

    def __init__(self, floor: int, *, adaptive: bool, ceiling: int = CEILING) -> None:
        self.floor = floor
        self.ceiling = max(floor, ceiling_for_files(ceiling)) if adaptive else floor
        self.limit = floor
        self.active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ticking: asyncio.AbstractEventLoop | None = None  # the loop measured on
        self._last: tuple[float, float] = (0.0, 0.0)  # (monotonic, CPU seconds) at last tick

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def __aenter__(self) -> None:
        self._start_ticking()
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is handed over by _admit, already counted
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # admitted, then cancelled before using it
            else:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        self.active -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)

    def _start_ticking(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ticking is loop or self.ceiling == self.floor:
            return
        self._ticking = loop
        self._last = (time.monotonic(), time.process_time())
        loop.call_later(TICK, self._tick, loop.time() + TICK)

    def _tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._last
        self._last = (now, cpu)
        headroom = Headroom(
            loop_lag=max(0.0, loop.time() - due),
            cpu=(cpu - cpu_then) / max(now - then, 1e-6),
            rss=resident_bytes(),
        )
        limit = next_limit(
            self.limit, waiting=self.waiting, headroom=headroom,
            floor=self.floor, ceiling=self.ceiling,
        )  # fmt: skip
        if limit != self.limit:
            log.debug("polls at once: %d (was %d; %s, %d waiting)", limit, self.limit,
                      headroom, self.waiting)  # fmt: skip
            self.limit = limit
        self._admit()
        if self.active or self._waiters:
            loop.call_later(TICK, self._tick, loop.time() + TICK)
        else:
            self._ticking = None
            self.limit = self.floor  # the next burst starts from the floor again
