"""Reading a config file: YAML with line numbers, ``${VAR}`` and credentials, and errors
explained by file, line and key.

``validate_config`` reads the YAML (PyYAML's C parser; aliases that
refer to themselves or explode are refused), fills in ``${VAR}`` from the environment and
``${credential:NAME}`` from systemd's credentials (``$${`` is a literal ``${``; every
value filled in is remembered as a secret, see ``monitor.redact``), validates the result
against the models of ``monitor.config``, and turns every problem into
``FILE:LINE: key: message``, with a "did you mean" for a mistyped key. The program
loads its config through ``monitor.config_load.load_config``, which comes here when the
file (or a secret, or the program) has changed since the config was last validated.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from monitor.config import Config, Loc, _KeyedError
from monitor.config_load import (
    CONFIG_ENV_VAR,
    ENV_RE,
    MAX_CONFIG_BYTES,
    read_at_most,
    secret_value,
)
from monitor.errors import ConfigError
from monitor.redact import remember_config_credentials, remember_secret
from monitor.units import format_duration

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def validate_config(
    path: str | Path,
    environ: dict[str, str] | None = None,
    *,
    check_notify: bool = True,
    need_targets: bool = True,
    raw: bytes | None = None,
) -> Config:
    """Read, expand and validate the config file, or raise ``ConfigError`` listing every
    problem. ``raw`` is the file's content when the caller has read it already. The flags
    are ``monitor.config_load.load_config``'s, which explains them.
    """
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    try:
        if raw is None:
            raw = read_at_most(path, MAX_CONFIG_BYTES)
        if raw is None:
            raise ConfigError(
                [f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MB: not a config file"]
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (looked in {Path.cwd()})"
        raise ConfigError(
            [f"{path}: config file not found{where}; give --config PATH or set {CONFIG_ENV_VAR}"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc}"]) from None

    try:
        data, lines = _read_yaml(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        problem = " ".join(str(p) for p in (exc.problem, exc.context) if p)
        hint = _yaml_hint(text, line, problem)
        raise ConfigError([f"{path}:{line}: invalid YAML: {problem or exc}{hint}"]) from None
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

    filled: set[str] = set()
    if need_targets:
        missing = list(_expand_env(data, environ, filled))
    else:
        targets = data.pop("notify", None)
        missing = list(_expand_env(data, environ, filled))
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
    problems = list(_cross_problems(data))
    try:
        config = Config.model_validate(
            {**data, "path": path}, context={"check_notify": check_notify}
        )
    except ValidationError as exc:
        problems += _explain(exc)
    if problems:
        # Each once, in the order of the file's lines (the order someone fixes them in).
        located = sorted((_locate(lines, loc), _dotted(loc), message) for loc, message in problems)
        raise ConfigError(
            list(dict.fromkeys(f"{path}:{line}: {key}: {msg}" for line, key, msg in located))
        )

    database = Path(os.path.expanduser(config.database))
    if not database.is_absolute():
        database = Path(os.path.normpath(path.parent / database))
    config = config.model_copy(update={"database": database})
    remember_config_credentials((f.url for f in config.feeds), (t.url for t in config.notify))
    config._lines = lines
    config._targets_expanded = need_targets
    config._filled = frozenset(filled)
    return config


# What PyYAML's messages mean for someone editing a config by hand.
_INDENTATION_PROBLEMS = (
    "did not find expected '-' indicator",
    "mapping values are not allowed",
    "expected <block end>",
    "did not find expected key",
)


# key: value: more (an unquoted value holding ": ").
_UNQUOTED_COLON_RE = re.compile(r"""^\s*(?:-\s+)?[^\s:#'"][^:#]*:\s+[^\s'"{\[][^#]*?:(?:\s|$)""")


def _yaml_hint(text: str, line: int, problem: str) -> str:
    """A plain-words hint for the commonest hand-editing mistakes, or ''."""
    lines = text.splitlines()
    near = lines[max(0, line - 2) : line] if line else []
    if "\t" in problem or any("\t" in row[: len(row) - len(row.lstrip())] for row in near):
        return " (a tab character: YAML indents with spaces only)"
    row = lines[line - 1] if 0 < line <= len(lines) else ""
    if "mapping values are not allowed" in problem and _UNQUOTED_COLON_RE.match(row):
        return ' (a value with ": " in it needs quotes: name: "Breaking: News")'
    if any(known in problem for known in _INDENTATION_PROBLEMS):
        return " (check this line's indentation against the lines above it)"
    return ""


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


def _expand_env(
    node: Any, environ: dict[str, str], filled: set[str], loc: Loc = ()
) -> Iterator[tuple[Loc, str]]:
    """Replace ``${VAR}`` in every string in place (and ``$${`` by a literal ``${``);
    yield (loc, message) for unset ones, add the names of the others to ``filled``. Every
    value filled in is remembered as a secret (``monitor.redact``): it is never printed."""
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
            values = {name: secret_value(name, environ) for name in names}
            missing = [name for name, found in values.items() if found is None]
            if missing:
                yield here, _missing_message(missing, environ)
            else:
                filled.update(values)
                for found in values.values():
                    remember_secret(found or "")
                node[key] = _PLACEHOLDER_RE.sub(functools.partial(_fill, values), value)
        else:
            yield from _expand_env(value, environ, filled, here)


# ``$${`` is a literal ``${`` (as in docker-compose and systemd): how text that must not be
# expanded, such as an imported feed URL, is written into the config.
_PLACEHOLDER_RE = re.compile(r"\$(\$\{)|" + ENV_RE.pattern)


def escape_placeholders(text: str) -> str:
    """``text`` written so that config loading reads it back literally (``${`` -> ``$${``)."""
    return text.replace("${", "$${")


def _fill(values: dict[str, str | None], match: re.Match[str]) -> str:
    if match.group(1):
        return "${"
    return values[match.group(2)] or ""


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


def _explain(exc: ValidationError) -> list[tuple[Loc, str]]:
    """Each of pydantic's errors as the key it is about and a message for people."""
    problems: list[tuple[Loc, str]] = []
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
        problems.append((loc, message))
    return problems


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


def notify_lines(config: Config) -> dict[int, int]:
    """The line of each notify target's URL, by index, for messages about it."""
    return {i: line_of(config, "notify", i, "url") for i in range(len(config.notify))}


def line_of(config: Config, *loc: str | int) -> int:
    """The line of the key at ``loc`` (or of its nearest parent the file has)."""
    return _locate(config._lines, loc)
