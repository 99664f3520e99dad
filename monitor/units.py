"""Durations and ``host:port`` as people write them, in the config and on the command line.

``parse_duration`` is every duration key's rule (and ``--timeout``'s); ``format_duration``
spells seconds back the way it reads them. ``parse_listen`` reads the daemon's HTTP
address. Plain functions with no pydantic: the command line and the daemon use them
without loading the config's models.
"""

from __future__ import annotations

import ipaddress
import math
import re

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


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
