"""The one exception tree of feed-monitor.

Errors from outside (aiohttp, feedparser, sqlite3, YAML, pydantic) are wrapped once,
at the module that talks to them, into one of these; the CLI is the only place
they turn into messages and exit codes::

    MonitorError
    ├── ConfigError          the config file cannot be used (names file, line, key)
    ├── StoreError           the SQLite database cannot be opened or written
    │   ├── StoreBusyError   another process holds it for the same job (a second daemon)
    │   └── DatabaseFault    the database file is damaged, deleted or replaced: stop
    ├── FeedError            one feed could not be polled; affects that feed only
    │   ├── FetchError       network trouble: DNS, refused, timeout, too large, redirects
    │   │   └── HTTPStatusError   the server answered with a 4xx/5xx status
    │   ├── ParseError       the body is not a usable RSS/Atom feed (or scraped page)
    │   └── ArticleError     a story's page gave no article text; its feed text is used
    └── ServiceError         the daemon cannot offer what its config asks (a port in use)
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error feed-monitor raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class StoreError(MonitorError):
    """The database could not be opened, migrated or written."""


class DatabaseFault(StoreError):
    """The database file is damaged, or was deleted or replaced while in use.

    No retry can help: a command stops, and so does the daemon (with a non-zero exit, so
    a supervisor restarts it on whatever file is now at the path).
    """


class FeedError(MonitorError):
    """A single feed failed; the run goes on with the others."""


class FetchError(FeedError):
    """The feed's bytes could not be fetched."""


class HTTPStatusError(FetchError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after  # seconds, from a 429/503's Retry-After header
        super().__init__(message)


class ParseError(FeedError):
    """The fetched bytes are not a usable feed."""


class ArticleError(FeedError):
    """A story's linked page gave no usable article text (not HTML, too large, empty)."""


class StoreBusyError(StoreError):
    """Another feed-monitor process holds the database for the same job."""


class ServiceError(MonitorError):
    """The daemon cannot provide a service its config asks for (``http.listen``)."""
