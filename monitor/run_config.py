"""The config as the program runs on it: plain frozen structs, no pydantic.

``monitor.config`` is the contract (pydantic models: every key's rules, defaults, the
JSON Schema) and ``monitor.config_file`` reads a file against it. What they accept is
turned here (``from_config``) into a ``RunConfig``: the same keys, with the same names,
as msgspec structs that answer what the rest of the program asks of a config
(``delivery_policy``, a feed's ``cadence`` and ``full_text`` rule, a watchlist's
``spec`` for the matcher). Being plain data, a ``RunConfig`` can be cached and read back
without pydantic or YAML (``monitor.config_load``): that is most of the start-up of a
run whose config file has not changed.

Every class here mirrors one model of ``monitor.config`` field for field
(tests/test_run_config.py holds them to it); defaults and validation live there only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Struct

from monitor.article import FullTextRule
from monitor.errors import ConfigError
from monitor.health import HealthRules
from monitor.models import MatchField, WatchlistSpec
from monitor.outbox import DigestSchedule, Policy, QuietHours, Target, WatchlistRules, local_zone
from monitor.render import Format
from monitor.schedule import Cadence
from monitor.scrape import ScrapeRule

if TYPE_CHECKING:
    from monitor.config import Config

CONSOLE_TARGET = "console"  # the outbox key of the console, used when no target is set


class RunDefaults(Struct, frozen=True):
    interval: float
    timeout: float
    max_age: float
    jitter: float
    adaptive: bool
    min_interval: float
    max_interval: float
    max_backoff: float
    full_text: FullTextRule


class RunRetention(Struct, frozen=True):
    story_text: float


class RunFeed(Struct, frozen=True):
    url: str
    name: str | None
    interval: float | None
    timeout: float | None
    full_text: FullTextRule | None
    scrape: ScrapeRule | None


class RunWatchlist(Struct, frozen=True):
    name: str
    keywords: tuple[str, ...]
    aliases: dict[str, tuple[str, ...]]
    require: tuple[str, ...]
    exclude: tuple[str, ...]
    fields: tuple[MatchField, ...]
    notify: tuple[str, ...]
    delivery: Literal["immediate", "digest"] | None
    digest: str | None
    every: float | None
    quiet_hours: QuietHours | None

    def spec(self) -> WatchlistSpec:
        """What matching reads of this watchlist (``monitor.match``)."""
        return WatchlistSpec(
            name=self.name,
            keywords=self.keywords,
            fields=self.fields,
            aliases=self.aliases,
            require=self.require,
            exclude=self.exclude,
            notify=self.notify,
        )

    @property
    def digest_schedule(self) -> DigestSchedule | None:
        if self.digest is None and self.every is None:
            return None
        return DigestSchedule(cron=self.digest, every=self.every)


class RunTarget(Struct, frozen=True):
    url: str
    tags: tuple[str, ...]
    format: Format | None
    quiet_hours: QuietHours | None
    line: int = 0  # where its url is in the config file, for messages about it

    @property
    def key(self) -> str:
        """Names the target in the outbox without its secrets, stable across restarts."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]


class RunTemplates(Struct, frozen=True):
    title: str | None
    text: str | None
    markdown: str | None
    html: str | None

    def overrides(self) -> dict[str, str]:
        return {
            name: text
            for name, text in msgspec.structs.asdict(self).items()
            if isinstance(text, str)
        }


class RunAlerts(Struct, frozen=True):
    max_attempts: int
    retry_after: float
    max_retry_after: float
    burst_limit: int
    send_timeout: float
    templates: RunTemplates


class RunHTTP(Struct, frozen=True):
    listen: str


class RunHealth(Struct, frozen=True):
    notify: tuple[str, ...]
    failing_after: float
    silence_factor: float
    min_silence: float

    def rules(self) -> HealthRules:
        return HealthRules(self.failing_after, self.silence_factor, self.min_silence)


class RunEvents(Struct, frozen=True):
    window: float
    follow_up_at: int | None


class RunConfig(Struct, frozen=True):
    """A validated configuration. ``path`` is the file it came from."""

    path: Path
    database: Path  # absolute, or relative to the working directory
    concurrency: int
    per_host: int
    user_agent: str | None
    allow_private_redirects: bool
    defaults: RunDefaults
    retention: RunRetention
    timezone: str | None
    alerts: RunAlerts
    http: RunHTTP | None
    health: RunHealth | None
    events: RunEvents | None
    feeds: tuple[RunFeed, ...]
    watchlists: tuple[RunWatchlist, ...]
    notify: tuple[RunTarget, ...]
    # False when loaded without the notify URLs' secrets (``load_config(need_targets=False)``):
    # such a config can read and show, not deliver.
    targets_ready: bool = True
    # Whether the file sets ``concurrency``: then it is kept; else it grows while the
    # machine has room (``monitor.concurrency``).
    concurrency_set: bool = False

    def delivery_policy(self) -> Policy:
        """What the outbox needs to know: targets (the console if none), rules, retries."""
        if not self.targets_ready:
            # A target's outbox key is made from its full URL: without the secrets every
            # delivery would be routed to a target that does not exist.
            raise ConfigError([f"{self.path}: notify targets were loaded without their secrets"])
        targets = [
            Target(target.key, frozenset(target.tags), target.quiet_hours) for target in self.notify
        ] or [Target(CONSOLE_TARGET)]
        rules = {w.name: WatchlistRules(w.digest_schedule, w.quiet_hours) for w in self.watchlists}
        a = self.alerts
        return Policy(targets, rules, ZoneInfo(self.timezone) if self.timezone else local_zone(),
                      a.burst_limit, a.max_attempts, a.retry_after, a.max_retry_after)  # fmt: skip

    def feed_interval(self, feed: RunFeed) -> float:
        """The feed's interval (its own, else the default), within ``min_interval`` and
        ``max_interval`` as ``check`` says (``interval_warnings``)."""
        d = self.defaults
        return min(max(feed.interval or d.interval, d.min_interval), d.max_interval)

    def feed_timeout(self, feed: RunFeed) -> float:
        return feed.timeout or self.defaults.timeout

    def full_text(self, feed: RunFeed) -> FullTextRule:
        return feed.full_text or self.defaults.full_text

    def cadence(self, feed: RunFeed) -> Cadence:
        """A feed's scheduling. An ``interval`` set on the feed itself is kept as set (the
        user said how often to poll that one); ``defaults.interval`` is where adaptive
        scheduling starts. The publisher's hints and the floor apply to both."""
        d = self.defaults
        adaptive = d.adaptive and feed.interval is None
        return Cadence(self.feed_interval(feed), d.min_interval, d.max_interval, d.max_backoff,
                       adaptive)  # fmt: skip


def _as_path(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value)
    raise NotImplementedError(kind)


def from_config(config: Config, *, target_lines: dict[int, int] | None = None) -> RunConfig:
    """The ``RunConfig`` of a validated config; ``target_lines`` are the lines of the
    notify targets' URLs, by index, for messages about them."""
    run = msgspec.convert(config, RunConfig, from_attributes=True, dec_hook=_as_path)
    lines = target_lines or {}
    return msgspec.structs.replace(
        run,
        concurrency_set="concurrency" in config.model_fields_set,
        targets_ready=config.targets_ready,
        notify=tuple(
            msgspec.structs.replace(target, line=lines.get(i, 0))
            for i, target in enumerate(run.notify)
        ),
    )


def to_document(config: RunConfig) -> Any:
    """``config`` as JSON-ready data (dicts, lists, strings, numbers), which
    ``from_document`` reads back."""
    return msgspec.to_builtins(config, enc_hook=str)


def from_document(document: Any) -> RunConfig:
    """A ``RunConfig`` from ``to_document``'s data; ``msgspec.ValidationError`` if it is
    not one (an older version's, say)."""
    return msgspec.convert(document, RunConfig, dec_hook=_as_path)


def to_json(config: RunConfig) -> bytes:
    """``config`` as JSON, which ``from_json`` reads back."""
    return msgspec.json.encode(config, enc_hook=str)


def from_json(data: bytes) -> RunConfig:
    """A ``RunConfig`` from ``to_json``'s bytes; ``msgspec.ValidationError`` or
    ``msgspec.DecodeError`` if they are not one."""
    return msgspec.json.decode(data, type=RunConfig, dec_hook=_as_path)
