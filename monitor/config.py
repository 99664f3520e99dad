"""The config contract: pydantic models of every key, with their rules and defaults.

Durations, tags, quiet hours, digests, regex terms, CSS selectors and notify URLs are
validated here, each rule once; a problem is a ``ValueError`` that names what is wrong.
Reading a file (YAML with line numbers, ``${VAR}``, turning errors into ``FILE:LINE:
key``) is ``monitor.config_file``. The models also give the JSON Schema editors use.

The program does not run on these models: what they accept becomes a
``monitor.run_config.RunConfig`` (plain structs, the same keys), which answers what the
rest of the program asks of a config. ``monitor.config_load.load_config`` is the way in.
"""

from __future__ import annotations

import functools
import os
import time
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# No pydantic plugins for these models: looking for them scans the metadata of every
# installed package (about 10 ms of every start), and none has any business with the
# config. pydantic's documented switch, read when the first model below is built; a value
# the environment already sets is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import msgspec
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from monitor.alert import notify_url_problem
from monitor.article import FullTextMode, check_selector
from monitor.models import MatchField, WatchlistSpec
from monitor.outbox import QUIET_HOURS_PATTERN, DigestSchedule, QuietHours
from monitor.pattern import PatternError, compile_user_pattern, is_regex_term
from monitor.redact import has_control_characters
from monitor.render import Format, check_template
from monitor.run_config import RunWatchlist
from monitor.units import MAX_DURATION, parse_duration, parse_listen

Loc = tuple[str | int, ...]  # where a value is in the document: keys and list indexes


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


def _quiet_hours(value: object) -> QuietHours:
    if isinstance(value, QuietHours):
        return value
    if isinstance(value, str):
        return QuietHours.parse(value)
    raise ValueError(f"{value!r} is not a span of time such as 22:00-07:00")


QuietHoursSpan = Annotated[
    QuietHours,
    PlainValidator(_quiet_hours),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{QUIET_HOURS_PATTERN}$",
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


def _printable(text: str | None) -> str | None:
    """Names are shown in terminals, alerts and exported files: no control characters."""
    if text is not None and has_control_characters(text):
        raise ValueError("must not contain control characters (line breaks, escapes, NUL)")
    return text


PrintableName = Annotated[str, AfterValidator(_printable)]


class FeedConfig(_Model):
    url: str
    name: PrintableName | None = None
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
        if "%" in parts.hostname:
            raise ValueError(f"{parts.hostname!r} is not a host name")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:  # given, and not a number from 1 to 65535
            raise ValueError("has a port that is not a number from 1 to 65535")
        return url.strip()


def _check_terms(terms: list[str]) -> list[str]:
    """Terms are non-empty; ``/.../`` terms must be regular expressions RE2 can run."""
    out = []
    for term in terms:
        term = term.strip()
        if not term:
            raise ValueError("terms must not be empty")
        if is_regex_term(term):
            try:
                compile_user_pattern(term[1:-1])
            except PatternError as exc:
                raise ValueError(f"{term} is not a valid regular expression: {exc}") from None
        out.append(term)
    return out


class Watchlist(_Model):
    name: PrintableName = Field(min_length=1)
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

    def spec(self) -> WatchlistSpec:
        """What matching reads of this watchlist (the rule is ``RunWatchlist.spec``)."""
        return msgspec.convert(self, RunWatchlist, from_attributes=True).spec()

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

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str, info: ValidationInfo) -> str:
        url = url.strip()
        if "://" not in url:
            raise ValueError("not a notification URL (expected scheme://...)")
        if (info.context or {}).get("check_notify", True) and (problem := notify_url_problem(url)):
            raise ValueError(problem)
        return url


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
    # The ${VAR} and ${credential:NAME} names whose values were filled in: secrets
    _filled: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def targets_ready(self) -> bool:
        """Whether the notify URLs have their secrets filled in, so alerts can be sent."""
        return self._targets_expanded

    @property
    def secret_names(self) -> frozenset[str]:
        """The ``${VAR}`` and ``${credential:NAME}`` whose values were filled in."""
        return self._filled

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


class _KeyedError(ValueError):
    """A cross-field problem that knows which key it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (shipped as config.schema.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Config.model_json_schema(),
        "title": "feed-monitor config",
        "description": "Feeds, keyword watchlists and alert targets for feed-monitor.",
    }
