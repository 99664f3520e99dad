"""Health notices: after a poll, the one notice to the operators that a feed's health
calls for (it started failing, fell silent, or recovered), queued to the targets tagged
``health.notify``.

The decision is ``monitor.health``'s (pure); this component reads what it needs from the
store, queues the notice in the outbox and says how many deliveries that made. The
runtime (``monitor.runtime``) runs it after each poll, for ``once`` and the daemon alike.
"""

from __future__ import annotations

import logging
import time

import msgspec

from monitor.health import decide_notice
from monitor.models import PollState
from monitor.outbox import targets_for
from monitor.pipeline import Clock, PollOutcome, feed_display_name
from monitor.run_config import RunConfig, RunFeed
from monitor.store import Store

log = logging.getLogger(__name__)


class HealthNotices:
    """Turns a feed's health after each poll into at most one notice to the operators."""

    def __init__(
        self, config: RunConfig, store: Store, polls: PollState, *, clock: Clock = time.time
    ) -> None:
        self.store = store
        self.polls = polls
        self.clock = clock
        self.apply_config(config)

    def apply_config(self, config: RunConfig) -> None:
        self.config = config

    def after_poll(self, feed: RunFeed, outcome: PollOutcome) -> PollOutcome:
        """``outcome`` with the notices its poll called for (none without a ``health``
        section, nor for a feed that is gone)."""
        if self.config.health is None or outcome.gone:
            return outcome
        feed_id = self.polls.feeds[feed.url].id
        notices = self._check(feed_id, feed_display_name(feed.url, feed.name))
        return msgspec.structs.replace(outcome, notices=notices)

    def _check(self, feed_id: int, name: str) -> int:
        """Queue a notice if the feed started or stopped failing or being silent; returns
        how many deliveries were queued."""
        assert self.config.health is not None
        now = self.clock()
        notice = decide_notice(
            self.store.feed_health(feed_id, name), now, self.config.health.rules()
        )
        if notice is None:
            return 0
        policy = self.config.delivery_policy()
        targets = [t.key for t in targets_for(self.config.health.notify, policy.targets)]
        self.store.queue_notice(feed_id, notice, targets, now)
        log.warning("feed %s: %s", name, notice.title.removeprefix("[feed-monitor] "))
        return len(targets)
