"""Delivering messages through Apprise, one notify target at a time.

Each configured target is a ``Channel``: its own Apprise instance (so Apprise's per
service throttle applies to it alone), the format it reads best (or the one set in the
config), and a label with its secrets masked, the only form in which a target is ever
logged or shown. Delivery blocks (Apprise throttles itself between sends), so callers
run ``Channel.send`` in a thread of its own (``monitor.delivery``). With no targets
configured, alerts are printed to the console. Apprise is imported on first use: a run
with nothing to send never loads it.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from msgspec import Struct

from monitor.redact import hide_secrets
from monitor.render import Format, Rendered
from monitor.run_config import CONSOLE_TARGET, RunTarget

log = logging.getLogger(__name__)
CONSOLE_URL = "console://"


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


class DeliveryOutcome(Struct, frozen=True):
    ok: bool
    detail: str  # what the service said, secrets masked
    timed_out: bool = False  # no answer within the send deadline: it may have arrived


class _MaskSecrets(logging.Filter):
    """Masks the secret parts of notify URLs in Apprise's log records, whatever the level."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = _mask(record.getMessage()), None
        return True


_MASK = _MaskSecrets()


def secrets_of(url: str, masked: str) -> set[str]:
    """The pieces of ``url`` that its masked form hides (tokens, passwords, keys)."""
    separators = r"[:/@?&=#,+]+"
    pieces = set(re.split(separators, unquote(url))) - set(re.split(separators, unquote(masked)))
    return {piece for piece in pieces if len(piece) >= 4}


class Channel:
    """One notify target, ready to send."""

    def __init__(self, target: RunTarget | None, send_timeout: float = 60.0) -> None:
        import apprise

        self.key = target.key if target else CONSOLE_TARGET
        # async_mode off: Apprise sends in the calling thread (a daemon thread of the
        # delivery's own) instead of its shared thread pool, whose threads the interpreter
        # waits for at exit: a send stuck there would make every shutdown hang.
        self._apprise = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
        if target is None:
            _register_console()
        url = target.url if target else CONSOLE_URL
        if not self._apprise.add(url):
            raise ValueError("Apprise cannot use this notify URL")  # validated with the config
        server = self._apprise[0]
        self.format: Format = (target.format if target else None) or _native_format(server)
        # Services with no title field (Telegram, for one) put the title into the body.
        self.title_in_body = server.title_maxlen <= 0
        if "overflow=" not in url:
            # Chat services cap a message's length: text and Markdown are split into
            # several messages rather than refused; HTML (email, mostly) is cut instead.
            server.overflow_mode = (
                apprise.OverflowMode.TRUNCATE
                if self.format == "html"
                else apprise.OverflowMode.SPLIT
            )
        # Apprise's privacy URL, less anything that came from ${VAR} (a webhook token in
        # the path, which Apprise does not count as secret for every service).
        self.label: str = hide_secrets(server.url(privacy=True))  # type: ignore[no-untyped-call]
        _MASK.secrets |= secrets_of(url, self.label)
        _set_timeouts(server, url, send_timeout)

    def send(self, message: Rendered) -> DeliveryOutcome:
        """Deliver ``message``. Blocks; never raises for a failed delivery."""
        import apprise

        try:
            result = self._apprise.notify(
                body=message.body,
                title=message.title,
                body_format=apprise.NotifyFormat(message.format),
                log_level=logging.DEBUG,  # the reason of a failure is logged at DEBUG
            )
        except Exception as exc:  # a plugin bug must not stop the outbox
            return DeliveryOutcome(False, f"{type(exc).__name__}: {_mask(str(exc))}")
        details = []
        for target in result.results:
            line = target.status.name.lower()
            if target.status.name != "SUCCESS":
                entries = [(entry.level, entry.message) for entry in target.logs()]
                if explained := failure_detail(entries):
                    line += f": {explained}"
            details.append(_mask(line))
        return DeliveryOutcome(bool(result), "; ".join(details) or "not sent")


# Apprise logs a failure as a WARNING that says little ("Connection error while submitting
# email"), then the cause at DEBUG ("Socket Exception: SMTP AUTH extension not supported
# by server."). The OS's own words are the clearest part of a long requests error.
_CAUSE_RE = re.compile(r"Exception\s*:\s*(.+)", re.DOTALL)
_ERRNO_RE = re.compile(r"\[Errno -?\d+\][^\"')]*")
MAX_DETAIL = 300


def failure_detail(entries: list[tuple[str, str]]) -> str:
    """What went wrong, from a failed send's log entries ((level, message), in order):
    the last warning or error, and the cause logged at DEBUG after it."""
    last = max((i for i, (level, _) in enumerate(entries) if level != "DEBUG"), default=None)
    if last is None:
        return ""
    detail = entries[last][1].strip()
    for level, message in entries[last + 1 :]:
        if level == "DEBUG" and (cause := _CAUSE_RE.search(message)):
            reason = " ".join(cause.group(1).split())
            if errno := _ERRNO_RE.search(reason):
                reason = errno.group(0).strip()
            detail = f"{detail.rstrip('.')}: {reason}"
            break
    return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "…"


def _set_timeouts(server: Any, url: str, send_timeout: float) -> None:
    """Apprise's socket timeouts, chosen to fit within the send's own deadline.

    Its defaults (4 s to read an answer; 15 s for SMTP) give up on receivers that are
    slow but working, which then accept the message anyway: the retry is a copy. Here a
    receiver may take most of ``send_timeout`` to answer; only one slower than that costs
    a repeat. The connect timeout stays short: a refused or unreachable target fails fast.
    A URL's own ``cto=``/``rto=`` win.
    """
    # Just under the deadline, leaving a moment to hear Apprise's own verdict (which
    # names the cause) rather than our blunter 'no answer within'.
    answer_within = max(send_timeout * 0.8, send_timeout - 5.0)
    if "rto=" not in url:
        server.socket_read_timeout = answer_within
    if "cto=" not in url:
        # SMTP uses this one timeout for every socket operation of the session.
        is_smtp = hasattr(server, "smtp_host")
        server.socket_connect_timeout = answer_within if is_smtp else min(10.0, answer_within)


def _native_format(server: Any) -> Format:
    resolved = str(getattr(server.resolve_format(None), "value", "text"))
    return resolved if resolved in ("text", "markdown", "html") else "text"  # type: ignore[return-value]


def _mask(text: str) -> str:
    for secret in _MASK.secrets:
        text = text.replace(secret, "****")
    return text


class Notifier:
    """The configured targets (or the console), by outbox key, made on first use."""

    def __init__(self, targets: Sequence[RunTarget], send_timeout: float = 60.0) -> None:
        self._targets = targets
        self._send_timeout = send_timeout
        self._channels: dict[str, Channel] | None = None

    @property
    def channels(self) -> dict[str, Channel]:
        if self._channels is None:
            apprise_log = logging.getLogger("apprise")
            apprise_log.addFilter(_MASK)
            # Apprise captures a send's log entries only at levels its logger has enabled;
            # the cause of a failure is at DEBUG. What is printed is decided by the log
            # handler (``cli.configure_logging`` shows Apprise's DEBUG lines only at -vv).
            apprise_log.setLevel(logging.DEBUG)
            made = [Channel(t, self._send_timeout) for t in self._targets] or [Channel(None)]
            self._channels = {channel.key: channel for channel in made}
        return self._channels

    def describe(self) -> list[str]:
        """Each target as a masked URL with its format and tags, safe to print or log."""
        out = []
        tags = {target.key: target.tags for target in self._targets}
        for key, channel in self.channels.items():
            suffix = f"  [tags: {', '.join(tags[key])}]" if tags.get(key) else ""
            out.append(f"{channel.label}  ({channel.format}){suffix}")
        return out
