"""The poll pipeline: fetch → parse → decide → store, then deliver the outbox.

``plan_poll`` is the pure decider: given a poll's entries and what the store already
knows of their identity keys, it returns which are new stories (with the watchlists they
match and which of those matches become alerts), which are known stories seen under a
new feed, link or guid, and which are edits. ``Poller`` carries the plan out: it does the
I/O around it (HTTP, parsing off the event loop, one SQLite transaction per poll, Apprise
delivery in a worker thread) and turns each feed's failure into a recorded error for
that feed only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from monitor.alert import Notifier, render_alert, retry_after
from monitor.config import Config, FeedConfig
from monitor.errors import FeedError, HTTPStatusError
from monitor.fetch import Fetcher
from monitor.identity import (
    TITLE_WINDOW,
    SourceKeys,
    canonical_url,
    shared_links,
    source_keys,
)
from monitor.match import Matcher
from monitor.models import Entry, ParsedFeed
from monitor.parse import parse_feed
from monitor.store import (
    FeedState,
    Lookup,
    PollPlan,
    PollRecord,
    SourceToAdd,
    Store,
    StoryEdit,
    StoryToSave,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def is_alertable(entry: Entry, now: float, max_age: float) -> bool:
    """Old stories (a new feed's archive) are stored but not alerted; undated ones count as new."""
    return entry.published is None or now - entry.published <= max_age


def identify(entry: SourceKeys, lookup: Lookup, feed_id: int) -> tuple[int | None, bool]:
    """The stored story an entry is, if any, and whether its text may have been edited.

    Rules, in order (see ``monitor/identity.py``): this feed's own key for it; this feed's
    link for it when the title agrees too (a CMS regenerating guids, not a press-release
    page reused for every item); any feed's canonical link; and, for links that say
    nothing, an identical normalized title seen within the title window.
    """
    own = lookup.by_entry_key.get(entry.entry_key)
    if own is not None:
        return own.story_id, own.content_hash != entry.content_hash
    for known in lookup.by_link.get(entry.canonical_link or "", ()):
        if known.feed_id != feed_id or known.title_key == entry.title_key:
            return known.story_id, False
    if entry.title_key:
        for known in lookup.by_title.get(entry.title_key, ()):
            if entry.opaque or known.opaque:
                return known.story_id, False
    return None, False


def plan_poll(
    entries: Sequence[tuple[Entry, SourceKeys]],
    lookup: Lookup,
    matcher: Matcher,
    *,
    feed_id: int,
    feed_name: str,
    now: float,
    max_age: float,
) -> PollPlan:
    """Decide what a poll's entries mean: new stories with their matches and alerts, new
    sources of known stories, and edits. Nothing here reads or writes anything."""
    plan = PollPlan()
    tags = matcher.tags
    # Stories this poll creates, by the keys later entries of the same poll could share.
    pending: dict[str, StoryToSave] = {}
    for entry, keys in entries:
        story_id, edited = identify(keys, lookup, feed_id)
        if story_id is not None:
            if keys.entry_key not in lookup.by_entry_key:
                plan.sources.append(SourceToAdd(story_id, keys))
            elif edited:
                plan.edits.append(StoryEdit(story_id, entry, keys))
            continue
        earlier = _earlier_copy(pending, keys)
        if earlier is not None:
            if keys.entry_key != earlier.source.entry_key:
                earlier.copies.append(keys)
            continue
        alertable = is_alertable(entry, now, max_age)
        matches = [
            (
                match,
                render_alert(feed_name, entry, match, tags[match.watchlist]) if alertable else None,
            )
            for match in matcher.match(entry, feed_name)
        ]
        story = StoryToSave(entry, keys, matches)
        plan.new.append(story)
        for key in _batch_keys(keys):
            pending.setdefault(key, story)
    return plan


def _batch_keys(keys: SourceKeys) -> list[str]:
    out = [f"key:{keys.entry_key}", f"title:{keys.title_key}"]
    if keys.canonical_link:
        out.append(f"link:{keys.canonical_link}")
    return out


def _earlier_copy(pending: dict[str, StoryToSave], keys: SourceKeys) -> StoryToSave | None:
    """A story created earlier in the same poll that ``keys`` is a copy of (same rules)."""
    for key in (f"key:{keys.entry_key}", f"link:{keys.canonical_link}"):
        if key in pending:
            return pending[key]
    earlier = pending.get(f"title:{keys.title_key}")
    if earlier is not None and keys.title_key and (keys.opaque or earlier.source.opaque):
        return earlier
    return None


def feed_display_name(url: str, name: str | None, title: str | None = None) -> str:
    """What a feed is called in alerts and status: its configured name, title, or host."""
    return name or title or urlsplit(url).hostname or url


@dataclass(frozen=True)
class PollOutcome:
    url: str
    name: str
    ok: bool
    status: int | None = None
    entries: int = 0
    new_stories: int = 0
    alerts_queued: int = 0
    error: str | None = None


@dataclass(frozen=True)
class DeliverySummary:
    sent: int = 0
    failed: int = 0


class Poller:
    """Polls feeds and delivers alerts for one loaded config."""

    def __init__(
        self,
        config: Config,
        store: Store,
        fetcher: Fetcher,
        notifier: Notifier,
        *,
        clock: Clock = time.time,
        parse_executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.clock = clock
        self.parse_executor = parse_executor
        self._delivery_lock = asyncio.Lock()
        self.apply_config(config, notifier)

    def apply_config(self, config: Config, notifier: Notifier) -> None:
        """Start using a (re)loaded config: feeds rows, matcher and targets."""
        self.config = config
        self.notifier = notifier
        self.matcher = Matcher(config.watchlists)
        self._limit = asyncio.Semaphore(config.concurrency)
        self.feed_states: dict[str, FeedState] = self.store.sync_feeds(
            ((feed.url, feed.name) for feed in config.feeds), self.clock()
        )

    async def poll_all(self) -> list[PollOutcome]:
        """Poll every configured feed once, concurrently."""
        return list(await asyncio.gather(*(self.poll(feed) for feed in self.config.feeds)))

    async def poll(self, feed: FeedConfig) -> PollOutcome:
        """Poll one feed. A failure is logged and recorded against the feed, never raised."""
        state = self.feed_states[feed.url]
        name = feed_display_name(feed.url, feed.name)
        async with self._limit:
            started = self.clock()
            next_poll_at = started + self.config.feed_interval(feed)
            try:
                result = await self.fetcher.fetch(
                    feed.url,
                    timeout=self.config.feed_timeout(feed),
                    etag=state.etag,
                    last_modified=state.last_modified,
                )
                if result.not_modified:
                    record = PollRecord(started, next_poll_at, status=result.status)
                    self.store.save_poll(state.id, record, PollPlan())
                    return PollOutcome(feed.url, name, ok=True, status=result.status)
                parsed = await self._parse(result.body, result.url, result.content_type)
            except FeedError as exc:
                status = exc.status if isinstance(exc, HTTPStatusError) else None
                log.warning("feed %s (%s): %s", name, feed.url, exc)
                record = PollRecord(started, next_poll_at, status=status, error=str(exc))
                self.store.record_failure(state.id, record)
                return PollOutcome(feed.url, name, ok=False, status=status, error=str(exc))

            now = self.clock()
            name = feed_display_name(feed.url, feed.name, parsed.title)
            links = [entry.link for entry in parsed.entries]
            shared = shared_links(links, [entry.title for entry in parsed.entries])
            shared |= self.store.shared_links(
                state.id, [link for link in map(canonical_url, links) if link]
            )
            keyed = [(entry, source_keys(entry, shared)) for entry in parsed.entries]
            lookup = self.store.lookup(state.id, [keys for _, keys in keyed], now - TITLE_WINDOW)
            plan = plan_poll(
                keyed,
                lookup,
                self.matcher,
                feed_id=state.id,
                feed_name=name,
                now=now,
                max_age=self.config.defaults.max_age,
            )
            record = PollRecord(
                started,
                next_poll_at,
                status=result.status,
                etag=result.etag,
                last_modified=result.last_modified,
                title=parsed.title,
            )
            queued = self.store.save_poll(state.id, record, plan)
            # Keep the validators for the next conditional GET of this feed.
            self.feed_states[feed.url] = FeedState(
                state.id,
                state.url,
                state.name,
                result.etag or state.etag,
                result.last_modified or state.last_modified,
                next_poll_at,
            )
            log.info(
                "feed %s: %d entries, %d new, %d alerts queued",
                name,
                len(parsed.entries),
                len(plan.new),
                queued,
            )
            return PollOutcome(
                feed.url,
                name,
                ok=True,
                status=result.status,
                entries=len(parsed.entries),
                new_stories=len(plan.new),
                alerts_queued=queued,
            )

    async def _parse(self, body: bytes, url: str, content_type: str | None) -> ParsedFeed:
        loop = asyncio.get_running_loop()
        job = partial(parse_feed, body, url=url, content_type=content_type, now=self.clock())
        return await loop.run_in_executor(self.parse_executor, job)

    def prune(self) -> int:
        """Apply the retention setting: drop old stories' text, keep their identity."""
        pruned = self.store.prune_text(self.clock() - self.config.retention.story_text)
        if pruned:
            log.info("retention: dropped the text of %d old stories", pruned)
        return pruned

    async def deliver_pending(self, *, ignore_backoff: bool = False) -> DeliverySummary:
        """Deliver every due alert in the outbox; failures are rescheduled with backoff."""
        sent = failed = 0
        last_id = 0
        async with self._delivery_lock:
            while due := self.store.due_alerts(
                math.inf if ignore_backoff else self.clock(), after_id=last_id
            ):
                for alert in due:
                    last_id = alert.id
                    try:
                        outcome = await asyncio.to_thread(self.notifier.send, alert.message)
                        ok, detail = outcome.ok, outcome.detail
                    except Exception as exc:  # a target plugin bug must not stop the outbox
                        ok, detail = False, f"{type(exc).__name__}: {exc}"
                    now = self.clock()
                    if ok:
                        self.store.mark_sent(alert.id, now)
                        sent += 1
                        continue
                    failed += 1
                    delay = retry_after(alert.attempts + 1)
                    retry_at = None if delay is None else now + delay
                    self.store.mark_failed_attempt(alert.id, detail, retry_at)
                    if retry_at is None:
                        log.error(
                            "alert %d: giving up after %d attempts: %s",
                            alert.id,
                            alert.attempts + 1,
                            detail,
                        )
                    else:
                        log.warning(
                            "alert %d: delivery failed, retrying in %ds: %s",
                            alert.id,
                            delay,
                            detail,
                        )
        return DeliverySummary(sent, failed)
