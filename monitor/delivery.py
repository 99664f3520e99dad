"""Delivery: the outbox's sender, a component apart from polling.

Polls only store alerts (and nudge this component); ``Deliverer`` routes them (the pure
decisions of ``monitor.outbox``, applied in one write transaction so two processes never
route an alert twice), then sends each due delivery through its target's ``Channel``:

- **One sender per delivery.** A delivery is claimed in the database before it is sent
  (``Store.claim_due``: an owner and a lease), so two processes on one database never
  send it both, and the claim of a process that died runs out after ``lease``.
- **Targets apart.** Each target is drained by its own task, one delivery at a time, so a
  slow or dead target holds back only its own deliveries, never polling and never
  another target.
- **A deadline per send.** Apprise blocks, and a target that trickles its answer keeps
  every socket timeout from firing, so each send runs in a daemon thread of its own that
  is given up after ``alerts.send_timeout``. A given-up send is recorded as failed and
  retried later; if its thread answers success after all, that is recorded and the retry
  does not happen. A target whose previous send is still stuck is skipped until it ends.
  Daemon threads never hold up the process's exit.
- **Sent but not recorded is not sent again.** When recording a successful send fails
  (a full disk), the outcome is kept in memory and recorded on a later pass; this
  process never claims that delivery again. A crash before it is recorded costs one
  repeat, after the claim's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from msgspec import Struct, field

from monitor.alert import Channel, DeliveryOutcome, Notifier
from monitor.errors import StoreError
from monitor.outbox import release, retry_delay, route
from monitor.render import Rendered, render_delivery, render_notice
from monitor.run_config import RunConfig
from monitor.store import DueDelivery, Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]


# Send threads that have not returned yet, for a bounded exit (see ``stuck_sends``).
_LIVE_SENDS: set[threading.Thread] = set()


def stuck_sends() -> int:
    """How many sends given up at their deadline still wait inside Apprise."""
    return sum(1 for thread in list(_LIVE_SENDS) if thread.is_alive())


def process_owner() -> str:
    """Who holds a claim: host, process id and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """Whether the process that made a claim is known to be gone: it ran on this host and
    its pid no longer exists. (Elsewhere, or alive, its lease decides.)"""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class DeliverySummary(Struct):
    """What one call of ``deliver_due`` did (or several, ``add``-ed up)."""

    sent: int = 0
    failed: int = 0
    unrecorded: int = 0  # sent, but the database would not take the record (yet)
    recorded_late: int = 0  # outcomes of earlier sends recorded now
    attempted: list[int] = field(default_factory=list)  # the deliveries tried, by id

    def add(self, other: DeliverySummary) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.unrecorded += other.unrecorded
        self.recorded_late += other.recorded_late
        self.attempted += other.attempted


class _Unrecorded(Struct, frozen=True):
    """A send whose outcome the database did not take."""

    label: str
    outcome: DeliveryOutcome
    at: float
    retry_at: float | None


class _StuckSend(Struct):
    """A send given up at its deadline whose thread still runs inside Apprise."""

    delivery_id: int
    since: float
    thread: threading.Thread | None = None
    late: list[DeliveryOutcome] = field(default_factory=list)  # its answer, if it comes


class Deliverer:
    """Routes stored alerts and sends due deliveries for one loaded config."""

    def __init__(
        self,
        config: RunConfig,
        store: Store,
        notifier: Notifier,
        *,
        clock: Clock = time.time,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner or process_owner()
        self._workers: dict[str, asyncio.Task[DeliverySummary]] = {}
        self._stuck: dict[str, _StuckSend] = {}
        self._unrecorded: dict[int, _Unrecorded] = {}
        self._nudged = asyncio.Event()
        self._closing = False
        self.apply_config(config, notifier)

    def apply_config(self, config: RunConfig, notifier: Notifier) -> None:
        self.config = config
        self.notifier = notifier

    @property
    def send_timeout(self) -> float:
        return self.config.alerts.send_timeout

    @property
    def lease(self) -> float:
        """How long a claim holds: past the send's deadline, with room for recording it."""
        return 2 * self.send_timeout + 30

    # Scheduling ------------------------------------------------------------

    def nudge(self) -> None:
        """Something new may be due (a poll queued alerts): deliver soon, without waiting."""
        self._nudged.set()

    async def run(self, every: float) -> None:
        """The daemon's delivery loop: a pass when nudged, and at least every ``every``
        seconds (retries, digests, other processes' alerts). Ends when ``close`` is called."""
        while not self._closing:
            try:
                await self.deliver_due(wait=False)
            except StoreError as exc:
                log.error("delivery pass failed, trying again in %gs: %s", every, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), every)
            self._nudged.clear()

    async def deliver_while(self, polling: asyncio.Future[None]) -> DeliverySummary:
        """``once``'s deliveries while it polls: a pass each time a poll queues alerts
        (``nudge``), until ``polling`` is done; what they did. An alert is sent as soon
        as it is found, not after the slowest feed (nor lost to ``--timeout``). A failed
        send waits for its retry time here: ``once``'s last pass does not retry it."""
        summary = DeliverySummary()
        polling.add_done_callback(lambda _: self._nudged.set())
        while True:
            await self._nudged.wait()
            self._nudged.clear()
            if polling.done():
                return summary
            try:
                summary.add(await self.deliver_due(skip=summary.attempted))
            except StoreError as exc:  # a locked or full database: the next pass tries again
                log.error("delivery pass failed, trying again after the next poll: %s", exc)

    async def close(self, deadline: float) -> None:
        """Stop: let sends in flight finish within ``deadline`` seconds, then cancel them.
        A send cancelled here keeps its claim; it is retried once the lease runs out."""
        self._closing = True
        self._nudged.set()
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "shutdown: %d targets still sending after %gs; those deliveries are "
                    "retried after a restart",
                    len(pending),
                    deadline,
                )
                await asyncio.wait(pending, timeout=1)

    # Passes ----------------------------------------------------------------

    async def deliver_due(
        self, *, ignore_backoff: bool = False, wait: bool = True, skip: Sequence[int] = ()
    ) -> DeliverySummary:
        """Route new alerts, release held ones whose time has come, and start sending every
        due delivery, one task per target. With ``wait`` (``once``), return when every
        target has nothing more due; without (the daemon), return at once.
        ``ignore_backoff`` sends failed ones now instead of at their retry time; ``skip``
        lists deliveries not to try (tried already in this run)."""
        self.store.flush()  # never deliver an alert that is not committed
        summary = DeliverySummary()
        summary.recorded_late += self._record_late()
        now = self.clock()
        for owner in self.store.claim_owners(now):
            if owner != self.owner and owner_is_dead(owner):
                released = self.store.release_claims(owner)
                log.info("%d deliveries claimed by a process that died are due again", released)
        self._route(now)
        due_by = math.inf if ignore_backoff else None
        started = []
        for target in self.store.due_targets(math.inf if ignore_backoff else now):
            if self._busy(target) or target in self._workers:
                continue
            task = asyncio.create_task(self._drain(target, due_by, skip), name=f"deliver {target}")
            self._workers[target] = task
            task.add_done_callback(functools.partial(self._worker_done, target))
            started.append(task)
        if wait and started:
            for result in await asyncio.gather(*started):
                summary.add(result)
        return summary

    def _worker_done(self, target: str, task: asyncio.Task[DeliverySummary]) -> None:
        self._workers.pop(target, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("delivery to %s stopped by an unexpected error", target, exc_info=exc)

    def _route(self, now: float) -> None:
        policy = self.config.delivery_policy()
        while True:
            with self.store.transaction():
                unrouted = self.store.unrouted_alerts()
                if not unrouted:
                    break
                routes = route(unrouted, policy, now)
                self.store.save_routes([alert.id for alert in unrouted], routes, now)
        with self.store.transaction():
            self.store.save_releases(release(self.store.held_due(now), policy, now), now)

    async def _drain(
        self, target: str, due_by: float | None, skip: Sequence[int] = ()
    ) -> DeliverySummary:
        """Send ``target``'s due deliveries one after another until none is left, its
        send gets stuck, or the component closes."""
        summary = DeliverySummary()
        attempted = summary.attempted  # once per pass: a failure waits for its retry time
        channel = self.notifier.channels.get(target)
        templates = self.config.alerts.templates.overrides()
        while not self._closing:
            try:
                claimed = self.store.claim_due(
                    target, now=self.clock(), owner=self.owner, lease=self.lease,
                    due_by=due_by, skip=[*self._unrecorded, *skip, *attempted],
                )  # fmt: skip
            except StoreError as exc:
                log.error("delivery to %s paused: %s", target, exc)
                break
            if not claimed:
                break
            [delivery] = claimed
            attempted.append(delivery.id)
            if channel is None:
                outcome = DeliveryOutcome(False, "this target is no longer in the config")
                label = target
            else:
                outcome = await self._send(channel, delivery, _render(delivery, channel,
                                                                      templates))  # fmt: skip
                label = channel.label
            if not self._record(delivery, label, outcome, channel is not None, summary):
                break
            if outcome.timed_out:
                break  # the target hangs: its other deliveries wait for the next pass
        return summary

    async def _send(self, channel: Channel, delivery: DueDelivery, message: Rendered) -> (
        DeliveryOutcome
    ):  # fmt: skip
        """Send with the deadline; a send given up is remembered until its thread ends."""
        loop = asyncio.get_running_loop()
        stuck = _StuckSend(delivery.id, self.clock())

        def late(outcome: DeliveryOutcome) -> None:  # in the send's thread
            stuck.late.append(outcome)
            with contextlib.suppress(RuntimeError):  # no loop: the process is exiting
                loop.call_soon_threadsafe(self._nudged.set)

        outcome, thread = await send_with_deadline(channel, message, self.send_timeout, late)
        if outcome.timed_out:
            stuck.thread = thread
            self._stuck[channel.key] = stuck
        return outcome

    def _busy(self, target: str) -> bool:
        """Whether a send to ``target`` given up earlier is still stuck in its thread."""
        stuck = self._stuck.get(target)
        if stuck is None:
            return False
        if stuck.thread is not None and stuck.thread.is_alive():
            return True
        del self._stuck[target]
        return False

    # Recording -------------------------------------------------------------

    def _record(
        self, delivery: DueDelivery, label: str, outcome: DeliveryOutcome, retryable: bool,
        summary: DeliverySummary,
    ) -> bool:  # fmt: skip
        """Record a send's outcome; False if the database would not take it (kept for a
        later pass, and this delivery is never claimed again by this process)."""
        now = self.clock()
        retry_at = None
        if not outcome.ok:
            delay = retry_delay(delivery.attempts, self.config.delivery_policy())
            retry_at = None if delay is None or not retryable else now + delay
        try:
            self.store.record_attempt(
                delivery.id, label, ok=outcome.ok, detail=outcome.detail, now=now,
                retry_at=retry_at,
            )  # fmt: skip
        except StoreError as exc:
            self._unrecorded[delivery.id] = _Unrecorded(label, outcome, now, retry_at)
            summary.unrecorded += 1
            log.error(
                "delivery %d to %s: %s, but recording it failed (it will not be sent again "
                "by this process; recorded when the database takes it): %s",
                delivery.id, label, "sent" if outcome.ok else "failed", exc,
            )  # fmt: skip
            return False
        if outcome.ok:
            summary.sent += 1
        else:
            summary.failed += 1
            if retry_at is None:
                log.error("delivery %d to %s: giving up after %d attempts: %s",
                          delivery.id, label, delivery.attempts, outcome.detail)  # fmt: skip
            else:
                log.warning("delivery %d to %s failed, retrying in %ds: %s",
                            delivery.id, label, retry_at - now, outcome.detail)  # fmt: skip
        return True

    def _record_late(self) -> int:
        """Record what earlier passes could not: outcomes the database refused, and sends
        given up at their deadline that answered success after all."""
        recorded = 0
        for delivery_id, kept in list(self._unrecorded.items()):
            try:
                self.store.record_attempt(
                    delivery_id, kept.label, ok=kept.outcome.ok, detail=kept.outcome.detail,
                    now=kept.at, retry_at=kept.retry_at,
                )  # fmt: skip
            except StoreError:
                break  # still full; try again next pass
            del self._unrecorded[delivery_id]
            recorded += 1
        for target, stuck in list(self._stuck.items()):
            if not stuck.late:
                continue
            del self._stuck[target]
            [outcome] = stuck.late
            label = self.notifier.channels[target].label if target in self.notifier.channels else (
                target
            )  # fmt: skip
            if outcome.ok and self.store.record_late_success(
                stuck.delivery_id, label, detail=outcome.detail, now=self.clock()
            ):
                log.info("delivery %d to %s answered after its deadline: sent",
                         stuck.delivery_id, label)  # fmt: skip
                recorded += 1
        return recorded


async def send_with_deadline(
    channel: Channel,
    message: Rendered,
    timeout: float,
    late: Callable[[DeliveryOutcome], None] = lambda _: None,
) -> tuple[DeliveryOutcome, threading.Thread]:
    """``channel.send`` in a daemon thread of its own, given up after ``timeout`` seconds
    (a ``timed_out`` outcome). The answer of a send given up goes to ``late``, from the
    send's thread, if it ever comes. Returns the outcome and the thread."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[DeliveryOutcome] = loop.create_future()
    handoff = threading.Lock()  # the answer goes to the waiter or, once it gave up, to late
    given_up = False

    def deliver() -> None:
        try:
            outcome = channel.send(message)
        finally:
            _LIVE_SENDS.discard(threading.current_thread())
        with handoff:
            if given_up:
                late(outcome)
                return
            with contextlib.suppress(RuntimeError):  # no loop: the process is exiting
                loop.call_soon_threadsafe(_settle, answer, outcome)

    thread = threading.Thread(target=deliver, name=f"send to {channel.label}", daemon=True)
    _LIVE_SENDS.add(thread)
    thread.start()
    try:
        return await asyncio.wait_for(asyncio.shield(answer), timeout), thread
    except TimeoutError:
        with handoff:
            if answer.done():
                return answer.result(), thread
            given_up = True
        return DeliveryOutcome(
            False,
            f"no answer within {timeout:g}s (alerts.send_timeout); the target may still "
            "have received it",
            timed_out=True,
        ), thread


def _render(delivery: DueDelivery, channel: Channel, templates: dict[str, str]) -> Rendered:
    if delivery.notice is not None:
        return render_notice(*delivery.notice, channel.format, title_in_body=channel.title_in_body)
    return render_delivery(
        delivery.kind, delivery.reason, delivery.contents, channel.format, templates,
        title_in_body=channel.title_in_body,
    )  # fmt: skip


def _settle(answer: asyncio.Future[DeliveryOutcome], outcome: DeliveryOutcome) -> None:
    if not answer.done():
        answer.set_result(outcome)
