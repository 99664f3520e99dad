"""Running under systemd: the sd_notify protocol, and log lines journald shows well.

sd_notify is one datagram per message to the socket named by ``$NOTIFY_SOCKET`` (a
leading ``@`` means Linux's abstract namespace); without that variable every call is a
no-op, so the same daemon runs unchanged outside systemd. The watchdog interval comes
from ``$WATCHDOG_USEC`` (only when ``$WATCHDOG_PID``, if set, is this process).

Logs go to stderr. Under journald (``$JOURNAL_STREAM`` set) each line starts with its
syslog priority (``<3>`` error ... ``<7>`` debug), which journald turns into the entry's
level, and carries no timestamp (journald stamps entries itself). ``json`` format writes
one JSON object per line instead, for log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from typing import Literal

LogFormat = Literal["text", "json"]

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def sd_notify(*fields: str) -> bool:
    """Send ``READY=1``, ``STATUS=...`` and the like to systemd; False if not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not fields:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError:
        return False  # systemd went away, or a stale variable: nothing to tell
    return True


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects ``WATCHDOG=1``, or None with no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class JournalFormatter(logging.Formatter):
    """``<priority>name: message`` lines for journald."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < 30 else 3)
        text = super().format(record)
        # Continuation lines (a multi-line config error) keep the entry's level.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:  # formatted (and masked) already
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_handler(log_format: LogFormat) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler
