"""Turning untrusted feed markup into clean, comparable plain text.

Pure functions, no I/O: HTML to text (tags dropped, entities decoded, attribute values
ignored), Unicode NFKC normalization, whitespace folding, and no NUL characters.

``html_to_text`` uses regular expressions rather than ``html.parser``: it runs on every
field of every entry, and is five times faster this way. The output is only ever matched
and shown as plain text (escaped for each channel), never rendered as HTML, so it needs
to be right about words, not about the DOM.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import urlsplit

# Elements whose content is never part of what a reader sees, and comments.
_INVISIBLE_RE = re.compile(
    r"<(script|style|head|title|template|noscript)\b[^>]*>.*?</\1\s*>|<!--.*?(?:-->|$)",
    re.IGNORECASE | re.DOTALL,
)
# A tag, its attributes possibly quoted and containing ">".
_TAG = r"""</?([A-Za-z][A-Za-z0-9:-]*)(?:[^>"']|"[^"]*"|'[^']*')*>"""
_TAG_RE = re.compile(_TAG)
# Elements that separate words even when the markup has no space between them.
_BLOCK = frozenset((
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td", "th",
    "table", "blockquote", "section", "article", "header", "footer", "figure", "figcaption",
    "hr", "pre", "dd", "dt", "img",
))  # fmt: skip
# What a safe link never contains (see safe_link).
_UNSAFE_LINK_CHAR_RE = re.compile(r'[\s<>"`]')


def normalize_text(text: str) -> str:
    """NFKC-normalize and fold runs of whitespace into single spaces.

    A NUL becomes U+FFFD, as HTML reads ``&#0;``: SQLite's C string functions (the
    search index's tokenizer and ``snippet()``, ``json_object``) end text at a NUL, so
    everything after it would silently disappear from search and snippets."""
    text = text.replace("\x00", "\ufffd")
    if not text.isascii():  # NFKC leaves ASCII as it is
        text = unicodedata.normalize("NFKC", text)
    return fold_whitespace(text)


def fold_whitespace(text: str) -> str:
    """Each run of whitespace as one space, none at either end.

    Whitespace is Unicode's, as ``str.isspace`` and the ``\\s`` of a ``re`` pattern
    both mean it (the same characters: tested). ``split`` and ``join`` are C loops; the
    regex substitution that did this replaced every single space too, and took 6 % of
    a parser worker's time."""
    return " ".join(text.split())


def _tag(match: re.Match[str]) -> str:
    return " " if match.group(1).lower() in _BLOCK else ""


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, normalized; plain text passes through unchanged."""
    if "<" not in markup and "&" not in markup:
        return normalize_text(markup)
    text = _INVISIBLE_RE.sub(" ", markup)
    text = _TAG_RE.sub(_tag, text)
    return normalize_text(html.unescape(text))


def safe_link(url: object) -> str | None:
    """``url`` if it is an absolute http(s) URL with a host, else None: never
    ``javascript:``, ``file:`` or ``data:``, nor a URL with spaces or the characters that
    end an attribute or a Markdown link (feeds are untrusted; parsing, scraping and
    rendering all use this one rule)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed [ in the host, a port out of range
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    if _UNSAFE_LINK_CHAR_RE.search(url):
        return None
    return url
