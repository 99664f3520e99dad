"""Editing the config file in place: adding and removing feeds, keeping the user's
comments and layout (ruamel.yaml's round-trip mode; reading for runs stays with PyYAML's
faster C parser in ``monitor.config``).

Every edit is validated as a whole config before it replaces the file, and replaces it
atomically (a running daemon reloads it within seconds).

Values written here come from outside the file (an OPML file, the command line), so they
are literal: a ``${VAR}`` in them is written as ``$${VAR}``, never expanded from the
environment (an imported URL must not be able to ask for a secret), and a value with a
control character (a newline would forge lines of output) is refused.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from monitor.config_file import escape_placeholders, validate_config
from monitor.errors import ConfigError
from monitor.redact import has_control_characters, redact_text, terminal_safe


class NewFeed(Struct, frozen=True):
    url: str
    name: str | None = None


def add_feeds(
    path: Path, feeds: Sequence[NewFeed], *, check_only: bool = False
) -> tuple[list[str], list[str]]:
    """Append feeds not yet listed; returns (added URLs, URLs already listed).

    ``check_only``: refuse what the edit would refuse, and report what is already
    listed, but leave the file as it is (``feeds add`` asks before it fetches anything).
    """
    document, yaml = _read(path)
    listed = _feed_list(path, document)
    known = {_url_of(item) for item in listed}
    added, skipped = [], []
    for feed in feeds:
        _refuse_control_characters(path, feed)
        url = escape_placeholders(feed.url)
        if url in known:
            skipped.append(feed.url)
            continue
        item = CommentedMap({"url": url})
        if feed.name:
            item["name"] = escape_placeholders(feed.name)
        listed.append(item)
        known.add(url)
        added.append(feed.url)
    if added:
        _write(path, document, yaml, replace=not check_only)
    return added, skipped


def _refuse_control_characters(path: Path, feed: NewFeed) -> None:
    for key, value in (("url", feed.url), ("name", feed.name or "")):
        if has_control_characters(value):
            raise ConfigError([
                f"{path}: feeds: the new feed's {key} contains a control character "
                f"(such as a newline): {terminal_safe(redact_text(value))}"
            ])  # fmt: skip


def remove_feed(path: Path, url: str) -> bool:
    """Remove the feed with this URL (False: none is listed); its stored stories stay in
    the database."""
    document, yaml = _read(path)
    listed = _feed_list(path, document)
    for index, item in enumerate(listed):
        if _url_of(item) in (url, escape_placeholders(url)):
            del listed[index]
            _write(path, document, yaml)
            return True
    return False


def _read(path: Path) -> tuple[Any, YAML]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc}"]) from None
    yaml = YAML()  # round-trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's long lines
    mapping, sequence, offset = _indentation(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    try:
        document = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: invalid YAML: values nested too deeply"]) from None
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise ConfigError([f"{path}:1: the config must be a mapping of keys"])
    return document, yaml


def _indentation(text: str) -> tuple[int, int, int]:
    """The file's own list indentation (``- url`` or ``  - url`` under ``feeds:``)."""
    found = re.search(
        r"^(?:feeds|watchlists|notify):[ \t]*\n(?:[ \t]*#.*\n)*([ \t]*)- ", text, re.M
    )
    offset = len(found.group(1)) if found else 2
    return 2, offset + 2, offset


def _feed_list(path: Path, document: CommentedMap) -> CommentedSeq:
    feeds = document.get("feeds")
    if feeds is not None and not isinstance(feeds, list):
        # Edited as a list it would become one feed per character (`feeds: abc`).
        line = document.lc.key("feeds")[0] + 1
        raise ConfigError(
            [f"{path}:{line}: feeds: must be a list of feeds (- url: ...); fix it by hand"]
        )
    if not isinstance(feeds, CommentedSeq) or (feeds.fa.flow_style() and not feeds):
        fresh = CommentedSeq(list(feeds or []))
        document["feeds"] = fresh
        return fresh
    return feeds


def _url_of(item: object) -> str | None:
    if isinstance(item, dict):
        return str(item.get("url", "")).strip() or None
    return str(item).strip() if isinstance(item, str) else None


def _write(path: Path, document: CommentedMap, yaml: YAML, *, replace: bool = True) -> None:
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    # A symlinked config is edited where it lives (the link stays a link); anything but
    # a regular file (a device, a FIFO) is never replaced.
    real = Path(os.path.realpath(path))
    if not real.is_file():
        raise ConfigError([f"{path}: not a regular file; edit it by hand"])
    # Validate the edited file as a config before it replaces the old one, then swap it
    # in atomically, keeping the file's permissions and group (it may hold secrets).
    fd, temp = tempfile.mkstemp(prefix=".monitor-", suffix=".yaml", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(buffer.getvalue())
        status = real.stat()
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.chown(temp, status.st_uid, status.st_gid)
        os.chmod(temp, status.st_mode & 0o7777)
        try:
            validate_config(temp, need_targets=False)  # an edit of the feeds needs no secrets
        except ConfigError as exc:
            problems = [problem.replace(temp, str(path)) for problem in exc.problems]
            raise ConfigError(["the edit would make the config invalid:", *problems]) from None
        if replace:
            os.replace(temp, real)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
