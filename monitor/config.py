"""Configuration: read the YAML file, expand ``${VAR}``, validate, and explain mistakes.

This module owns the config contract (the models below) and the error messages a
user sees for a bad file. Every problem is reported as ``FILE:LINE: key.path: what is
wrong``, all problems at once, and never with a traceback: the models are validated
by pydantic, and each pydantic error is mapped back to the YAML line it came from.

Relative paths (``database``) are resolved against the directory of the config file,
so the daemon finds the same database whatever directory it is started from.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import apprise
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from monitor.errors import ConfigError
from monitor.schedule import Cadence

DEFAULT_CONFIG_PATH = Path("config/monitor.yaml")
CONFIG_ENV_VAR = "FEED_MONITOR_CONFIG"

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(value: object) -> float:
    """Seconds in ``90s``, ``15m``, ``1h``, ``1d``, ``2w`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 15m, 1h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration such as 90s, 15m, 1h or 1d")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the units ``parse_duration`` reads."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _as_list(value: object) -> object:
    """Let a single string stand for a one-item list (``tags: analysts``)."""
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class _Model(BaseModel):
    # Strict about keys (a typo must not be silently ignored) but not about YAML's
    # scalar types, and immutable once loaded.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Model):
    """Per-feed settings that a feed entry may override."""

    interval: Duration = 900.0
    timeout: Duration = 20.0
    max_age: Duration = 7 * 86400.0
    jitter: Duration = 30.0
    adaptive: bool = True  # follow the feed's publishing rhythm and hints
    min_interval: Duration = 300.0
    max_interval: Duration = 12 * 3600.0
    max_backoff: Duration = 6 * 3600.0


class Retention(_Model):
    """How long stored text is kept. Identity keys are kept forever (a few bytes a story)."""

    story_text: Duration = 365 * 86400.0


class FeedConfig(_Model):
    url: str
    name: str | None = None
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url.strip()


MatchField = Literal["title", "summary", "content", "link", "feed"]


def _check_terms(terms: list[str]) -> list[str]:
    """Terms are non-empty; ``/.../`` terms must be valid regular expressions."""
    out = []
    for term in terms:
        term = term.strip()
        if not term:
            raise ValueError("terms must not be empty")
        if len(term) > 2 and term.startswith("/") and term.endswith("/"):
            try:
                re.compile(term[1:-1])
            except re.error as exc:
                raise ValueError(f"{term} is not a valid regular expression: {exc}") from None
        out.append(term)
    return out


class Watchlist(_Model):
    name: str = Field(min_length=1)
    keywords: StrList = Field(min_length=1)
    aliases: dict[str, StrList] = {}  # other names of a keyword, reported as that keyword
    require: StrList = []
    exclude: StrList = []
    fields: Annotated[list[MatchField], BeforeValidator(_as_list)] = Field(
        default=["title", "summary", "content"], min_length=1
    )
    notify: StrList = []

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

    @field_validator("url")
    @classmethod
    def _apprise_understands(cls, url: str) -> str:
        # Never echo the URL in the message: it usually carries a password or token.
        if apprise.Apprise.instantiate(url.strip()) is None:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            hint = f" (scheme {scheme!r})" if scheme else ""
            raise ValueError(f"not a notification URL that Apprise can use{hint}")
        return url.strip()


class Config(_Model):
    """A validated configuration. ``path`` is the file it came from."""

    path: Path
    database: Path = Path("data/monitor.db")
    concurrency: int = Field(default=16, ge=1, le=256)
    per_host: int = Field(default=2, ge=1, le=64)  # concurrent requests to one host
    user_agent: str | None = None  # default: feed-monitor/VERSION (...)
    defaults: Defaults = Defaults()
    retention: Retention = Retention()
    feeds: list[FeedConfig] = []
    watchlists: list[Watchlist] = []
    notify: list[Annotated[NotifyTarget, BeforeValidator(_url_or_target)]] = []

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.defaults.min_interval > self.defaults.max_interval:
            raise _KeyedError(
                ("defaults", "min_interval"), "must not be longer than defaults.max_interval"
            )
        seen: set[str] = set()
        for i, feed in enumerate(self.feeds):
            if feed.url in seen:
                raise _KeyedError(("feeds", i, "url"), "this feed is listed twice")
            seen.add(feed.url)
        names: set[str] = set()
        for i, watchlist in enumerate(self.watchlists):
            if watchlist.name in names:
                raise _KeyedError(("watchlists", i, "name"), "another watchlist has this name")
            names.add(watchlist.name)
        known_tags = {tag for target in self.notify for tag in target.tags}
        for i, watchlist in enumerate(self.watchlists):
            for tag in watchlist.notify:
                if tag not in known_tags:
                    known = ", ".join(sorted(known_tags)) or "none are defined"
                    raise _KeyedError(
                        ("watchlists", i, "notify"),
                        f"unknown tag {tag!r}: no notify target has it (known tags: {known})",
                    )
        return self

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval or self.defaults.interval

    def feed_timeout(self, feed: FeedConfig) -> float:
        return feed.timeout or self.defaults.timeout

    def cadence(self, feed: FeedConfig) -> Cadence:
        d = self.defaults
        return Cadence(self.feed_interval(feed), d.min_interval, d.max_interval, d.max_backoff,
                       d.adaptive)  # fmt: skip


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


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, expand and validate the config file, or raise ``ConfigError`` listing every problem."""
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc}"]) from None

    try:
        tree = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        problem = " ".join(str(p) for p in (exc.problem, exc.context) if p)
        raise ConfigError([f"{path}:{line}: invalid YAML: {problem or exc}"]) from None
    except YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, CommentedMap):
        raise ConfigError(
            [f"{path}:1: the config must be a mapping of keys (database, feeds, ...)"]
        )

    problems = [
        f"{path}:{line}: {_dotted(loc)}: {msg}" for loc, line, msg in _expand_env(tree, environ)
    ]
    if problems:
        raise ConfigError(problems)

    data = _plain(tree)
    data.pop("path", None)
    try:
        config = Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, tree, path)) from None

    database = Path(os.path.expanduser(config.database))
    if not database.is_absolute():
        database = Path(os.path.normpath(path.parent / database))
    return config.model_copy(update={"database": database})


def _expand_env(
    node: Any, environ: dict[str, str], loc: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], int, str]]:
    """Replace ``${VAR}`` in every string in place; yield (loc, line, message) for unset ones."""
    items: list[tuple[str | int, Any]]
    if isinstance(node, CommentedMap):
        items = list(node.items())
    elif isinstance(node, CommentedSeq):
        items = list(enumerate(node))
    else:
        return
    for key, value in items:
        if isinstance(value, str) and "${" in value:
            missing = [name for name in _ENV_RE.findall(value) if name not in environ]
            if missing:
                names = ", ".join(missing)
                yield (*loc, key), _line_of(node, key), f"environment variable {names} is not set"
            else:
                node[key] = _ENV_RE.sub(lambda m: environ[m.group(1)], value)
        else:
            yield from _expand_env(value, environ, (*loc, key))


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _line_of(node: Any, key: str | int) -> int:
    """1-based line of ``key`` inside a ruamel mapping or sequence."""
    try:
        if isinstance(node, CommentedMap):
            return int(node.lc.key(key)[0]) + 1
        if isinstance(node, CommentedSeq):
            return int(node.lc.item(key)[0]) + 1
    except (KeyError, IndexError, TypeError):
        pass
    return int(getattr(getattr(node, "lc", None), "line", 0) or 0) + 1


def _locate(tree: CommentedMap, loc: tuple[str | int, ...]) -> tuple[int, Any]:
    """The line of the deepest part of ``loc`` present in the YAML, and the node there."""
    node: Any = tree
    line = 1
    for part in loc:
        in_map = isinstance(node, CommentedMap) and part in node
        in_seq = isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node)
        if in_map or in_seq:
            line = _line_of(node, part)
            node = node[part]
        else:
            break
    return line, node


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model accepts at ``loc``, for 'did you mean' hints."""
    sections: dict[str, type[BaseModel]] = {
        "defaults": Defaults,
        "retention": Retention,
        "feeds": FeedConfig,
        "watchlists": Watchlist,
        "notify": NotifyTarget,
    }
    model = sections.get(str(loc[0]), Config) if loc else Config
    return [name for name in model.model_fields if name != "path"]


def _explain(exc: ValidationError, tree: CommentedMap, path: Path) -> list[str]:
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
        line, _ = _locate(tree, loc)
        problems.append(f"{path}:{line}: {_dotted(loc)}: {message}")
    return problems
