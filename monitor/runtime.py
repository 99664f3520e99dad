"""The running parts, wired once: what both ``once`` and the daemon use.

``open_runtime`` opens the database, the parser workers and the HTTP client, and builds
on top of them the components, each with one job: the ``Poller`` (fetch → parse →
store), ``HealthNotices`` (after each poll, a notice when a feed starts or stops
failing), ``Retention`` (dropping old text) and the ``Deliverer`` (outbox → targets).
They share a ``PollState``: the Poller reports each feed's state to it, and the daemon
schedules from it. ``Runtime.poll`` is a poll as both ``once`` and the daemon run it.
Leaving ``open_runtime`` closes what it opened, in reverse order.

``process_lock`` keeps two daemons off one database, and makes a second ``once`` wait
for the first: two processes on one database would be safe (deliveries are claimed,
stories saved in one transaction with their lookup) but would poll every feed twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Literal

from msgspec import Struct

from monitor.alert import Notifier
from monitor.delivery import Deliverer
from monitor.errors import StoreBusyError
from monitor.fetch import USER_AGENT, Fetcher, RedirectPolicy
from monitor.health_notices import HealthNotices
from monitor.models import PollState
from monitor.parser_pool import ParserPool
from monitor.pipeline import Poller, PollOutcome
from monitor.retention import Retention
from monitor.run_config import RunConfig, RunFeed
from monitor.store import Store
from monitor.store.base import lock_file

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Role = Literal["daemon", "once"]
_LOCK_BYTE: dict[Role, int] = {"daemon": 0, "once": 1}  # one lock file, a byte per role


class Runtime(Struct):
    config: RunConfig
    store: Store
    poll_state: PollState  # each feed's state as last recorded; the poll counters
    poller: Poller
    health: HealthNotices
    retention: Retention
    deliverer: Deliverer

    def apply_config(self, config: RunConfig) -> None:
        """Use a reloaded config from now on (the database path stays)."""
        self.config = config
        self.poller.apply_config(config)
        self.health.apply_config(config)
        self.retention.apply_config(config)
        self.deliverer.apply_config(config, notifier_for(config))

    async def poll(self, feed: RunFeed) -> PollOutcome:
        """Poll one feed, then queue the health notice its state calls for, if any."""
        return self.health.after_poll(feed, await self.poller.poll(feed))

    async def poll_all(
        self, on_done: Callable[[PollOutcome], None] | None = None
    ) -> list[PollOutcome]:
        """Every configured feed once, concurrently, as ``poll``; ``on_done`` hears of each.
        The parser workers are let go at the end: they exit while alerts are delivered."""
        try:
            return await self.poller.poll_all(on_done, each=self.poll)
        finally:
            self.poller.parser.release()


def notifier_for(config: RunConfig) -> Notifier:
    return Notifier(config.notify, config.alerts.send_timeout)


@contextlib.asynccontextmanager
async def open_runtime(config: RunConfig, *, clock: Clock = time.time) -> AsyncIterator[Runtime]:
    with Store.open(config.database) as store, ParserPool() as parser:
        async with Fetcher(
            user_agent=config.user_agent or USER_AGENT,
            redirect_policy=RedirectPolicy.from_config(config),
        ) as fetcher:
            state = PollState()
            poller = Poller(config, store, fetcher, parser=parser, clock=clock, state=state)
            health = HealthNotices(config, store, state, clock=clock)
            retention = Retention(config, store, clock=clock)
            deliverer = Deliverer(config, store, notifier_for(config), clock=clock)
            yield Runtime(config, store, state, poller, health, retention, deliverer)


@contextlib.contextmanager
def process_lock(database: Path, role: Role, *, wait: float = 0.0) -> Iterator[None]:
    """Hold ``role``'s lock on ``database`` (``<database>.lock``) while inside.

    Taken by another process: wait up to ``wait`` seconds for it, then raise
    ``StoreBusyError``. The lock dies with its process, however it ends."""
    path = lock_file(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _LOCK_BYTE[role])
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise StoreBusyError(_busy_message(database, role)) from None
                if not told:
                    log.warning("another `once` is running on %s; waiting for it", database)
                    told = True
                time.sleep(0.2)  # lockf has no timeout; this is a bounded wait, not a sync
        yield
    finally:
        os.close(fd)  # releases the lock


def _busy_message(database: Path, role: Role) -> str:
    if role == "daemon":
        return (
            f"another feed-monitor daemon is running on {database}; stop it first "
            "(`systemctl stop feed-monitor`), or give this one its own database"
        )
    return f"another `feed-monitor once` has been running on {database} too long; try later"
