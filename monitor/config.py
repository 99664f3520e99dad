"""Configuration: read the YAML file, expand ``${VAR}``, validate, and explain mistakes.

This module owns the config contract (the models below) and the error messages a
user sees for a bad file. Every problem is reported as ``FILE:LINE: key.path: what is
wrong``, all problems at once, and never with a traceback: the models are validated
by pydantic, and each pydantic error is mapped back to the YAML line it came from
(PyYAML's C parser gives every key's line).

Relative paths (``database``) are resolved against the directory of the config file,
so the daemon finds the same database whatever directory it is started from.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
import time
import typing
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from monitor.article import FullTextMode, FullTextRule, check_selector
from monitor.errors import ConfigError
from monitor.health import HealthRules
from monitor.outbox import (
    DigestSchedule,
    Policy,
    QuietHours,
    Target,
    WatchlistRules,
    local_zone,
)
from monitor.pattern import PatternError, compile_user_pattern
from monitor.redact import remember_secret
from monitor.render import Format, check_template
from monitor.schedule import Cadence
from monitor.scrape import ScrapeRule

DEFAULT_CONFIG_PATH = Path("config/monitor.yaml")
CONFIG_ENV_VAR = "FEED_MONITOR_CONFIG"

CONSOLE_TARGET = "console"  # the outbox key of the console, used when no target is set
Loc = tuple[str | int, ...]  # where a value is in the document: keys and list indexes

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
# ${VAR}: an environment variable; ${credential:NAME}: a systemd credential (LoadCredential=)
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|credential:[A-Za-z0-9_.@-]+)\}")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# The longest duration any key takes: ten years. Longer values are typing mistakes
# (`99999999999999999999w`), and would overflow the datetimes the scheduler computes.
MAX_DURATION = 3650 * 86400.0


def parse_duration(value: object, floor: float = 0.0) -> float:
    """Seconds in ``90s``, ``15m``, ``1h``, ``1d``, ``2w`` or a plain number of seconds.

    Every duration key goes through here: the value must be finite, greater than zero
    and ``floor``, and at most ``MAX_DURATION``.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 15m, 1h or 1d")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
            seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
        else:
            raise ValueError(f"{value!r} is not a duration such as 90s, 15m, 1h or 1d")
    except OverflowError:  # float() of an int with hundreds of digits
        seconds = math.inf
    if math.isnan(seconds):
        raise ValueError("a duration must be a number of seconds, not NaN")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds < floor:
        raise ValueError(f"must be at least {format_duration(floor)}")
    if seconds > MAX_DURATION:
        raise ValueError(f"must not be longer than {format_duration(MAX_DURATION)} (ten years)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the units ``parse_duration`` reads."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _duration(floor: float, why: str) -> tuple[BeforeValidator, WithJsonSchema]:
    """The validator and schema of a duration key whose values are at least ``floor``."""
    schema = {
        "anyOf": [
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]?\s*$"},
            {"type": "number", "exclusiveMinimum": 0, "minimum": floor, "maximum": MAX_DURATION},
        ],
        "description": f"a duration: 90s, 15m, 1h, 1d, 2w, or seconds; {why}",
    }
    return BeforeValidator(functools.partial(parse_duration, floor=floor)), WithJsonSchema(schema)


# Floors. Anything the daemon does on a schedule (polls, digests, retries, health
# checks) waits at least a second: below that a job is due again before it finishes
# and the scheduler spins (`every: 0.000001s` held a core at 99.7%). One second, not a
# minute, because tests and demos legitimately poll every second and send a digest
# every 2 s (tests/test_daemon.py, tests/test_delivery.py). A fetch gets at least a
# second too: less cannot complete a TLS handshake.
_SECOND_VALIDATOR, _SECOND_SCHEMA = _duration(1.0, "at least 1s")
Duration = Annotated[float, _SECOND_VALIDATOR, _SECOND_SCHEMA]
# Jitter is a random delay added to a poll, never a period: any positive value is safe.
_JITTER_VALIDATOR, _JITTER_SCHEMA = _duration(0.0, "greater than zero")
Jitter = Annotated[float, _JITTER_VALIDATOR, _JITTER_SCHEMA]
# Stored text kept less than an hour would be gone before most digests and backtests
# could show it: a value that short is a unit mistake (1m for a month).
_RETENTION_VALIDATOR, _RETENTION_SCHEMA = _duration(3600.0, "at least 1h")
RetentionPeriod = Annotated[float, _RETENTION_VALIDATOR, _RETENTION_SCHEMA]


def _as_list(value: object) -> object:
    """Let a single string stand for a one-item list (``tags: analysts``)."""
    return [value] if isinstance(value, str) else value


StrList = Annotated[
    list[str],
    BeforeValidator(_as_list),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


def _quiet_hours(value: object) -> object:
    return QuietHours.parse(value) if isinstance(value, str) else value


QuietHoursSpan = Annotated[
    QuietHours,
    BeforeValidator(_quiet_hours),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$",
            "description": "a daily span of local time, such as 22:00-07:00",
        }
    ),
]


class _Model(BaseModel):
    # Strict about keys (a typo must not be silently ignored) but not about YAML's
    # scalar types, and immutable once loaded.
    # NaN and infinity are never a meaningful setting (`silence_factor: .inf`).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FullTextSettings(_Model):
    """``full_text: {select: "article .body"}``: when to open a story's page, and which
    part of it is the article (for a site the extractor reads wrong)."""

    mode: FullTextMode = "auto"
    select: str | None = None

    @field_validator("select")
    @classmethod
    def _usable_selector(cls, css: str | None) -> str | None:
        if css is not None and (problem := check_selector(css)):
            raise ValueError(problem)
        return css

    def rule(self) -> FullTextRule:
        return FullTextRule(self.mode, self.select)


def _full_text_mode(value: object) -> object:
    """``full_text: always`` is short for ``full_text: {mode: always}``."""
    return {"mode": value} if isinstance(value, str) else value


# auto: open the page of a new story whose feed text is a teaser; always; never.
FullText = Annotated[
    FullTextSettings,
    BeforeValidator(_full_text_mode),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": ["auto", "always", "never"]},
                {
                    "type": "object",
                    "properties": {
                        "mode": {"enum": ["auto", "always", "never"]},
                        "select": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            ],
            "description": "when to open a new story's page to match its whole article",
        }
    ),
]


class ScrapeSettings(_Model):
    """A web page with a list of items and no feed, described by CSS selectors."""

    item: str
    title: str | None = None
    link: str | None = None
    date: str | None = None
    summary: str | None = None

    @field_validator("item", "title", "link", "date", "summary")
    @classmethod
    def _usable_selector(cls, css: str | None) -> str | None:
        if css is not None and (problem := check_selector(css) if css.strip() else "empty"):
            raise ValueError(problem)
        return css

    def rule(self) -> ScrapeRule:
        return ScrapeRule(self.item, self.title, self.link, self.date, self.summary)


class Defaults(_Model):
    """Per-feed settings that a feed entry may override."""

    interval: Duration = 900.0
    timeout: Duration = 20.0
    max_age: Duration = 7 * 86400.0
    jitter: Jitter = 30.0
    adaptive: bool = True  # follow the feed's publishing rhythm and hints
    min_interval: Duration = 300.0
    max_interval: Duration = 12 * 3600.0
    max_backoff: Duration = 6 * 3600.0
    full_text: FullText = FullTextSettings()  # open teasers' pages: match the whole article


class Retention(_Model):
    """How long stored text is kept. Identity keys are kept forever (a few bytes a story)."""

    story_text: RetentionPeriod = 365 * 86400.0


class FeedConfig(_Model):
    url: str
    name: str | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    full_text: FullText | None = None
    scrape: ScrapeSettings | None = None  # the URL is a web page, read by these selectors

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url.strip()


MatchField = Literal["title", "summary", "content", "link", "feed"]


def _check_terms(terms: list[str]) -> list[str]:
    """Terms are non-empty; ``/.../`` terms must be regular expressions RE2 can run."""
    out = []
    for term in terms:
        term = term.strip()
        if not term:
            raise ValueError("terms must not be empty")
        if len(term) > 2 and term.startswith("/") and term.endswith("/"):
            try:
                compile_user_pattern(term[1:-1])
            except PatternError as exc:
                raise ValueError(f"{term} is not a valid regular expression: {exc}") from None
        out.append(term)
    return out


class Watchlist(_Model):
    name: str = Field(min_length=1)
    keywords: StrList = Field(min_length=1)
    aliases: dict[str, StrList] = {}  # other names of a keyword, reported as that keyword
    require: StrList = []
    exclude: StrList = []
    fields: Annotated[
        list[MatchField],
        BeforeValidator(_as_list, json_schema_input_type=MatchField | list[MatchField]),
    ] = Field(default=["title", "summary", "content"], min_length=1)
    notify: StrList = []
    # Delivery: immediate (default), or held and sent as a digest on a schedule.
    delivery: Literal["immediate", "digest"] | None = None
    digest: str | None = None  # a crontab line, such as "0 8 * * *"
    every: Duration | None = None  # or a digest every so often, such as 1h
    quiet_hours: QuietHoursSpan | None = None  # such as 22:00-07:00, in `timezone`

    @field_validator("digest")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is None:
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise ValueError(f"{cron!r} is not a crontab line such as '0 8 * * *': {exc}") from None
        # A valid line may name a day that never comes (31 February): the digest would
        # hold its alerts forever. Whether it fires does not depend on the time zone.
        try:
            DigestSchedule(cron=cron).next_after(time.time(), UTC)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return cron.strip()

    @model_validator(mode="after")
    def _one_digest_schedule(self) -> Watchlist:
        if self.digest is not None and self.every is not None:
            raise ValueError("give either digest (a crontab line) or every (a duration), not both")
        if self.delivery == "digest" and self.digest is None and self.every is None:
            raise ValueError("delivery: digest needs digest: '0 8 * * *' or every: 1h")
        if self.delivery == "immediate" and (self.digest is not None or self.every is not None):
            raise ValueError("delivery: immediate cannot have a digest schedule")
        return self

    @property
    def digest_schedule(self) -> DigestSchedule | None:
        if self.digest is None and self.every is None:
            return None
        return DigestSchedule(cron=self.digest, every=self.every)

    @field_validator("keywords", "require", "exclude")
    @classmethod
    def _valid_terms(cls, terms: list[str]) -> list[str]:
        return _check_terms(terms)

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, aliases: dict[str, list[str]]) -> dict[str, list[str]]:
        return {keyword.strip(): _check_terms(names) for keyword, names in aliases.items()}

    @model_validator(mode="after")
    def _aliases_name_keywords(self) -> Watchlist:
        for keyword in self.aliases:
            if keyword not in self.keywords:
                raise ValueError(f"aliases: {keyword!r} is not one of this watchlist's keywords")
        return self


def _url_or_target(value: object) -> object:
    return {"url": value} if isinstance(value, str) else value


class NotifyTarget(_Model):
    url: str
    tags: StrList = []
    format: Format | None = None  # default: what the service reads best
    quiet_hours: QuietHoursSpan | None = None

    @property
    def key(self) -> str:
        """Names the target in the outbox without its secrets, stable across restarts."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str, info: ValidationInfo) -> str:
        url = url.strip()
        if "://" not in url:
            raise ValueError("not a notification URL (expected scheme://...)")
        if (info.context or {}).get("check_notify", True) and (problem := notify_url_problem(url)):
            raise ValueError(problem)
        return url


def notify_url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url``, or None. Never echoes the URL: it usually carries
    a password or token."""
    import apprise  # loading every Apprise plugin takes 0.25 s; only pay it when needed

    # Apprise logs the URL it cannot parse, secrets and all; the message below is ours.
    apprise_log = logging.getLogger("apprise")
    was_disabled, apprise_log.disabled = apprise_log.disabled, True
    try:
        if apprise.Apprise.instantiate(url) is not None:
            return None
    finally:
        apprise_log.disabled = was_disabled
    return f"not a notification URL that Apprise can use (scheme {url.split('://', 1)[0]!r})"


class Templates(_Model):
    """Alert templates (``string.Template``: ``$title``, ``${feed}``...), one per format."""

    title: str | None = None
    text: str | None = None
    markdown: str | None = None
    html: str | None = None

    @field_validator("title", "text", "markdown", "html")
    @classmethod
    def _valid_template(cls, text: str | None) -> str | None:
        if text is not None and (problem := check_template(text)):
            raise ValueError(problem)
        return text

    def overrides(self) -> dict[str, str]:
        return {name: text for name, text in self.model_dump().items() if text is not None}


class AlertSettings(_Model):
    """How alerts are delivered: retries, the burst guard, templates."""

    max_attempts: int = Field(default=12, ge=1, le=1000)
    retry_after: Duration = 60.0  # the first retry; doubles after each failure
    max_retry_after: Duration = 3600.0
    burst_limit: int = Field(default=5, ge=1)  # alerts for one target from one poll
    # The longest one send may take, however slowly a target answers. Apprise's own socket
    # timeouts are set just under it: a receiver slower than this may get a copy later.
    send_timeout: Duration = Field(default=60.0, ge=1.0, le=3600.0)
    templates: Templates = Templates()


class HealthSettings(_Model):
    """Notices to operators about feeds that fail or fall silent (one per change)."""

    notify: StrList = Field(min_length=1)  # tags of the targets that get notices
    failing_after: Duration = 6 * 3600.0  # failing every poll this long
    silence_factor: float = Field(default=10.0, gt=1)  # no new story for this many usual gaps
    min_silence: Duration = 2 * 86400.0  # ...and never less than this

    def rules(self) -> HealthRules:
        return HealthRules(self.failing_after, self.silence_factor, self.min_silence)


class EventSettings(_Model):
    """One alert per event: later reports of the same story from other outlets join it."""

    window: Duration = 48 * 3600.0  # a report joins an event first seen this recently
    # Optional: one follow-up message when an event reaches this many outlets.
    follow_up_at: int | None = Field(default=None, ge=2, le=1000)


def _events_switch(value: object) -> object:
    """``events: false`` turns grouping off; ``events: true`` keeps the defaults."""
    if value is False:
        return None
    return {} if value is True else value


class HTTPSettings(_Model):
    """The daemon's optional /healthz and /metrics endpoint."""

    listen: str = "127.0.0.1:9465"  # host:port; keep it on localhost

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        if parse_listen(listen) is None:
            raise ValueError(
                f"{listen!r} is not host:port, such as 127.0.0.1:9465 or [::1]:9465 "
                "(a host name or IP address, an IPv6 address in brackets, a port 1-65535)"
            )
        return listen.strip()


_LISTEN_RE = re.compile(
    r"\[(?P<ipv6>[0-9A-Fa-f:.]+)\]:(?P<port6>[0-9]{1,5})|(?P<host>[^:\[\]]+):(?P<port>[0-9]{1,5})"
)
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def parse_listen(listen: str) -> tuple[str, int] | None:
    """``host:port`` (IPv6 in brackets) as the host to bind and the port, or None."""
    m = _LISTEN_RE.fullmatch(listen.strip())
    if m is None:
        return None
    port = int(m["port6"] or m["port"])
    if not 0 < port < 65536:
        return None
    if m["ipv6"] is not None:
        try:
            return str(ipaddress.IPv6Address(m["ipv6"])), port
        except ValueError:
            return None
    host = m["host"]
    labels = host.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):  # looks like IPv4: must be one
        try:
            return str(ipaddress.IPv4Address(host)), port
        except ValueError:
            return None
    if len(host) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in labels):
        return None
    return host, port


class Config(_Model):
    """A validated configuration. ``path`` is the file it came from."""

    path: SkipJsonSchema[Path]  # the file it came from; not a key of the file
    database: Path = Path("data/monitor.db")
    concurrency: int = Field(default=16, ge=1, le=256)
    per_host: int = Field(default=2, ge=1, le=64)  # concurrent requests to one host
    user_agent: str | None = None  # default: feed-monitor/VERSION (...)
    # A redirect from a public address into loopback, private or link-local space (and a
    # linked page there) is refused unless this is set; see fetch.RedirectPolicy.
    allow_private_redirects: bool = False
    defaults: Defaults = Defaults()
    retention: Retention = Retention()
    timezone: str | None = None  # for digests and quiet hours; default: the machine's
    alerts: AlertSettings = AlertSettings()
    http: HTTPSettings | None = None  # off unless set
    health: HealthSettings | None = None  # off unless set
    # On unless `events: false`.
    events: Annotated[EventSettings | None, BeforeValidator(_events_switch)] = EventSettings()
    feeds: list[FeedConfig] = []
    watchlists: list[Watchlist] = []
    notify: list[
        Annotated[
            NotifyTarget, BeforeValidator(_url_or_target, json_schema_input_type=str | NotifyTarget)
        ]
    ] = []
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)  # of each key, for messages
    # False when loaded without the notify URLs' secrets (``load_config(need_targets=False)``)
    _targets_expanded: bool = PrivateAttr(default=True)

    @property
    def targets_ready(self) -> bool:
        """Whether the notify URLs have their secrets filled in, so alerts can be sent."""
        return self._targets_expanded

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.defaults.min_interval > self.defaults.max_interval:
            raise _KeyedError(
                ("defaults", "min_interval"), "must not be longer than defaults.max_interval"
            )
        return self

    @field_validator("database", mode="before")
    @classmethod
    def _usable_path(cls, path: object) -> object:
        text = str(path) if isinstance(path, str | Path) else None
        if text is not None and not text.strip():
            raise ValueError("must be a file path, such as data/monitor.db")
        if text is not None and "\x00" in text:
            raise ValueError("must not contain a NUL character")
        return path

    @field_validator("user_agent")
    @classmethod
    def _printable(cls, text: str | None) -> str | None:
        if text is not None and (not text.isprintable() or not text.isascii()):
            raise ValueError("must be printable ASCII (it is sent as an HTTP header)")
        return text

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r} (try Europe/Berlin or UTC)") from None
        return name

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

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval or self.defaults.interval

    def feed_timeout(self, feed: FeedConfig) -> float:
        return feed.timeout or self.defaults.timeout

    def full_text(self, feed: FeedConfig) -> FullTextRule:
        return (feed.full_text or self.defaults.full_text).rule()

    def cadence(self, feed: FeedConfig) -> Cadence:
        d = self.defaults
        return Cadence(self.feed_interval(feed), d.min_interval, d.max_interval, d.max_backoff,
                       d.adaptive)  # fmt: skip


def _cross_problems(data: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    """Problems across entries, found in the raw document: a feed listed twice, two
    watchlists with one name, a tag no target has. Values of the wrong shape are skipped
    here: validation reports them."""

    def items(key: str) -> list[tuple[int, dict[str, Any]]]:
        value = data.get(key)
        entries = value if isinstance(value, list) else []
        return [(i, item) for i, item in enumerate(entries) if isinstance(item, dict)]

    def strings(value: object) -> list[str]:
        value = [value] if isinstance(value, str) else value
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    seen_urls: set[str] = set()
    for i, feed in items("feeds"):
        if isinstance(url := feed.get("url"), str):
            if url.strip() in seen_urls:
                yield ("feeds", i, "url"), "this feed is listed twice"
            seen_urls.add(url.strip())
    names: set[str] = set()
    for i, watchlist in items("watchlists"):
        if isinstance(name := watchlist.get("name"), str):
            if name in names:
                yield ("watchlists", i, "name"), "another watchlist has this name"
            names.add(name)
    raw_targets = data.get("notify")
    targets = raw_targets if isinstance(raw_targets, list) else []
    known_tags = {
        tag for target in targets if isinstance(target, dict) for tag in strings(target.get("tags"))
    }
    routed: list[tuple[Loc, object]] = [
        (("watchlists", i, "notify"), watchlist.get("notify"))
        for i, watchlist in items("watchlists")
    ]
    health = data.get("health")
    if isinstance(health, dict):
        routed.append((("health", "notify"), health.get("notify")))
    for loc, tags in routed:
        for tag in strings(tags):
            if tag not in known_tags:
                known = ", ".join(sorted(known_tags)) or "none are defined"
                yield loc, f"unknown tag {tag!r}: no notify target has it (known tags: {known})"
                break


class _KeyedError(ValueError):
    """A cross-field problem that knows which key it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


def resolve_config_path(path: str | Path | None) -> Path:
    """``--config``, else ``$FEED_MONITOR_CONFIG``, else ``config/monitor.yaml``."""
    if path:
        return Path(path)
    if env := os.environ.get(CONFIG_ENV_VAR):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def load_config(
    path: str | Path,
    environ: dict[str, str] | None = None,
    *,
    check_notify: bool = True,
    need_targets: bool = True,
) -> Config:
    """Read, expand and validate the config file, or raise ``ConfigError`` listing every problem.

    ``check_notify=False`` leaves asking Apprise about the notify URLs to
    ``check_notify_urls``, for a run that may have nothing to send.

    ``need_targets=False`` is for commands that send nothing (status, search, alerts...):
    the notify URLs are left as written, ``${VAR}`` and all, so their secrets need not be
    set (nor systemd credentials be readable). Such a config cannot deliver:
    ``Config.targets_ready`` is False and ``delivery_policy`` refuses.
    """
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc}"]) from None

    try:
        data, lines = _read_yaml(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        problem = " ".join(str(p) for p in (exc.problem, exc.context) if p)
        raise ConfigError([f"{path}:{line}: invalid YAML: {problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    except _DuplicateKey as exc:
        raise ConfigError(
            [f"{path}:{exc.line}: {_dotted(exc.loc)}: this key is given twice"]
        ) from None
    except _BadDocument as exc:
        raise ConfigError([f"{path}:{exc.line}: {_dotted(exc.loc)}: {exc.message}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}:1: the config must be a mapping of keys (database, feeds, ...)"]
        )

    if need_targets:
        missing = list(_expand_env(data, environ))
    else:
        targets = data.pop("notify", None)
        missing = list(_expand_env(data, environ))
        if targets is not None:
            data["notify"] = targets
        check_notify = False  # Apprise cannot judge a URL whose secrets are not filled in
    if missing:
        raise ConfigError(
            [f"{path}:{_locate(lines, loc)}: {_dotted(loc)}: {msg}" for loc, msg in missing]
        )

    data.pop("path", None)
    # Checks across entries (a name given twice, an unknown tag) read the document as
    # written, so they are reported with every other problem, not only once the rest is
    # fixed (the model's own cross-checks run only on an otherwise valid config).
    problems = [
        f"{path}:{_locate(lines, loc)}: {_dotted(loc)}: {message}"
        for loc, message in _cross_problems(data)
    ]
    try:
        config = Config.model_validate(
            {**data, "path": path}, context={"check_notify": check_notify}
        )
    except ValidationError as exc:
        problems += _explain(exc, lines, path)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # each once, in order

    database = Path(os.path.expanduser(config.database))
    if not database.is_absolute():
        database = Path(os.path.normpath(path.parent / database))
    config = config.model_copy(update={"database": database})
    config._lines = lines
    config._targets_expanded = need_targets
    return config


def interval_warnings(config: Config) -> list[str]:
    """Intervals the schedule will not keep: below ``defaults.min_interval`` (raised to
    it) or above ``defaults.max_interval`` (lowered to it), each with its file and line."""
    d = config.defaults
    given: list[tuple[Loc, str, float]] = []
    if "interval" in d.model_fields_set:
        given.append((("defaults", "interval"), "defaults", d.interval))
    for i, feed in enumerate(config.feeds):
        if feed.interval is not None:
            name = feed.name or urlsplit(feed.url).hostname or feed.url
            given.append((("feeds", i, "interval"), f"feed {name!r}", feed.interval))
    warnings = []
    for loc, whose, interval in given:
        if interval < d.min_interval:
            change, bound, used = "raised", "below defaults.min_interval", d.min_interval
        elif interval > d.max_interval:
            change, bound, used = "lowered", "above defaults.max_interval", d.max_interval
        else:
            continue
        where = f"{config.path}:{_locate(config._lines, loc)}: {_dotted(loc)}"
        warnings.append(
            f"{where}: {whose}: interval {format_duration(interval)} is {bound} "
            f"{format_duration(used)}; {change} to {format_duration(used)}"
        )
    return warnings


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (shipped as config.schema.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Config.model_json_schema(),
        "title": "feed-monitor config",
        "description": "Feeds, keyword watchlists and alert targets for feed-monitor.",
    }


def check_notify_urls(config: Config) -> None:
    """Raise ``ConfigError`` for notify URLs Apprise cannot use (see ``load_config``)."""
    problems = []
    for index, target in enumerate(config.notify):
        if problem := notify_url_problem(target.url):
            loc: Loc = ("notify", index, "url")
            line = _locate(config._lines, loc)
            problems.append(f"{config.path}:{line}: {_dotted(loc)}: {problem}")
    if problems:
        raise ConfigError(problems)


class _DuplicateKey(Exception):
    def __init__(self, loc: Loc, line: int) -> None:
        self.loc, self.line = loc, line


class _BadDocument(Exception):
    def __init__(self, loc: Loc, node: yaml.Node, message: str) -> None:
        self.loc, self.line, self.message = loc, node.start_mark.line + 1, message


def _read_yaml(text: str) -> tuple[Any, dict[Loc, int]]:
    """The document's data, and the 1-based line of every key and list item in it."""
    reader = _YAMLReader(text)
    try:
        return reader.read(), reader.lines
    finally:
        reader.loader.dispose()


class _YAMLReader:
    """Builds a document's data from PyYAML's node tree in one walk, noting lines.

    PyYAML's C parser makes the nodes; strings, lists and mappings are built here
    (PyYAML's pure-Python constructor took 20 ms for a config of 400 feeds, most of a
    warm ``once``). Other scalars, and mappings with merge keys (``<<``), go to PyYAML.
    """

    MAX_NODES = 1_000_000  # aliases can make a small file a huge tree ("billion laughs")

    def __init__(self, text: str) -> None:
        self.loader = _Loader(text)
        self.lines: dict[Loc, int] = {}
        self._visited = 0
        self._open: set[int] = set()  # nodes being built: an alias to one is a cycle

    def read(self) -> Any:
        node = self.loader.get_single_node()
        return None if node is None else self._build(node, ())

    def _build(self, node: yaml.Node, loc: Loc) -> Any:
        self._visited += 1
        if self._visited > self.MAX_NODES:
            raise _BadDocument(loc, node, "too many values (aliases expanding a huge tree?)")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value
            return self.loader.construct_object(node, deep=True)
        if id(node) in self._open:
            raise _BadDocument(loc, node, "an alias refers to a value that contains it")
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self._item(item, (*loc, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return self.loader.construct_object(node, deep=True)
        finally:
            self._open.discard(id(node))

    def _item(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        return self._build(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> Any:
        plain = all(
            isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG for key, _ in node.value
        )
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            here = (*loc, str(key_node.value))
            if here in self.lines:
                raise _DuplicateKey(here, key_node.start_mark.line + 1)
            value = self._item(value_node, here)
            self.lines[here] = key_node.start_mark.line + 1
            if plain:
                out[self._build(key_node, here)] = value
        return out if plain else self.loader.construct_object(node, deep=True)


def _expand_env(node: Any, environ: dict[str, str], loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    """Replace ``${VAR}`` in every string in place (and ``$${`` by a literal ``${``);
    yield (loc, message) for unset ones. Every value filled in is remembered as a secret
    (``monitor.redact``): it is never printed."""
    items: list[tuple[Any, Any]]
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return
    for key, value in items:
        here = (*loc, key if isinstance(key, int) and isinstance(node, list) else str(key))
        if isinstance(value, str) and "${" in value:
            names = [m.group(2) for m in _PLACEHOLDER_RE.finditer(value) if m.group(2)]
            values = {name: _secret(name, environ) for name in names}
            missing = [name for name, found in values.items() if found is None]
            if missing:
                yield here, _missing_message(missing, environ)
            else:
                for found in values.values():
                    remember_secret(found or "")
                node[key] = _PLACEHOLDER_RE.sub(functools.partial(_fill, values), value)
        else:
            yield from _expand_env(value, environ, here)


# ``$${`` is a literal ``${`` (as in docker-compose and systemd): how text that must not be
# expanded, such as an imported feed URL, is written into the config.
_PLACEHOLDER_RE = re.compile(r"\$(\$\{)|" + _ENV_RE.pattern)


def escape_placeholders(text: str) -> str:
    """``text`` written so that config loading reads it back literally (``${`` -> ``$${``)."""
    return text.replace("${", "$${")


def _fill(values: dict[str, str | None], match: re.Match[str]) -> str:
    if match.group(1):
        return "${"
    return values[match.group(2)] or ""


def _secret(name: str, environ: dict[str, str]) -> str | None:
    """An environment variable's value, or a systemd credential's (without its newline)."""
    if not name.startswith("credential:"):
        return environ.get(name)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    try:
        return (Path(directory) / name.removeprefix("credential:")).read_text().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def _missing_message(names: list[str], environ: dict[str, str]) -> str:
    variables = [name for name in names if not name.startswith("credential:")]
    credentials = [name.removeprefix("credential:") for name in names if name not in variables]
    parts = []
    if variables:
        parts.append(f"environment variable {', '.join(variables)} is not set")
    if credentials:
        where = environ.get("CREDENTIALS_DIRECTORY")
        parts.append(
            f"credential {', '.join(credentials)} is not in $CREDENTIALS_DIRECTORY ({where})"
            if where
            else f"credential {', '.join(credentials)}: no $CREDENTIALS_DIRECTORY "
            "(set LoadCredential= in the systemd unit)"
        )
    return "; ".join(parts)


def _locate(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the deepest part of ``loc`` that the document has (a missing key's
    parent, say); 1 when none."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fields_at(loc: Loc) -> list[str]:
    """The keys the model accepts at ``loc``, for 'did you mean' hints.

    Walks the config models along ``loc`` (``("alerts", "templates")``,
    ``("feeds", 0)``), so every section, present or future, hints its own keys.
    """
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the items are what the field's type names
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return [name for name in model.model_fields if name != "path"]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model inside a field's type (``list[X]``, ``X | None``, ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _explain(exc: ValidationError, lines: dict[Loc, int], path: Path) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _KeyedError):
            loc, message = cause.loc, str(cause)
        elif error["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = _fields_at(loc[:-1])
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            message = f"unknown key{hint}"
        elif error["type"] == "missing":
            message = "this key is required"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{path}:{_locate(lines, loc)}: {_dotted(loc)}: {message}")
    return problems
