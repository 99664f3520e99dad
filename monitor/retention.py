"""Retention: dropping what the config keeps no longer.

The text of stories older than ``retention.story_text`` goes (titles, links and every
identity key stay, so a pruned story is never new again), and so do the event
fingerprints of stories older than the events window (their event membership stays).
The daemon runs it once a day; ``once`` at the end of every run.
"""

from __future__ import annotations

import logging
import time

from monitor.events import EventIndex
from monitor.pipeline import Clock
from monitor.run_config import RunConfig
from monitor.store import Store

log = logging.getLogger(__name__)


class Retention:
    """Applies the retention settings of one loaded config to the store."""

    def __init__(self, config: RunConfig, store: Store, *, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock
        self.apply_config(config)

    def apply_config(self, config: RunConfig) -> None:
        self.config = config
        self.events = (
            None
            if config.events is None
            else EventIndex(self.store.event_store, config.events.window)
        )

    def run(self) -> int:
        """Drop old stories' text, keeping their identity, and forget event fingerprints
        older than the events window; returns how many stories lost their text."""
        if self.events is not None:
            self.events.prune(self.clock())
        pruned = self.store.prune_text(self.clock() - self.config.retention.story_text)
        if pruned:
            log.info("retention: dropped the text of %d old stories", pruned)
        return pruned
