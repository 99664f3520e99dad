"""Plain typed objects that flow forward through the pipeline.

fetch → ``FetchResult`` → parse → ``ParsedFeed`` of ``Entry`` → decide (``plan_poll``:
identity, ``Match`` per watchlist, ``AlertContent`` per alert) → ``PollPlan`` → store →
outbox (an ``AlertContent`` is rendered per target when sent).
They are plain data (picklable, no behaviour beyond small derived properties) so a
stage can run in another thread or process and be tested on its own. Beside them: what
matching reads of a watchlist (``WatchlistSpec``, made from the config's model), and the
``PollState`` the Poller reports each feed's state to, for the daemon to schedule from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, get_args

from msgspec import Struct, field

if TYPE_CHECKING:
    from monitor.identity import SourceKeys
    from monitor.store import FeedState


class FetchResult(Struct, frozen=True):
    """What one HTTP poll of a feed brought back."""

    url: str  # the final URL, after redirects
    status: int  # 200, or 304 when the server says nothing changed
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    moved_to: str | None = None  # the new address, when every redirect was permanent
    max_age: float | None = None  # Cache-Control: max-age, seconds

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class Entry(Struct, frozen=True):
    """One feed entry, already normalized to plain text."""

    key: str  # identity within its feed: guid, else link, else a hash of title and date
    title: str
    link: str | None  # only http(s) links survive parsing
    summary: str = ""
    content: str = ""
    published: float | None = None  # Unix time (UTC); None when the feed gives no sane date
    author: str | None = None
    # Identity keys (see monitor/identity.py), computed where the entry is parsed, in a
    # worker process; None when the entry was made elsewhere and they are not known yet.
    title_key: str | None = None
    link_key: str | None = None  # canonical link
    opaque_link: bool | None = None  # the link says nothing of the story
    full_text: bool = False  # content is the article page's text (monitor/article.py)


class ParsedFeed(Struct, frozen=True):
    title: str | None
    entries: list[Entry] = field(default_factory=list)
    # How often the feed says it may be polled (<ttl>, sy:updatePeriod/Frequency), seconds.
    update_hint: float | None = None


class Match(Struct, frozen=True):
    """A story that satisfied a watchlist: which keywords, and how the story spells them."""

    watchlist: str
    keywords: tuple[str, ...]  # as written in the watchlist
    terms: tuple[str, ...]  # as spelled in the story
    snippet: str  # text around the first match
    highlight: tuple[int, int]  # where that first match sits in the snippet


class AlertContent(Struct, frozen=True):
    """What an alert says, kept in the outbox and rendered for each target when sent."""

    story_title: str
    link: str | None
    feed: str
    published: float | None
    watchlist: str
    keywords: tuple[str, ...]
    terms: tuple[str, ...]
    snippet: str
    highlight: tuple[int, int]  # where the first match sits in the snippet
    # Other outlets that reported the same event by the time it is sent (not stored).
    also_reported_by: tuple[str, ...] = ()


# What a watchlist can match, in the order a match reports its terms.
MatchField = Literal["title", "summary", "content", "link", "feed"]
MATCH_FIELDS: tuple[MatchField, ...] = get_args(MatchField)


class WatchlistSpec(Struct, frozen=True):
    """What matching (``monitor.match``) reads of a watchlist: plain data, made from the
    config's ``Watchlist`` by ``Watchlist.spec()`` only, so the matcher knows no pydantic."""

    name: str
    keywords: tuple[str, ...]
    fields: tuple[MatchField, ...]  # where its terms count
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # keyword → others
    require: tuple[str, ...] = ()  # all must occur too
    exclude: tuple[str, ...] = ()  # none may occur
    notify: tuple[str, ...] = ()  # the tags of the targets its alerts go to


class PollCounters(Struct):
    """Polls since the process started, by outcome (for /metrics)."""

    ok: int = 0
    unchanged: int = 0
    failed: int = 0
    started_at: float = field(default_factory=time.time)


class PollState(Struct):
    """What polling has found so far, for those who schedule and report on it: each
    configured feed's state as last recorded, by URL, and the counters of this process's
    polls. The ``Poller`` keeps it up to date; the daemon (scheduling, /healthz, /metrics)
    and the health notices read it, without reaching into the Poller."""

    feeds: dict[str, FeedState] = field(default_factory=dict)
    counters: PollCounters = field(default_factory=PollCounters)


# What a poll decided (``pipeline.plan_poll``), for the store to carry out. -----------


class PollRecord(Struct, frozen=True):
    """The outcome of one poll, to be remembered against its feed."""

    polled_at: float
    next_poll_at: float
    status: int | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    interval: float | None = None
    body_hash: str | None = None
    moved_to: str | None = None
    gone: bool = False
    rhythm: float | None = None  # on success: what the feed's entries said (see FeedState)
    update_hint: float | None = None


class StoryToSave(Struct):
    """A new story with what the pipeline decided about it: its matches and alerts."""

    entry: Entry
    source: SourceKeys
    matches: list[tuple[Match, AlertContent | None]]  # None: matched, but too old to alert
    copies: list[SourceKeys] = field(default_factory=list)  # the same story again, this poll


class SourceToAdd(Struct, frozen=True):
    """A known story seen under a new feed, link or guid: remembered, never alerted."""

    story_id: int
    source: SourceKeys


class StoryEdit(Struct, frozen=True):
    """A known story whose publisher edited it: the stored text follows."""

    story_id: int
    entry: Entry
    source: SourceKeys


class PollPlan(Struct):
    new: list[StoryToSave] = field(default_factory=list)
    sources: list[SourceToAdd] = field(default_factory=list)
    edits: list[StoryEdit] = field(default_factory=list)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # of each watchlist
