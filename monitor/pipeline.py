"""The poll pipeline: fetch → parse → decide → store. Delivery is apart (``monitor.delivery``).

``plan_poll`` is the pure decider: given a poll's entries and what the store already
knows of their identity keys, it returns which are new stories (with the watchlists they
match and which of those matches become alerts), which are known stories seen under a
new feed, link or guid, and which are edits. ``Poller`` carries the plan out: it does the
I/O around it (HTTP, parsing off the event loop, one SQLite transaction per poll),
turns each feed's failure into a recorded error for that feed only, and reports each
feed's new state to the shared ``PollState``. A poll never waits for a delivery: it
stores its alerts and returns. What follows a poll is apart: health notices
(``monitor.health_notices``), retention (``monitor.retention``), delivery
(``monitor.delivery``); ``monitor.runtime`` wires them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from msgspec import Struct

from monitor.article import ArticleLimits, FullTextRule, fetch_articles, needs_article, with_article
from monitor.concurrency import PollLimit
from monitor.errors import FeedError, HTTPStatusError
from monitor.events import EventIndex, follow_up_text
from monitor.fetch import Fetcher, moved_url
from monitor.identity import (
    TITLE_WINDOW,
    Lookup,
    SourceKeys,
    identify,
    poll_keys,
    shared_links,
    source_keys,
)
from monitor.match import Matcher
from monitor.models import (
    AlertContent,
    Entry,
    FetchResult,
    Match,
    ParsedFeed,
    PollCounters,
    PollPlan,
    PollRecord,
    PollState,
    SourceToAdd,
    StoryEdit,
    StoryToSave,
)
from monitor.outbox import targets_for
from monitor.parser_pool import ParserPool
from monitor.render import count_of, format_interval
from monitor.run_config import RunConfig, RunFeed
from monitor.schedule import delay_after_failure, interval_after_success, publishing_interval
from monitor.scrape import scrape_page
from monitor.store import FeedState, Store

log = logging.getLogger(__name__)

GONE = "gone (HTTP 410): no longer polled; remove it from the config"

Clock = Callable[[], float]


def is_alertable(entry: Entry, now: float, max_age: float) -> bool:
    """Old stories (a new feed's archive) are stored but not alerted; undated ones count as new."""
    return entry.published is None or now - entry.published <= max_age


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
    plan = PollPlan(tags=matcher.tags)
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
            (match, alert_content(feed_name, entry, match) if alertable else None)
            for match in matcher.match(entry, feed_name)
        ]
        story = StoryToSave(entry, keys, matches)
        plan.new.append(story)
        for key in _batch_keys(keys):
            pending.setdefault(key, story)
    return plan


def alert_content(feed_name: str, entry: Entry, match: Match) -> AlertContent:
    return AlertContent(
        story_title=entry.title,
        link=entry.link,
        feed=feed_name,
        published=entry.published,
        watchlist=match.watchlist,
        keywords=match.keywords,
        terms=match.terms,
        snippet=match.snippet,
        highlight=match.highlight,
    )


def _batch_keys(keys: SourceKeys) -> list[str]:
    """The keys a later entry of the same poll may share with this one's story."""
    return poll_keys(keys)


def _earlier_copy(pending: dict[str, StoryToSave], keys: SourceKeys) -> StoryToSave | None:
    """A story created earlier in the same poll that ``keys`` is a copy of (one feed, so
    the within-feed rules: ``identity.poll_keys``)."""
    return next((pending[key] for key in poll_keys(keys) if key in pending), None)


def feed_display_name(url: str, name: str | None, title: str | None = None) -> str:
    """What a feed is called in alerts and status: its configured name, title, or host."""
    return name or title or urlsplit(url).hostname or url


class _Fetched(NamedTuple):
    """A poll that fetched and parsed something new."""

    result: FetchResult
    parsed: ParsedFeed
    body_hash: str | None
    started: float


class PollOutcome(Struct, frozen=True):
    url: str
    name: str
    ok: bool
    status: int | None = None
    entries: int = 0
    new_stories: int = 0
    alerts_queued: int = 0
    error: str | None = None
    unchanged: bool = False  # 304, or the same body as last time
    gone: bool = False  # 410: the feed is no longer polled
    next_poll_at: float | None = None
    notices: int = 0  # health notices queued for the operators after it (HealthNotices)


class Poller:
    """Polls feeds for one loaded config, and reports what it finds to ``state``."""

    def __init__(
        self,
        config: RunConfig,
        store: Store,
        fetcher: Fetcher,
        *,
        clock: Clock = time.time,
        parser: ParserPool,
        state: PollState | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.clock = clock
        self.parser = parser
        self.state = PollState() if state is None else state
        self.apply_config(config)

    def apply_config(self, config: RunConfig) -> None:
        """Start using a (re)loaded config: feeds rows and matcher."""
        self.config = config
        self.matcher = Matcher(watchlist.spec() for watchlist in config.watchlists)
        self.events = (
            None
            if config.events is None
            else EventIndex(self.store.event_store, config.events.window)
        )
        # A concurrency the user set is kept; the default grows while the machine has room.
        adaptive = not config.concurrency_set
        self._limit = PollLimit(config.concurrency, adaptive=adaptive)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self.state.feeds = self.store.sync_feeds(
            ((feed.url, feed.name) for feed in config.feeds), self.clock()
        )

    @property
    def counters(self) -> PollCounters:
        """Polls since the process started, by outcome."""
        return self.state.counters

    async def poll_all(
        self,
        on_done: Callable[[PollOutcome], None] | None = None,
        *,
        each: Callable[[RunFeed], Awaitable[PollOutcome]] | None = None,
    ) -> list[PollOutcome]:
        """Poll every configured feed once, concurrently, each by ``each`` (``poll``
        unless the runtime adds what follows a poll); ``on_done`` hears of each."""
        poll_one = self.poll if each is None else each

        async def poll(feed: RunFeed) -> PollOutcome:
            outcome = await poll_one(feed)
            if on_done is not None:
                on_done(outcome)
            return outcome

        return list(await asyncio.gather(*(poll(feed) for feed in self.config.feeds)))

    async def poll(self, feed: RunFeed) -> PollOutcome:
        """Poll one feed. A failure is logged and recorded against the feed, never raised."""
        state = self.state.feeds[feed.url]
        name = feed_display_name(feed.url, feed.name)
        if state.gone_at is not None:
            return PollOutcome(feed.url, name, ok=False, status=410, error=GONE, gone=True)
        url = moved_url(feed.url, state.effective_url)
        host = urlsplit(url).hostname or ""
        # The site's slot first: a poll waiting for its site holds none of the shared ones.
        # It is given back after the fetch: the article pages of new stories take it in
        # turn with other feeds' requests.
        site = self._host_limit(host)
        await site.acquire()
        site_held = True
        try:
            async with self._limit:
                try:
                    fetched = await self._fetch(feed, state, url, name)
                finally:
                    site.release()
                    site_held = False
                if isinstance(fetched, PollOutcome):
                    outcome = fetched
                else:
                    outcome = await self._save(feed, state, url, name, fetched)
        finally:
            if site_held:  # cancelled while waiting for a shared slot
                site.release()
        if not outcome.ok:
            self.counters.failed += 1
        elif outcome.unchanged:
            self.counters.unchanged += 1
        else:
            self.counters.ok += 1
        self.state.feeds[feed.url] = self.store.feed_state(state.id)
        return outcome

    async def _fetch(
        self, feed: RunFeed, state: FeedState, url: str, name: str
    ) -> PollOutcome | _Fetched:
        """Fetch and parse; an outcome when the poll ends here (unchanged, failed)."""
        cadence = self.config.cadence(feed)
        started = self.clock()
        try:
            result = await self.fetcher.fetch(
                url,
                timeout=self.config.feed_timeout(feed),
                etag=state.etag,
                last_modified=state.last_modified,
            )
            body_hash = hashlib.sha256(result.body).hexdigest() if result.body else None
            if result.not_modified or (body_hash is not None and body_hash == state.body_hash):
                # Nothing changed: no parsing, no matching, no writes beyond the poll record.
                # The interval is decided again, from the config as it is now (an edited
                # interval takes effect) and the rhythm the last parse found.
                interval = interval_after_success(
                    cadence,
                    rhythm=state.rhythm,
                    update_hint=state.update_hint,
                    max_age=result.max_age,
                )
                record = PollRecord(started, started + interval, status=result.status,
                                    etag=result.etag, last_modified=result.last_modified,
                                    interval=interval, moved_to=result.moved_to,
                                    rhythm=state.rhythm,
                                    update_hint=state.update_hint)  # fmt: skip
                self.store.save_poll(state.id, record, PollPlan())
                return PollOutcome(feed.url, name, ok=True, status=result.status,
                                   unchanged=True, next_poll_at=record.next_poll_at)  # fmt: skip
            if feed.scrape is not None:
                parsed = await asyncio.to_thread(
                    scrape_page, result.body, url=result.url, rule=feed.scrape,
                    content_type=result.content_type, now=self.clock(),
                )  # fmt: skip
            else:
                parsed = await self.parser.parse(
                    result.body, url=result.url, content_type=result.content_type, now=self.clock()
                )
        except FeedError as exc:
            status = exc.status if isinstance(exc, HTTPStatusError) else None
            retry_after = exc.retry_after if isinstance(exc, HTTPStatusError) else None
            gone = status == 410
            delay = delay_after_failure(cadence, state.error_count + 1, retry_after)
            error = GONE if gone else str(exc)
            log.warning("feed %s (%s): %s", name, url, error)
            record = PollRecord(started, started + delay, status=status, error=error, gone=gone)
            self.store.record_failure(state.id, record)
            return PollOutcome(feed.url, name, ok=False, status=status, error=error, gone=gone,
                               next_poll_at=None if gone else record.next_poll_at)  # fmt: skip

        return _Fetched(result, parsed, body_hash, started)

    async def _save(
        self, feed: RunFeed, state: FeedState, url: str, name: str, fetched: _Fetched
    ) -> PollOutcome:
        """Decide what the poll's entries are (after reading new teasers' articles) and
        save it all in one transaction."""
        result, parsed, body_hash, started = fetched
        cadence = self.config.cadence(feed)
        if result.moved_to and result.moved_to != url:
            log.info("feed %s moved permanently to %s", name, result.moved_to)
        now = self.clock()
        name = feed_display_name(feed.url, feed.name, parsed.title)
        shared = shared_links(parsed.entries)
        shared |= self.store.shared_links(
            state.id, [entry.link_key for entry in parsed.entries if entry.link_key]
        )
        keyed = [(entry, source_keys(entry, shared)) for entry in parsed.entries]
        rule = self.config.full_text(feed)
        if rule.mode != "never":
            keyed = await self._read_articles(keyed, state.id, url, rule, now)
        rhythm = publishing_interval(entry.published for entry in parsed.entries)
        interval = interval_after_success(
            cadence, rhythm=rhythm, update_hint=parsed.update_hint, max_age=result.max_age
        )
        record = PollRecord(
            started,
            started + interval,
            status=result.status,
            etag=result.etag,
            last_modified=result.last_modified,
            title=parsed.title,
            interval=interval,
            body_hash=body_hash,
            moved_to=result.moved_to,
            rhythm=rhythm,
            update_hint=parsed.update_hint,
        )
        # Look up and save in one write transaction: another process polling a feed with
        # the same stories at the same moment sees them as known, never stores them twice.
        with self.store.transaction():
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
            saved = self.store.save_poll(state.id, record, plan, self.events)
            queued = saved.queued
            if saved.joined_events:
                self._follow_up(saved.joined_events, now)
        log.info(
            "feed %s: %s, %d new, %s queued; next poll in %s", name,
            count_of(len(parsed.entries), "entry", "entries"), len(plan.new),
            count_of(queued, "alert"), format_interval(interval),
        )  # fmt: skip
        return PollOutcome(
            feed.url,
            name,
            ok=True,
            status=result.status,
            entries=len(parsed.entries),
            new_stories=len(plan.new),
            alerts_queued=queued,
            next_poll_at=record.next_poll_at,
        )

    async def _read_articles(
        self,
        keyed: list[tuple[Entry, SourceKeys]],
        feed_id: int,
        url: str,
        rule: FullTextRule,
        now: float,
    ) -> list[tuple[Entry, SourceKeys]]:
        """New stories whose feed text is a teaser (or all new ones, ``always``) get their
        article page's text; a page that fails leaves the feed's text, and is recorded.
        Only new stories: a story already stored never has its page opened again. The
        identity keys stay those of the feed's entry, so a re-poll is not an edit."""
        max_age = self.config.defaults.max_age
        asking = [
            (entry, keys)
            for entry, keys in keyed
            if entry.link and needs_article(entry, rule, now=now, max_age=max_age)
        ]
        if not asking:  # most polls: no teaser at all, so no need to know which are new
            return keyed
        lookup = self.store.lookup(feed_id, [keys for _, keys in asking], now - TITLE_WINDOW)
        wanted = [
            entry.link
            for entry, keys in asking
            if entry.link and identify(keys, lookup, feed_id)[0] is None
        ]
        if not wanted:
            return keyed
        outcomes = await fetch_articles(
            wanted, self.fetcher, self._host_limit, linked_from=url, select=rule.select,
            limits=ArticleLimits(page_timeout=self.config.defaults.timeout),
        )  # fmt: skip
        failures = []
        out = []
        for entry, keys in keyed:
            outcome = outcomes.get(entry.link or "")
            if outcome is not None:
                entry, failure = with_article(entry, outcome)
                if failure is not None:
                    failures.append(f"{entry.link}: {failure}")
            out.append((entry, keys))
        if failures:
            log.info("feed %s: %d of %d article pages not read; last: %s", url,
                     len(failures), len(wanted), failures[-1])  # fmt: skip
        self.store.record_article_failures(feed_id, failures)
        return out

    def _follow_up(self, events: Sequence[int], now: float) -> None:
        """One message when an event reaches ``events.follow_up_at`` outlets (optional):
        many outlets picking a story up is a signal in itself."""
        settings = self.config.events
        if settings is None or settings.follow_up_at is None:
            return
        for event_id in dict.fromkeys(events):
            reports = self.store.event_reports(event_id)
            earlier = {report.outlet for report in reports[:-1]}
            # Only when the newest report is the one that brings the count to K.
            if len(earlier) != settings.follow_up_at - 1 or reports[-1].outlet in earlier:
                continue
            watchlists = self.store.event_watchlists(event_id)
            policy = self.config.delivery_policy()
            tags = {tag for w in self.config.watchlists if w.name in watchlists for tag in w.notify}
            targets = [t.key for t in targets_for(tags, policy.targets)]
            title, body = follow_up_text([(r.outlet, r.title, r.link) for r in reports])
            self.store.queue_message(title, body, targets, now)
            log.info("event %d: reported by %d outlets, follow-up queued", event_id,
                     settings.follow_up_at)  # fmt: skip

    def _host_limit(self, host: str) -> asyncio.Semaphore:
        """At most ``per_host`` requests at a time to one site, however many feeds it has."""
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.config.per_host)
        return self._hosts[host]
