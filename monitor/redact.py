"""What may leave the process: secrets masked, terminal control characters neutralized.

One place for the rules, used by every output path (the CLI's lines and JSON, the log
handler, ``/metrics``):

- ``mask_url``: a URL without its secrets. Userinfo (``user:pass@``) and the values of
  secret-looking query parameters (``token``, ``key``, ``password``, ``sig``...) become
  ``****``, and so does any known secret.
- Known secrets are the values that config loading took from the environment or from
  systemd credentials (``${VAR}``, ``${credential:NAME}``), and the credentials written
  literally in the config's URLs (``remember_credentials``): ``remember_secret`` records
  them, and they are never printed, wherever they turn up.
- ``redact_text``: free text (a log message, an error) with every URL in it masked and
  every known secret replaced.
- ``terminal_safe``: text a terminal shows literally. Control characters (escape
  sequences, ``\\r``, NUL...) and bidi overrides in feed text would otherwise retitle the
  window, clear the screen or reorder what the reader sees.
- ``RedactingFilter``: a logging filter, installed on the log handler at logging setup,
  that applies ``redact_text`` (and neutralizes control characters) in every record of
  every logger, traceback included.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "****"
# Shorter values are not secrets worth the name, and masking "1" or "on" wherever it
# occurs would make every line unreadable.
MIN_SECRET_LENGTH = 4

# Query parameter names whose values are credentials: api_key, access_token, X-Amz-Signature,
# password, client_secret, auth, Authorization (an Apprise header: +Authorization), sig,
# session... The name's words are judged whole, so keywords=, hashtag=, design= or
# author= are not secrets.
_SECRET_WORDS = frozenset((
    "token", "key", "pass", "passwd", "password", "pwd", "secret", "auth", "authorization",
    "sig", "signature", "session", "sessionid", "sid", "credential", "credentials", "private",
    "jwt", "bearer", "otp", "hash", "cookie",
))  # fmt: skip
_SECRET_ENDINGS = ("key", "token", "secret", "password", "passwd", "signature")
_NAME_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# A URL inside free text: a scheme, "://", and everything up to whitespace or a quote (not
# the punctuation that ends a sentence or a parenthesis after it).
_URL_IN_TEXT_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*[^\s\"'<>).,;:!?]")
# What a terminal acts on: C0 controls, DEL, C1 controls (U+009B is a CSI), and the bidi
# embeddings, overrides and isolates that reorder a line ("Trojan Source").
_LINE_BREAKS = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"
_TERMINAL_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# JSON strings may carry them (the data stays exact), but escaped, never raw.
_JSON_UNSAFE_RE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

_PLAIN_WORD_RE = re.compile(r"[a-z]+(?:[-_.][a-z]+)*", re.IGNORECASE)
# A host name or an IP address: a URL's part that names where, not a token.
_HOST_RE = re.compile(r"(?:[\w-]+\.)+[a-z]{2,}|[\d.]+|\[[0-9a-f:.]+\]|localhost", re.IGNORECASE)
_USERINFO_RE = re.compile(r"//[^/?#@\s]*@")
# A query parameter in free text (a logged request line has no scheme to find it by).
_PARAM_IN_TEXT_RE = re.compile(r"(?<=[?&])[^=&\s\"'<>]+=[^&\s\"'<>#]*[^&\s\"'<>#).,;:!?]")
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first: a secret containing another is masked whole


def remember_secret(value: str) -> None:
    """Record a value taken from the environment or a credential: it is never shown.

    A value that is a whole URL (``notify: [${SLACK_URL}]``) is also remembered by its
    parts that may hold a token (userinfo, each path segment, query values): libraries
    log the URL they actually request, rewritten (``json://`` becomes ``http://``), and
    a webhook's secret lives in its path."""
    global _secrets
    # Lowercased too: a secret in a host name is shown as URL parsing leaves it, lowercase.
    pieces = {value, value.lower(), *_url_secret_parts(value)}
    pieces = {piece for piece in pieces if len(piece) >= MIN_SECRET_LENGTH}
    if pieces <= set(_secrets):
        return
    with _lock:
        _secrets = tuple(sorted({*_secrets, *pieces}, key=len, reverse=True))


def remember_credentials(url: str, *, target: bool = False) -> None:
    """Record the credentials written literally in a URL of the config
    (``credentials_in``): they are never shown."""
    for piece in credentials_in(url, target=target):
        remember_secret(piece)


def remember_config_credentials(feed_urls: Iterable[str], target_urls: Iterable[str]) -> None:
    """``remember_credentials`` for every feed and notify URL of a loaded config: written
    literally in a URL, they are secrets as much as ``${VAR}`` values are."""
    for url in feed_urls:
        remember_credentials(url)
    for url in target_urls:
        remember_credentials(url, target=True)


def host_name(piece: str) -> bool:
    """Whether a part of a URL is a host name or an IP address (a place, not a token)."""
    return _HOST_RE.fullmatch(piece) is not None


def credentials_in(url: str, *, target: bool = False) -> set[str]:
    """The credentials written literally in a URL of the config.

    Libraries log the requests they make by path and query alone (urllib3: ``"POST
    /hook?apikey=... HTTP/1.1"``), where nothing shows a URL is there to mask, so the
    secrets themselves are remembered: the password (or a token given as the user), the
    values of secret-looking query parameters, and for a notify ``target`` every
    token-like part of it (Apprise URLs carry their tokens in the host and path:
    ``tgram://123:AAH.../``)."""
    if not target and "@" not in url and "=" not in url:
        return set()  # most feed URLs: nothing to look at (this runs for every feed at load)
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return set()
    # Masked wherever it appears, so only what cannot be an ordinary word or number:
    # `?session=2024` must not blank out every year in the output (inside a URL, mask_url
    # masks such a value anyway).
    found = {parts.password} if parts.password and _token_like(parts.password) else set()
    if parts.username and not parts.password and _token_like(parts.username):
        found.add(parts.username)
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if secret_param_name(name) and _token_like(unquote(value)):
            found |= {unquote(value), value}  # as printed too: %20 in "Bearer%20..."
    if target:
        found |= _url_secret_parts(url)
        netloc = parts.netloc.rpartition("@")[2]
        found |= {piece for piece in re.split(r"[:@]", netloc) if _token_like(piece)}
    return {piece for piece in found if len(piece) >= MIN_SECRET_LENGTH}


def secret_param_name(name: str) -> bool:
    """Whether a query parameter's name says its value is a credential."""
    words = [word.lower() for word in _NAME_WORD_RE.findall(unquote(name))]
    joined = "".join(words)
    return any(word in _SECRET_WORDS for word in words) or (
        joined.endswith(_SECRET_ENDINGS) and len(joined) <= 24
    )


def _token_like(piece: str) -> bool:
    """Whether a part of a URL looks like a token rather than a name or an address."""
    return len(piece) >= 8 and not _PLAIN_WORD_RE.fullmatch(piece) and not host_name(piece)


def _url_secret_parts(value: str) -> set[str]:
    if "://" not in value:
        return set()
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return set()
    found = {parts.username or "", parts.password or ""}
    found |= {unquote(segment) for segment in parts.path.split("/")}
    found |= {unquote(pair.partition("=")[2]) for pair in parts.query.split("&")}
    # Token-like pieces only: "alerts" or "hooks" in a path would mask ordinary words.
    return {piece for piece in found if len(piece) >= 8 and not _PLAIN_WORD_RE.fullmatch(piece)}


def hide_secrets(text: str) -> str:
    """``text`` with every known secret replaced (and nothing else changed)."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """``url`` without userinfo, secret-looking query values or known secrets."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:  # a malformed port or host: mask what looks like credentials
        masked = _USERINFO_RE.sub(f"//{MASK}@", url, count=1)
        return hide_secrets(_mask_params_in(masked))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_mask_param(param) for param in parts.query.split("&")) if parts.query else ""
    masked = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if not parts.query and url.endswith("?"):
        masked += "?"  # keep the URL as written otherwise
    return hide_secrets(masked)


def _mask_param(param: str) -> str:
    name, equals, value = param.partition("=")
    if equals and value and secret_param_name(name):
        return f"{name}={MASK}"
    return param


def _mask_params_in(text: str) -> str:
    """``text`` with the value of every secret-looking ``?name=value`` in it masked."""
    return _PARAM_IN_TEXT_RE.sub(lambda m: _mask_param(m.group(0)), text)


def redact_text(text: str) -> str:
    """Free text with every URL in it masked, every secret-looking query value masked
    (a request line has no scheme: ``GET /feed?token=...``), and every known secret
    replaced."""
    if "://" in text:
        text = _URL_IN_TEXT_RE.sub(lambda m: mask_url(m.group(0)), text)
    if "=" in text:
        text = _mask_params_in(text)
    return hide_secrets(text)


def terminal_safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` as a terminal shows it literally, on one line (unless ``keep_newlines``).

    Line breaks and tabs become spaces (a newline in a feed title must not forge a line
    of output), bidi controls are dropped, and every other control character becomes
    U+FFFD, so that something visibly was there.
    """
    return _TERMINAL_CONTROL_RE.sub(lambda m: _neutral(m.group(0), keep_newlines), text)


def has_control_characters(text: str) -> bool:
    """Whether ``text`` has a character that ``terminal_safe`` would change."""
    return _TERMINAL_CONTROL_RE.search(text) is not None


def _neutral(char: str, keep_newlines: bool) -> str:
    if char == "\n" and keep_newlines:
        return char
    if char in _LINE_BREAKS:
        return " "
    return "" if char in _BIDI else "\N{REPLACEMENT CHARACTER}"


def redact_json(value: Any) -> Any:
    """``value`` (JSON-ready data) with every string in it, keys too, passed through
    ``redact_text``."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_json(key): redact_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(item) for item in value]
    return value


def safe_json(value: Any, *, indent: int | None = None) -> str:
    """JSON of ``value`` with secrets masked and no character a terminal acts on left raw
    (``json.dumps`` escapes C0 controls, not C1 controls or bidi overrides)."""
    text = json.dumps(redact_json(value), ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


class RedactingFilter(logging.Filter):
    """Masks URLs and known secrets, and neutralizes control characters, in every log
    record that reaches the handler it is installed on (whatever logger made it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = terminal_safe(redact_text(record.getMessage()), keep_newlines=True)
        record.msg, record.args = message, None
        if record.exc_info:
            # Format the traceback now, masked; formatters print ``exc_text`` as it is.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = terminal_safe(redact_text(text), keep_newlines=True)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = terminal_safe(redact_text(record.exc_text), keep_newlines=True)
        return True
