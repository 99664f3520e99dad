"""The daemon: APScheduler runs each feed's poll on its interval; delivery runs beside it.

It schedules the runtime's components (``monitor.runtime``) and owns no other job: each
feed's poll with its health notice (``Runtime.poll``), retention once a day, the search
index, digests, the config and database checks, systemd's status. What it knows of each
feed's schedule it reads from the shared ``PollState`` the Poller reports to.

Scheduling rules (APScheduler 3.11's traps: misfires dropped, unbounded jobs): every job has
``misfire_grace_time=None`` and ``coalesce=True`` so a poll that came due while others ran
is late, never dropped, and ``max_instances=1`` so one feed is never polled twice at
once; the ``Poller``'s semaphore bounds concurrency. Feed state lives in SQLite, so jobs
are rebuilt at start, resuming each feed's schedule where the last run left it.

SIGTERM/SIGINT pause the scheduler, let in-flight polls and sends finish within
``SHUTDOWN_DEADLINE`` and exit; a send stuck inside Apprise is left to its daemon thread
(its claim runs out and it is retried after the restart), so the exit is bounded.
SIGHUP, or any edit of the config file (checked every 2 s), reloads
the config and keeps the old one if the new is bad.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence, Set
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config_load import load_config
from monitor.errors import ConfigError, DatabaseFault, MonitorError
from monitor.pipeline import Clock
from monitor.render import count_of
from monitor.run_config import RunConfig, RunFeed
from monitor.runtime import Runtime, open_runtime, process_lock
from monitor.service import sd_notify, watchdog_interval
from monitor.web import make_app, render_metrics, serve

log = logging.getLogger(__name__)

PRUNE_JOB_ID = "retention"
INDEX_JOB_ID = "search-index"
DIGEST_JOB_PREFIX = "digest:"
CONFIG_WATCH_JOB_ID = "config-watch"
STATUS_JOB_ID = "systemd-status"
STATUS_INTERVAL = 30.0  # STATUS= to systemd this often (more often with a watchdog)
CONFIG_WATCH_INTERVAL = 2.0  # how often the config file is checked for edits
INDEX_INTERVAL = 30.0  # new stories reach the search index in batches, this often
DELIVERY_INTERVAL = 30.0  # a delivery pass at least this often (retries, digests)
DATABASE_CHECK_JOB_ID = "database-check"
DATABASE_CHECK_INTERVAL = 2.0  # how often the database file is checked for replacement
SHUTDOWN_DEADLINE = 30.0
CANCEL_GRACE = 2.0  # seconds for cancelled polls to unwind before the scheduler stops
START_SPREAD = 10.0  # feeds due at start-up are spread over at most this many seconds...
START_RATE = 50.0  # ...or, when there are many, started at about this many a second


def first_poll_at(
    next_poll_at: float | None, now: float, spread: float, rng: random.Random
) -> float:
    """When a feed is first polled after start: its stored schedule, or soon if overdue."""
    if next_poll_at is not None and next_poll_at > now:
        return next_poll_at
    return now + rng.uniform(0, spread)


def config_fingerprint(path: Path) -> str | None:
    """A digest of the config file's content (None if it cannot be read right now)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Daemon:
    """One running feed-monitor service for the config at ``config_path``."""

    def __init__(
        self,
        config_path: Path,
        config: RunConfig,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self._feeds = {feed.url: feed for feed in config.feeds}  # a poll's lookup, O(1)
        self.clock = clock
        self.rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._inflight: set[asyncio.Task[object]] = set()
        self._config_seen = config_fingerprint(config_path)
        self._fault: DatabaseFault | None = None  # why the daemon stopped itself, if it did

    async def run(self) -> None:
        with process_lock(self.config.database, "daemon"):
            async with open_runtime(self.config, clock=self.clock) as runtime:
                self.runtime = runtime
                try:
                    await self._serve(runtime)
                except Exception as exc:
                    fault = runtime.store.fault(exc)  # found while starting: stop as a job would
                    if fault is None:
                        raise
                    raise fault from exc
        log.info("stopped")
        if self._fault is not None:
            raise self._fault  # the CLI reports it and exits 1

    async def _serve(self, runtime: Runtime) -> None:
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self.scheduler = scheduler
        # Delivery runs beside polling, never inside a poll: a stuck target cannot hold
        # up the next poll of any feed.
        delivery = asyncio.create_task(runtime.deliverer.run(DELIVERY_INTERVAL))
        try:
            web_runner = None
            if self.config.http is not None:
                # Bound before any job runs: a port in use ends the start with no poll in
                # flight (cancelling one would only add a traceback to the message).
                app = make_app(self.health, self.metrics)
                web_runner = await serve(app, self.config.http.listen)
            self._schedule_feeds(self.config.feeds)
            scheduler.add_job(
                self._tracked,
                "interval",
                args=[self._prune],
                hours=24,
                id=PRUNE_JOB_ID,
                next_run_time=datetime.fromtimestamp(self.clock() + 3600, UTC),
            )
            scheduler.add_job(
                self._tracked, "interval", args=[self._index], seconds=INDEX_INTERVAL,
                id=INDEX_JOB_ID,
            )  # fmt: skip
            self._schedule_digests()
            scheduler.add_job(
                self._tracked,
                "interval",
                args=[self._check_database],
                seconds=DATABASE_CHECK_INTERVAL,
                id=DATABASE_CHECK_JOB_ID,
            )
            scheduler.add_job(
                self._tracked,
                "interval",
                args=[self._reload_if_edited],
                seconds=CONFIG_WATCH_INTERVAL,
                id=CONFIG_WATCH_JOB_ID,
            )
            watchdog = watchdog_interval()
            scheduler.add_job(
                self._tracked,
                "interval",
                args=[self._report_to_systemd],
                # Petted from the scheduler's own loop: if the loop hangs, systemd
                # sees no WATCHDOG=1 and restarts the service.
                seconds=watchdog / 2 if watchdog else STATUS_INTERVAL,
                id=STATUS_JOB_ID,
            )
            scheduler.start()
            self._install_signal_handlers()
            if self.config.http is not None:
                log.info("serving /healthz and /metrics on http://%s", self.config.http.listen)
            sd_notify("READY=1", f"STATUS={self.health_summary()}")
            log.info(
                "feed-monitor running: %s, %s, database %s",
                count_of(len(self.config.feeds), "feed"),
                count_of(len(self.config.watchlists), "watchlist"),
                self.config.database,
            )
            await self._stop.wait()
            log.info("stopping: waiting for in-flight polls and deliveries")
            sd_notify("STOPPING=1", "STATUS=stopping: finishing in-flight polls and deliveries")
            scheduler.pause()
            if web_runner is not None:
                await web_runner.cleanup()
            await asyncio.gather(
                self._finish_polls(SHUTDOWN_DEADLINE),
                runtime.deliverer.close(SHUTDOWN_DEADLINE),
            )
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
            if scheduler.running:
                scheduler.shutdown(wait=False)

    async def _finish_polls(self, deadline: float) -> None:
        """Let in-flight polls end within ``deadline`` seconds; cancel the rest (a poll
        cancelled before its save is polled again after the restart)."""
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:  # let them unwind (briefly) while the scheduler still runs
                await asyncio.wait(pending, timeout=CANCEL_GRACE)

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, object]:
        """For /healthz and systemd's STATUS: ok while the scheduler runs; the feeds' and
        outbox's state. Only the configured feeds count: the database remembers every
        feed ever polled, and a feed removed from the config is no one's concern."""
        configured = {feed.url for feed in self.config.feeds}
        states = [s for s in self.runtime.poll_state.feeds.values() if s.url in configured]
        counts = self.runtime.store.delivery_counts()
        return {
            "status": "ok" if self.scheduler.running and not self._stop.is_set() else "stopping",
            "feeds": len(self.config.feeds),
            "failing_feeds": sum(1 for s in states if s.error_count and s.gone_at is None),
            "gone_feeds": sum(1 for s in states if s.gone_at is not None),
            "deliveries_pending": counts.get("pending", 0) + counts.get("held", 0),
            "deliveries_due": counts.get("pending", 0),
            "deliveries_held": counts.get("held", 0),
            "deliveries_failed": counts.get("failed", 0),
        }

    def health_summary(self) -> str:
        """One line for systemd's status: feeds and the outbox."""
        h = self.health()
        gone = f", {h['gone_feeds']} gone" if h["gone_feeds"] else ""
        return (
            f"{count_of(int(str(h['feeds'])), 'feed')} ({h['failing_feeds']} failing{gone}); "
            "deliveries: "
            f"{h['deliveries_due']} pending, "
            f"{h['deliveries_held']} held, {h['deliveries_failed']} failed"
        )

    def metrics(self) -> str:
        urls = [feed.url for feed in self.config.feeds]
        return render_metrics(self.runtime.store, self.runtime.poll_state.counters, urls)

    async def _report_to_systemd(self) -> None:
        fields = [f"STATUS={self.health_summary()}"]
        if watchdog_interval():
            fields.append("WATCHDOG=1")
        sd_notify(*fields)

    async def _reload_if_edited(self) -> None:
        """Reload when the file's content changed since it was last read (an editor's
        save, a rename over it); an edit that is refused is not reported again."""
        seen = config_fingerprint(self.config_path)
        if seen != self._config_seen:
            self._config_seen = seen
            log.info("config file changed: reloading")
            self.reload()

    def reload(self) -> None:
        """Load the config file again; keep running on the old one if it is invalid."""
        self._config_seen = config_fingerprint(self.config_path)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config:\n%s", exc)
            return
        if new.database != self.config.database:
            log.warning(
                "database path changes need a restart; still using %s", self.config.database
            )
            new = msgspec.structs.replace(new, database=self.config.database)
        old = self.config
        old_feeds = {feed.url: feed for feed in old.feeds}
        self.config = new
        self._feeds = {feed.url: feed for feed in new.feeds}
        self.runtime.apply_config(new)
        new_urls = {feed.url for feed in new.feeds}
        for url in old_feeds.keys() - new_urls:
            self.scheduler.remove_job(url)
        changed = [
            feed
            for feed in new.feeds
            if feed.url not in old_feeds
            or new.feed_interval(feed) != old.feed_interval(old_feeds[feed.url])
        ]
        for feed in changed:
            if self.scheduler.get_job(feed.url):
                self.scheduler.remove_job(feed.url)
        # A re-timed feed follows its new interval from now: its next poll is no later
        # than one new interval away (the old decision may be hours off).
        self._schedule_feeds(changed, retimed={feed.url for feed in changed} & old_feeds.keys())
        self._schedule_digests()
        log.info(
            "config reloaded: %s, %s",
            count_of(len(new.feeds), "feed"),
            count_of(len(new.watchlists), "watchlist"),
        )
        sd_notify(f"STATUS=config reloaded; {self.health_summary()}")

    def _schedule_digests(self) -> None:
        """A job at each watchlist's digest time sends what was held for it. (The outbox
        job also releases anything overdue, so a digest missed while stopped goes out at
        start.)"""
        for job in self.scheduler.get_jobs():
            if job.id.startswith(DIGEST_JOB_PREFIX):
                job.remove()
        zone = self.config.delivery_policy().zone
        for watchlist in self.config.watchlists:
            schedule = watchlist.digest_schedule
            if schedule is None:
                continue
            trigger: BaseTrigger
            if schedule.cron is not None:
                trigger = CronTrigger.from_crontab(schedule.cron, timezone=zone)
            else:
                assert schedule.every is not None
                trigger = IntervalTrigger(
                    seconds=schedule.every, start_date=datetime.fromtimestamp(0, UTC), timezone=UTC
                )
            self.scheduler.add_job(
                self._nudge_delivery, trigger, id=f"{DIGEST_JOB_PREFIX}{watchlist.name}"
            )

    def _schedule_feeds(self, feeds: Sequence[RunFeed], retimed: Set[str] = frozenset()) -> None:
        now = self.clock()
        states = self.runtime.poll_state.feeds
        due = sum(1 for feed in feeds if (states[feed.url].next_poll_at or 0) <= now)
        # Thousands of feeds due at once (a first start, a long stop) would each wait as a
        # task holding memory: spread them at START_RATE, within each feed's interval.
        spread = max(min(self.config.defaults.jitter, START_SPREAD), due / START_RATE)
        for feed in feeds:
            state = states[feed.url]
            if state.gone_at is not None:
                log.warning("feed %s is gone (HTTP 410) and is not polled", feed.url)
                continue
            interval = state.interval or self.config.feed_interval(feed)
            next_poll_at = state.next_poll_at
            # A feed re-timed by a reload, or with an interval of its own (which a restart
            # may have changed), is polled within one configured interval from now, at a
            # random point of it: re-timing many feeds at once makes no burst.
            if feed.url in retimed or feed.interval is not None:
                interval = self.config.feed_interval(feed)
                next_poll_at = min(next_poll_at or now, now + self.rng.uniform(0, interval))
            start = first_poll_at(next_poll_at, now, min(spread, interval), self.rng)
            self.scheduler.add_job(
                self._tracked,
                IntervalTrigger(seconds=interval, jitter=self.config.defaults.jitter, timezone=UTC),
                args=[self._poll_and_deliver, feed.url],
                id=feed.url,
                name=feed.url,
                next_run_time=datetime.fromtimestamp(start, UTC),
            )

    async def _poll_and_deliver(self, url: str) -> None:
        feed = self._feeds.get(url)
        if feed is None:  # removed by a reload while this run was queued
            return
        outcome = await self.runtime.poll(feed)  # and its health notice, if any
        if self.scheduler.get_job(url) is None:
            pass  # a reload removed the feed while it was being polled
        elif outcome.gone:
            self.scheduler.remove_job(url)
        elif outcome.next_poll_at is not None:
            # The decided interval (adaptive, backed off, or as Retry-After asks) from now on.
            self.scheduler.reschedule_job(
                url,
                trigger=IntervalTrigger(
                    seconds=max(1.0, outcome.next_poll_at - self.clock()),
                    jitter=self.config.defaults.jitter,
                    timezone=UTC,
                ),
            )
        if outcome.alerts_queued or outcome.notices:
            self.runtime.deliverer.nudge()

    async def _nudge_delivery(self) -> None:
        """A digest's time: the delivery loop releases what was held for it."""
        self.runtime.deliverer.nudge()

    async def _prune(self) -> None:
        self.runtime.retention.run()

    async def _index(self) -> None:
        self.runtime.store.index_pending()

    async def _tracked(self, job: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a job, remembering it so shutdown can wait for it; never let it crash."""
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            await job(*args)
        except asyncio.CancelledError:
            if not self._stop.is_set():
                raise
            # Cut short by the shutdown's deadline: said once by ``run``, not a fault.
            log.info("a job still running at the shutdown deadline was stopped")
        except Exception as exc:
            fault = self.runtime.store.fault(exc)
            if fault is not None:
                self._stop_for(fault)
            elif isinstance(exc, MonitorError):  # a known trouble (a full disk): its message
                log.error("%s; the daemon carries on", exc)
            else:
                log.exception("unexpected error in a scheduled job; the daemon carries on")
        finally:
            self._inflight.discard(task)

    async def _check_database(self) -> None:
        try:
            self.runtime.store.verify_file()
        except DatabaseFault as fault:
            self._stop_for(fault)

    def _stop_for(self, fault: DatabaseFault) -> None:
        """Stop the daemon because its database cannot be used; ``run`` raises ``fault``."""
        if self._fault is None:
            log.error("stopping: %s", fault)
            self._fault = fault
        self.stop()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
