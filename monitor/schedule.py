"""When to poll a feed next. Pure decisions: the clock and the facts are arguments.

After a success the interval adapts: it starts from the configured interval, follows how
often the feed actually publishes (about two polls per new entry), never goes below what
the publisher asks for (``<ttl>``, ``sy:updatePeriod``, ``Cache-Control: max-age``), and
stays within the configured floor and ceiling. After a failure the feed backs off
exponentially up to a cap, or as long as a 429/503's ``Retry-After`` says.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from itertools import pairwise

from msgspec import Struct

MIN_DATED_ENTRIES = 3
# Retry-After is honoured, but a server asking for a month does not get it.
MAX_RETRY_AFTER = 7 * 86400.0


class Cadence(Struct, frozen=True):
    """A feed's scheduling settings, from the config."""

    interval: float
    min_interval: float
    max_interval: float
    max_backoff: float
    adaptive: bool = True


def publishing_interval(published: Iterable[float | None]) -> float | None:
    """The median time between a feed's entries, or None with too few dated entries."""
    stamps = sorted({stamp for stamp in published if stamp is not None})
    if len(stamps) < MIN_DATED_ENTRIES:
        return None
    gaps = [later - earlier for earlier, later in pairwise(stamps)]
    return statistics.median(gaps)


def interval_after_success(
    cadence: Cadence,
    *,
    rhythm: float | None = None,
    update_hint: float | None = None,
    max_age: float | None = None,
) -> float:
    """Seconds until the next poll of a feed that answered well, given its
    ``publishing_interval`` (the rhythm) and what its publisher asks for."""
    interval = cadence.interval
    if rhythm is not None and cadence.adaptive:
        interval = rhythm / 2
    interval = min(max(interval, cadence.min_interval), cadence.max_interval)
    asked = [hint for hint in (update_hint, max_age) if hint]
    if asked:
        interval = min(max(interval, *asked), cadence.max_interval)
    return interval


def delay_after_failure(
    cadence: Cadence, consecutive_failures: int, retry_after: float | None = None
) -> float:
    """Seconds until the next try of a feed that failed ``consecutive_failures`` times."""
    if retry_after is not None:
        return min(max(retry_after, cadence.min_interval), MAX_RETRY_AFTER)
    backoff = cadence.interval * 2.0 ** max(0, consecutive_failures - 1)
    return min(backoff, max(cadence.max_backoff, cadence.interval))
