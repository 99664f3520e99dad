"""The parser workers: ``parse_feed`` run in worker processes, started when first needed
and stopped when idle.

feedparser is pure Python, so threads would parse on one core; processes use them all.
Workers are spawned (not forked: a fork would copy the daemon's threads and their
locks), import only ``monitor.parse``, die with the daemon (``parse.start_worker``), and
have a memory cap.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from monitor.errors import ParseError
from monitor.models import ParsedFeed
from monitor.parse import parse_feed, start_worker

log = logging.getLogger(__name__)

IDLE_EXIT_AFTER = 60.0  # seconds without a feed to parse before the workers stop


class ParserPool:
    """Runs ``parse_feed`` in worker processes.

    feedparser is pure Python, so threads would parse on one core; processes use them
    all (measured by benchmarks/bench_poll.py). Each worker also has a memory limit, so a
    feed that still found a way to blow up the parser costs a worker, not the daemon:
    the pool is restarted, the feeds that were parsing are retried once, and the feed
    that breaks it again gets a ``ParseError``.
    """

    def __init__(
        self,
        workers: int | None = None,
        memory_limit: int = 2 << 30,
        idle_exit_after: float | None = IDLE_EXIT_AFTER,
    ) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.memory_limit = memory_limit
        # Workers stop after this long without a feed to parse, and start again on the
        # next one (about 0.3 s of CPU each): an idle daemon holds no parser in memory.
        self.idle_exit_after = idle_exit_after
        self._pool: ProcessPoolExecutor | None = None  # started on first use: a run where
        # every feed answers 304 never pays for starting workers
        self._parsing = 0
        self._idle_timer: asyncio.TimerHandle | None = None

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: a fork would copy the daemon's threads and their locks. No
        # fork server either: it is one more process that outlives a killed daemon, and
        # its workers are its children, not ours, so they could not watch our death.
        # Each worker imports feedparser once and then lives as long as the pool.
        _start_resource_tracker()
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_worker,
            initargs=(os.getpid(), self.memory_limit),
        )

    async def parse(
        self, body: bytes, *, url: str, content_type: str | None, now: float
    ) -> ParsedFeed:
        loop = asyncio.get_running_loop()
        job = partial(parse_feed, body, url=url, content_type=content_type, now=now)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._parsing += 1
        try:
            return await self._parse(loop, job)
        finally:
            self._parsing -= 1
            if self._parsing == 0 and self.idle_exit_after is not None:
                self._idle_timer = loop.call_later(self.idle_exit_after, self._stop_idle)

    async def _parse(self, loop: asyncio.AbstractEventLoop, job: partial[ParsedFeed]) -> ParsedFeed:
        for attempt in range(2):
            if self._pool is None:
                self._pool = self._start()
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, job)
            except MemoryError:
                raise ParseError("the feed needs more memory than a parser may use") from None
            except BrokenProcessPool:
                if self._pool is pool:  # the first to notice restarts it
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._start()
                if attempt:
                    raise ParseError(
                        "the parser ran out of memory or crashed on this feed"
                    ) from None
        raise AssertionError("unreachable")

    def _stop_idle(self) -> None:
        self._idle_timer = None
        if self._parsing == 0 and self._pool is not None:
            log.debug("parser workers idle for %.0f s: stopped", self.idle_exit_after)
            self.release()

    def release(self) -> None:
        """Let the workers exit now, without waiting for them (``close`` waits): for a
        run that has parsed all it will, so that they leave while it does the rest.
        A later ``parse`` starts new ones."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=False)

    def worker_pids(self) -> list[int]:
        """The running workers' process ids (none before the first parse or when idle)."""
        return [] if self._pool is None else list(self._pool._processes or {})

    def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, deaf to SIGHUP. It ignores Ctrl-C and
    SIGTERM itself, but a HUP to the whole process group (``timeout``, a closing
    terminal) would kill it, and its death makes the daemon's shutdown print tracebacks.
    A signal ignored when a process starts stays ignored in it."""
    from multiprocessing import resource_tracker

    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()  # signal dispositions are the main thread's
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)
