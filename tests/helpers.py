"""Helpers shared by the tests: feed documents, config files, and the command line run in
this process (``cli``) or as a process of its own (``cli_process``).

Fixtures live in conftest.py; everything else the tests share is here.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from html import escape
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from monitor.cli import cli as cli_group

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def rss(items: Sequence[dict[str, Any]], title: str = "Test Feed") -> str:
    """An RSS 2.0 document; each item may have title, link, guid, description, published,
    source."""
    parts = []
    for item in items:
        fields = []
        for tag in ("title", "link", "guid", "description"):
            if tag in item:
                fields.append(f"<{tag}>{escape(item[tag])}</{tag}>")
        if "source" in item:  # an aggregator's source element: (name, url)
            name, url = item["source"]
            fields.append(f'<source url="{escape(url)}">{escape(name)}</source>')
        if "published" in item:
            fields.append(f"<pubDate>{formatdate(item['published'], usegmt=True)}</pubDate>")
        parts.append("<item>" + "".join(fields) + "</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        f"<description>test</description>{''.join(parts)}</channel></rss>"
    )


def seed_article_item(
    link: str = "https://bulgarianmilitary.com/2020/08/s400-turkey/",
) -> dict[str, Any]:
    """The sample article (tests/data/seed-article.txt) as a feed item published just now."""
    text = (DATA / "seed-article.txt").read_text(encoding="utf-8")
    headline, _, rest = text.partition("\n")
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in rest.split("\n") if p.strip())
    return {
        "title": headline.strip(),
        "link": link,
        "guid": link,
        "description": paragraphs,
        "published": time.time() - 3600,
    }


def numbered_items(title: str, count: int, key: str = "") -> list[dict[str, Any]]:
    """``count`` fresh stories, ``title`` with ``{n}`` filled in as 0, 1, ..."""
    now = time.time()
    return [
        {"title": title.format(n=n), "link": f"https://e.org/{key}{n}", "guid": f"{key or 'g'}{n}",
         "published": now - 60}
        for n in range(count)
    ]  # fmt: skip


def write_config(
    directory: Path,
    *,
    feeds: Sequence[str],
    notify: Sequence[str] = (),
    keywords: Sequence[str] = ("S-400", "CAATSA", "F-35"),
    extra: str = "",
    defaults: str = "{interval: 15m, timeout: 5s, max_age: 7d, jitter: 0.1s}",
) -> Path:
    if "full_text" not in defaults:
        # Test feeds link to made-up hosts (e.org): opening their article pages would only
        # wait for DNS. The tests of full text (test_full_text.py) say what they want.
        defaults = defaults.rstrip().removesuffix("}") + ", full_text: never}"
    lines = [
        "database: monitor.db",
        f"defaults: {defaults}",
        "feeds:" + ("" if feeds else " []"),
        *(f"  - url: {url}" for url in feeds),
        "watchlists:",
        "  - name: turkey-air-defense",
        f"    keywords: [{', '.join(keywords)}]",
        "notify:" + ("" if notify else " []"),
        *(f'  - "{url}"' for url in notify),
        extra,
    ]
    path = directory / "monitor.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def edited(text: str, change: Callable[[dict[str, Any]], object]) -> str:
    """Config text edited by its structure: loaded as YAML, changed in place by
    ``change``, dumped again."""
    document = yaml.safe_load(text)
    change(document)
    return yaml.safe_dump(document, sort_keys=False)


def edit_config(path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """Edit the config file at ``path`` by its structure (see ``edited``), in one write."""
    path.write_text(edited(path.read_text(encoding="utf-8"), change), encoding="utf-8")
    return path


def misspell_keywords(config: dict[str, Any]) -> None:
    """The first watchlist's ``keywords`` renamed ``keywordz``: a config that is refused."""
    watchlist = config["watchlists"][0]
    watchlist["keywordz"] = watchlist.pop("keywords")


def add_keyword(word: str) -> Callable[[dict[str, Any]], None]:
    """An edit that adds ``word`` to the first watchlist's keywords."""

    def change(config: dict[str, Any]) -> None:
        config["watchlists"][0]["keywords"].insert(0, word)

    return change


def config_line(path: Path, text: str) -> int:
    """The number of the first line of ``path`` that contains ``text``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@dataclass
class CliResult:
    """What a run of the command line did, shaped like ``subprocess.CompletedProcess``."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


# Loggers whose levels the command line sets for its verbosity (cli.configure_logging).
# Apprise's logger is left as alert.Notifier sets it, once, for the whole process (its
# level and its secret-masking filter), as in a daemon that runs for months.
_LOGGERS = ("aiohttp", "apscheduler")


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """Put logging back as it was: the command line configures the root logger on every
    run (``basicConfig(force=True)``) with a handler on the stream the run printed to."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers), list(root.filters))
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved_root[1]:
                handler.close()
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        root.filters[:] = saved_root[2]
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _working_directory(cwd: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def cli(*args: str | Path, env: Mapping[str, str] | None = None, cwd: Path = REPO) -> CliResult:
    """Run ``feed-monitor ARGS`` in this process (click's ``CliRunner``), as a user would
    from ``cwd`` with ``env`` added to the environment and no $FEED_MONITOR_CONFIG, and
    capture what it prints. An uncaught exception is on stderr as its traceback, as it
    would be from a process of its own.

    For what needs a process boundary (signals, kill -9, two processes at once, locks
    between processes, a progress bar on a terminal, exit with stuck threads), use
    ``cli_process``."""
    argv = [str(arg) for arg in args]
    environ: dict[str, str | None] = {"FEED_MONITOR_CONFIG": None, **(env or {})}
    with logging_kept(), _working_directory(cwd):
        result = CliRunner().invoke(cli_group, argv, env=environ, prog_name="feed-monitor")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        stderr += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return CliResult(argv, result.exit_code, result.stdout, stderr)


def cli_process(
    *args: str | Path, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m monitor ARGS`` as a process of its own, and capture what it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FEED_MONITOR_CONFIG", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "monitor", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kwargs.pop("cwd", REPO),
        env=env,
        check=False,
        **kwargs,
    )


class DirectoryChanges:
    """Linux inotify on a directory: ``wait`` returns when a file in it has been written,
    created, moved or removed since the last call (SQLite writes its WAL on every commit,
    so another process's commit to a database in the directory is such a change)."""

    _MASK = 0x2 | 0x8 | 0x80 | 0x100 | 0x200  # MODIFY, CLOSE_WRITE, MOVED_TO, CREATE, DELETE

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self._fd, os.fsencode(directory), self._MASK) < 0:
            errno = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(errno, f"inotify_add_watch({directory}) failed")

    def wait(self, deadline: float, what: str = "a change") -> None:
        """Block until a change (or fail the test at the ``time.monotonic`` ``deadline``)."""
        left = deadline - time.monotonic()
        readable, _, _ = select.select([self._fd], [], [], max(left, 0))
        if not readable:
            raise AssertionError(f"waited in vain for {what}")
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 65536):
                pass

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> DirectoryChanges:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
