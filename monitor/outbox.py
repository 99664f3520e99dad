"""Outbox decisions: which target gets which alert, when, and folded into what.

Pure, with the clock passed in: ``monitor.delivery`` asks for these decisions and the
store writes them (``Store.save_routes``, ``Store.save_releases``). The rules:

- An alert goes to every target sharing one of its tags (every target when it has none).
- A watchlist with a digest holds its alerts until the digest's next time; a target or
  watchlist in quiet hours holds them until the quiet hours end. Held alerts for one
  target are sent together, as one digest, when their time comes.
- Burst guard: when one poll yields more than ``burst_limit`` immediate alerts for one
  target, they are folded into one summary message.
- A failed delivery is retried after ``retry_after`` doubling up to ``max_retry_after``,
  ``max_attempts`` times in all, then marked failed (kept; ``alerts retry`` re-queues).
- A rule that cannot be applied (a digest schedule that never fires, say) affects only
  its own watchlist or target: the error is logged once, and the alert is sent now
  rather than held forever; every other alert is routed as usual.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal

from msgspec import Struct, field

DeliveryKind = Literal["alert", "summary", "digest", "notice"]

log = logging.getLogger(__name__)
# Quiet hours as the config writes them; the config's JSON Schema gives editors the same.
QUIET_HOURS_PATTERN = r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*"
_SPAN_RE = re.compile(QUIET_HOURS_PATTERN)
_reported: set[tuple[str, str]] = set()  # (what, error) already logged: once per process


class QuietHours(Struct, frozen=True):
    """A daily span of local time, such as 22:00-07:00 (it may cross midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``H:MM-H:MM`` or ``HH:MM-HH:MM``, spaces allowed around each part (the form the
        config's JSON Schema gives)."""
        found = _SPAN_RE.fullmatch(text)
        try:
            if found is None:
                raise ValueError
            start_h, start_m, end_h, end_m = map(int, found.groups())
            start, end = time(start_h, start_m), time(end_h, end_m)
        except ValueError:
            raise ValueError(f"{text!r} is not a span of time such as 22:00-07:00") from None
        if start == end:
            raise ValueError("quiet hours must not start and end at the same time")
        return cls(start, end)

    def end_after(self, now: float, zone: tzinfo) -> float | None:
        """If ``now`` is within these hours, when they end (Unix time); else None."""
        local = datetime.fromtimestamp(now, zone)
        clock = local.time().replace(tzinfo=None)
        if self.start < self.end:
            inside = self.start <= clock < self.end
        else:
            inside = clock >= self.start or clock < self.end
        if not inside:
            return None
        end = datetime.combine(local.date(), self.end, zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, zone)
        return end.timestamp()

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class DigestSchedule(Struct, frozen=True):
    """When a watchlist's digest is sent: a crontab line, or every ``every`` seconds."""

    cron: str | None = None
    every: float | None = None

    def next_after(self, now: float, zone: tzinfo) -> float:
        """When the digest is next sent after ``now``; ValueError if it never is again (a
        crontab line naming 31 February is valid but never fires)."""
        if self.every is not None:
            # Aligned to the epoch, so `every: 1h` sends on the hour whenever it started.
            return (math.floor(now / self.every) + 1) * self.every
        if self.cron is None:
            raise ValueError("a digest schedule needs a crontab line or an interval")
        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(self.cron, timezone=zone)
        moment = datetime.fromtimestamp(now, zone)
        fire = trigger.get_next_fire_time(None, moment + timedelta(seconds=1))
        if fire is None:
            raise ValueError(f"crontab line {self.cron!r} never fires (no such date)")
        return float(fire.timestamp())

    def __str__(self) -> str:
        return f"cron {self.cron!r}" if self.cron else f"every {self.every:g}s"


class Target(Struct, frozen=True):
    """A notify target as routing sees it."""

    key: str  # stable across restarts: derived from its URL
    tags: frozenset[str] = frozenset()
    quiet_hours: QuietHours | None = None


class WatchlistRules(Struct, frozen=True):
    digest: DigestSchedule | None = None
    quiet_hours: QuietHours | None = None


class Policy(Struct, frozen=True):
    """Everything routing and retrying depend on, taken from the config."""

    targets: Sequence[Target]
    watchlists: dict[str, WatchlistRules] = field(default_factory=dict)
    zone: tzinfo = field(default_factory=lambda: local_zone())  # for digests and quiet hours
    burst_limit: int = 5
    max_attempts: int = 12
    retry_after: float = 60.0
    max_retry_after: float = 3600.0


class UnroutedAlert(Struct, frozen=True):
    id: int
    watchlist: str
    tags: tuple[str, ...]
    batch: str  # alerts from one poll share it


class Delivery(Struct, frozen=True):
    """A decision: send these alerts to this target, now or once ``held_until`` passes."""

    target: str
    kind: DeliveryKind
    alert_ids: tuple[int, ...]
    held_until: float | None = None
    reason: str | None = None  # why it is held: "digest <watchlist>" or "quiet hours"


def targets_for(tags: Iterable[str], targets: Sequence[Target]) -> list[Target]:
    wanted = set(tags)
    if not wanted:
        return list(targets)
    return [target for target in targets if target.tags & wanted]


def route(alerts: Sequence[UnroutedAlert], policy: Policy, now: float) -> list[Delivery]:
    """The deliveries for newly stored alerts."""
    held: list[Delivery] = []
    immediate: dict[tuple[str, str], list[int]] = defaultdict(list)
    for alert in alerts:
        rules = policy.watchlists.get(alert.watchlist, WatchlistRules())
        for target in targets_for(alert.tags, policy.targets):
            try:
                hold = _hold(rules, target, alert.watchlist, now, policy.zone)
            except Exception as exc:  # a broken rule must not stop every other alert
                _report_once(f"watchlist {alert.watchlist!r}", exc)
                hold = None  # sent now: better early than held forever
            if hold is None:
                immediate[(alert.batch, target.key)].append(alert.id)
            else:
                held.append(Delivery(target.key, "alert", (alert.id,), *hold))
    out: list[Delivery] = []
    for (_, target_key), ids in immediate.items():
        if len(ids) > policy.burst_limit:
            out.append(Delivery(target_key, "summary", tuple(ids)))
        else:
            out.extend(Delivery(target_key, "alert", (alert_id,)) for alert_id in ids)
    return out + held


def _hold(
    rules: WatchlistRules, target: Target, watchlist: str, now: float, zone: tzinfo
) -> tuple[float, str] | None:
    if rules.digest is not None:
        return rules.digest.next_after(now, zone), f"digest {watchlist}"
    for quiet in (target.quiet_hours, rules.quiet_hours):
        if quiet is not None and (end := quiet.end_after(now, zone)) is not None:
            return end, "quiet hours"
    return None


class HeldDelivery(Struct, frozen=True):
    id: int
    target: str
    reason: str
    alert_ids: tuple[int, ...]


class Release(Struct, frozen=True):
    """Held deliveries whose time has come, sent as one message (a digest when many)."""

    target: str
    reason: str
    held_ids: tuple[int, ...]
    alert_ids: tuple[int, ...]


def release(held: Sequence[HeldDelivery], policy: Policy, now: float) -> list[Release]:
    """Group due held deliveries by target and reason; a target still in quiet hours waits."""
    quiet = {target.key: target.quiet_hours for target in policy.targets}
    groups: dict[tuple[str, str], list[HeldDelivery]] = defaultdict(list)
    for delivery in held:
        hours = quiet.get(delivery.target)
        try:
            if hours is not None and hours.end_after(now, policy.zone) is not None:
                continue
        except Exception as exc:  # a broken rule must not stop every other release
            _report_once(f"target {delivery.target}", exc)
        groups[(delivery.target, delivery.reason)].append(delivery)
    return [
        Release(
            target,
            reason,
            tuple(d.id for d in group),
            tuple(dict.fromkeys(i for d in group for i in d.alert_ids)),
        )
        for (target, reason), group in groups.items()
    ]


def _report_once(what: str, exc: Exception) -> None:
    """Log a routing rule's failure the first time it happens, not on every pass."""
    key = (what, repr(exc))
    if key not in _reported:
        _reported.add(key)
        log.error("routing %s failed, its alerts are sent without holding: %s", what, exc)


def retry_delay(attempts: int, policy: Policy) -> float | None:
    """Seconds to wait before the next try after ``attempts`` failures; None: give up."""
    if attempts >= policy.max_attempts:
        return None
    return min(policy.retry_after * 2.0 ** (attempts - 1), policy.max_retry_after)


def local_zone() -> tzinfo:
    """The machine's time zone (the default for digests and quiet hours)."""
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone
