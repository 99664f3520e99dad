"""Alerts: rendering a match into a message, and delivering messages through Apprise.

Rendering is pure. Feed text is untrusted, so everything taken from a feed is defanged
(no mass mentions or pings survive) and only http(s) links are shown. Delivery is
blocking (Apprise throttles itself between sends), so callers run ``Notifier.send`` in
a worker thread, never on the event loop. With no ``notify`` targets configured, alerts
are printed to the console.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.config import NotifyTarget
from monitor.models import AlertMessage, Entry, Match

if TYPE_CHECKING:
    import apprise

CONSOLE_URL = "console://"
MAX_TITLE_CHARS = 200
# Backoff for failed deliveries: 1 min, 2 min, 4 min, ... capped at 1 h, then give up.
RETRY_BASE_SECONDS = 60.0
RETRY_CAP_SECONDS = 3600.0
MAX_ATTEMPTS = 12

_ZWSP = "\u200b"
# @everyone, @here, @channel, @room (Discord, Slack, Matrix, Mattermost), Slack's
# <!channel>/<!here>/<@U123> and Discord's <@123>/<@&123>/<#123> pings.
_MENTION_RE = re.compile(r"@(?=[^\s@])|<(?=[!@#])")


def _print_to_console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    sys.stdout.write(f"\n=== {title}\n{body}\n")
    sys.stdout.flush()
    return True


@functools.cache
def _register_console() -> None:
    """Make ``console://`` an Apprise target. Registering loads every Apprise plugin
    (0.2 s), so it happens only when the console is needed, once."""
    from apprise.decorators import notify

    notify(on="console", name="Console")(_print_to_console)  # type: ignore[no-untyped-call]


def defang(text: str) -> str:
    """Neutralize mentions and pings in untrusted text by breaking them with a zero-width space."""
    return _MENTION_RE.sub(lambda m: m.group(0) + _ZWSP, text)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _format_time(stamp: float | None) -> str:
    if stamp is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


def render_alert(feed_name: str, entry: Entry, match: Match, tags: tuple[str, ...]) -> AlertMessage:
    """The message for one story matching one watchlist."""
    title = defang(_truncate(entry.title or "(untitled story)", MAX_TITLE_CHARS))
    found = ", ".join(defang(term) for term in match.terms)
    start, end = match.highlight
    snippet = match.snippet
    marked = (
        defang(snippet[:start]) + "»" + defang(snippet[start:end]) + "«" + defang(snippet[end:])
    )
    lines = [
        title,
        entry.link or "(no link)",
        "",
        f"Watchlist: {match.watchlist}",
        f"Matched:   {', '.join(match.keywords)} (as {found})",
        f"Feed:      {defang(feed_name)}",
        f"Published: {_format_time(entry.published)}",
        "",
        marked,
    ]
    return AlertMessage(
        title=_truncate(f"[{match.watchlist}] {title}", MAX_TITLE_CHARS),
        body="\n".join(lines),
        tags=tags,
    )


def retry_after(attempts: int) -> float | None:
    """Seconds to wait before the next try after ``attempts`` failures; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return min(RETRY_BASE_SECONDS * 2.0 ** (attempts - 1), RETRY_CAP_SECONDS)


@dataclass(frozen=True)
class DeliveryOutcome:
    ok: bool
    detail: str  # per-target results, secrets redacted


class Notifier:
    """The configured Apprise targets (or the console), routed by tag.

    Apprise is imported on first use: a run with nothing to send never loads it.
    """

    def __init__(self, targets: list[NotifyTarget]) -> None:
        self._targets = targets
        self._loaded: apprise.Apprise | None = None

    @property
    def _apprise(self) -> apprise.Apprise:
        if self._loaded is None:
            import apprise

            self._loaded = apprise.Apprise()
            if not self._targets:
                _register_console()
                self._loaded.add(CONSOLE_URL)
            for target in self._targets:
                # Validated with the config; add() fails only for URLs Apprise cannot use.
                self._loaded.add(target.url, tag=list(target.tags) or None)
        return self._loaded

    def describe(self) -> list[str]:
        """Each target as a redacted URL with its tags, safe to print or log."""
        out = []
        for server in self._apprise:
            tags = sorted(str(tag) for tag in server.tags)
            suffix = f"  [tags: {', '.join(tags)}]" if tags else ""
            redacted: str = server.url(privacy=True)  # type: ignore[no-untyped-call]
            out.append(f"{redacted}{suffix}")
        return out

    def send(self, message: AlertMessage) -> DeliveryOutcome:
        """Deliver to every target with one of ``message.tags`` (all targets when none). Blocks."""
        import apprise

        tag: Any = list(message.tags) if message.tags else apprise.common.MATCH_ALL_TAG
        result = self._apprise.notify(
            body=message.body,
            title=message.title,
            body_format=apprise.NotifyFormat.TEXT,
            tag=tag,
        )
        details = []
        for target in result.results:
            line = f"{target.name} {target.status.name.lower()}"
            if target.status.name != "SUCCESS":
                warnings = [entry.message for entry in target.logs() if entry.level != "DEBUG"]
                if warnings:
                    line += f": {warnings[-1]}"
            details.append(line)
        if not details:
            return DeliveryOutcome(False, "no notification target has these tags")
        return DeliveryOutcome(bool(result), "; ".join(details))
