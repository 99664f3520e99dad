"""Rendering alerts: one alert, a digest or a burst summary, as text, Markdown or HTML.

Pure: no I/O. Everything taken from a feed is untrusted, so before it reaches a template
it is escaped for the target's format, stripped of control characters, shortened, and
defanged: mass mentions and pings (``@everyone``, ``<!channel>``, ``@room``...) are
broken with a zero-width space so no chat service acts on them. Only http(s) links are
ever rendered. Templates are ``string.Template`` texts (``$title``, ``${feed}``): plain
substitution, nothing a config could use to reach anything else.
"""

from __future__ import annotations

import html
import re
import string
import time
from collections.abc import Mapping, Sequence
from typing import Literal

from msgspec import Struct

from monitor.models import AlertContent
from monitor.text import safe_link

Format = Literal["text", "markdown", "html"]

MAX_TITLE_CHARS = 200
MAX_FIELD_CHARS = 600  # a feed name or snippet longer than this is cut
DIGEST_ITEMS = 50  # a digest lists this many stories, then counts the rest

PLACEHOLDERS = {
    "title": "the story's title",
    "link": "the story's link (http/https only; empty when it has none)",
    "feed": "the feed's name",
    "published": "when the story was published (UTC)",
    "watchlist": "the watchlist's name",
    "keywords": "the watchlist keywords that matched",
    "terms": "how the story spells them",
    "snippet": "text around the first match, the match highlighted",
}

DEFAULT_TEMPLATES: dict[str, str] = {
    "title": "[$watchlist] $title",
    "text": (
        "$title\n$link\n\nWatchlist: $watchlist\nMatched:   $keywords (as $terms)\n"
        "Feed:      $feed\nPublished: $published\n\n$snippet"
    ),
    "markdown": (
        "**$title**\n$link\n\n**Matched** $keywords (as $terms) · **Watchlist** $watchlist\n"
        "**Feed** $feed · **Published** $published\n\n> $snippet"
    ),
    "html": (
        # The link also as text: mail clients show the text/plain part Apprise makes from
        # this HTML, which keeps a link's text but not its href.
        '<p><b><a href="$link">$title</a></b><br>\n<a href="$link">$link</a></p>\n'
        "<p>Matched <b>$keywords</b> (as $terms) in watchlist <b>$watchlist</b><br>\n"
        "Feed: $feed<br>\nPublished: $published</p>\n<blockquote>$snippet</blockquote>"
    ),
}

_ZWSP = "\u200b"
# Mass mentions: @everyone, @here, @channel, @room, @all (Discord, Slack, Matrix,
# Mattermost), at the start of a word only: "desk@here.org" is an e-mail address, which
# no chat acts on, and stays intact. Pings: Slack's <!channel>/<!here>/<@U123> and
# Discord's <@123>/<@&123>/<#123>.
_MENTION_RE = re.compile(
    r"(?<![\w.+-])@(?=(?:everyone|here|channel|room|all)(?![\w-]))|<(?=[!@#])", re.IGNORECASE
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What makes inline Markdown (values are one line, never at a line's start in the
# templates); escaping more shows stray backslashes in chats with partial Markdown.
_MARKDOWN_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>~|])")
_HIGHLIGHT = {"text": ("»", "«"), "markdown": ("**", "**"), "html": ("<b>", "</b>")}


class Rendered(Struct, frozen=True):
    """A message ready for one target: its title, and a body in ``format``."""

    title: str
    body: str
    format: Format


def count_of(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is one: "1 feed",
    "2 feeds", "1 failed delivery", "0 failed deliveries". Every count a person reads is
    spelled through here."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def defang(text: str) -> str:
    """Neutralize mentions and pings in untrusted text by breaking them with a zero-width space."""
    return _MENTION_RE.sub(lambda m: m.group(0) + _ZWSP, text)


def clean(text: str, limit: int) -> str:
    """Untrusted text on one line: no control or bidi characters, at most ``limit`` chars
    (cut at a word boundary, marked with "…")."""
    text = " ".join(_CONTROL_RE.sub(" ", text).split())
    return text if len(text) <= limit else shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, "…" included, cut between words; a
    single word longer than most of the limit (a URL, a run of CJK) is cut inside."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if not text[limit - 1].isspace():  # the cut falls inside a word: drop that word
        start = head.rfind(" ")
        if start >= limit // 2:
            head = head[:start]
    return head.rstrip(" ,;:-–—") + "…"


def escape(text: str, fmt: Format) -> str:
    """``text`` shown literally in ``fmt``, and defanged."""
    if fmt == "html":
        text = html.escape(text, quote=True)
    elif fmt == "markdown":
        text = _MARKDOWN_SPECIAL_RE.sub(r"\\\1", text)
    return defang(text)


def format_time(stamp: float | None, *, missing: str = "unknown", zone: bool = True) -> str:
    """How every message and command shows a moment: ``2026-11-24 22:47 UTC`` (without
    the zone in table columns), or ``missing``."""
    if stamp is None:
        return missing
    return time.strftime("%Y-%m-%d %H:%M" + (" UTC" if zone else ""), time.gmtime(stamp))


def format_interval(seconds: float) -> str:
    """How messages and tables show a decided interval: its two largest units, whole
    seconds (``30m22s``, ``2h5m``, ``45s``; what is smaller is left out). Config values
    keep ``format_duration``, which spells them exactly."""
    total = max(0, round(seconds))
    parts: list[tuple[int, str]] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count or (parts and len(parts) < 2):
            parts.append((count, unit))
        if len(parts) == 2:
            break
    return "".join(f"{count}{unit}" for count, unit in parts if count) or "0s"


def check_template(text: str) -> str | None:
    """Why ``text`` cannot be used as a template, or None."""
    template = string.Template(text)
    if not template.is_valid():
        return "invalid template: a $ must start $name or ${name} (write $$ for a dollar sign)"
    unknown = [name for name in template.get_identifiers() if name not in PLACEHOLDERS]
    if unknown:
        return f"unknown placeholder ${unknown[0]}; known: " + ", ".join(
            f"${name}" for name in PLACEHOLDERS
        )
    return None


def alert_fields(content: AlertContent, fmt: Format) -> dict[str, str]:
    """The placeholders' values for one alert, escaped for ``fmt``."""
    link = safe_link(content.link)
    snippet = clean(content.snippet, MAX_FIELD_CHARS)
    start, end = content.highlight
    if not (0 <= start < end <= len(snippet)) or snippet != content.snippet:
        start, end = _find_first(snippet, content.terms)
    opening, closing = _HIGHLIGHT[fmt]
    marked = (
        escape(snippet[:start], fmt)
        + opening
        + escape(snippet[start:end], fmt)
        + closing
        + escape(snippet[end:], fmt)
        if end > start
        else escape(snippet, fmt)
    )
    return {
        "title": escape(clean(content.story_title or "(untitled story)", MAX_TITLE_CHARS), fmt),
        "link": (html.escape(link) if fmt == "html" else link) if link else "",
        "feed": escape(clean(content.feed, MAX_FIELD_CHARS), fmt),
        "published": format_time(content.published),
        "watchlist": escape(content.watchlist, fmt),
        "keywords": escape(", ".join(content.keywords), fmt),
        "terms": escape(clean(", ".join(content.terms), MAX_FIELD_CHARS), fmt),
        "snippet": marked,
    }


def render_alert(
    content: AlertContent,
    fmt: Format,
    templates: Mapping[str, str] | None = None,
    *,
    title_in_body: bool = False,
) -> Rendered:
    """One alert for a target reading ``fmt``.

    ``title_in_body``: the service shows the title inside the body (Telegram, for one),
    so it must be escaped like the body; elsewhere a title is plain text (an email subject).
    """
    templates = {**DEFAULT_TEMPLATES, **(templates or {})}
    fields = alert_fields(content, fmt)
    title_fmt = fmt if title_in_body else "text"
    title_fields = fields if title_fmt == fmt else alert_fields(content, title_fmt)
    body = string.Template(templates[fmt]).substitute(fields)
    title = string.Template(templates["title"]).substitute(title_fields)
    return Rendered(clean(title, MAX_TITLE_CHARS), body, fmt)


def render_digest(
    contents: Sequence[AlertContent], fmt: Format, heading: str, *, title_in_body: bool = False
) -> Rendered:
    """Many alerts in one message: a title saying how many and why, one line per story."""
    shown = contents[:DIGEST_ITEMS]
    lines = []
    for content in shown:
        fields = alert_fields(content, fmt)
        link = fields["link"]
        also = also_reported(content, fmt)
        if fmt == "html":
            title = f'<a href="{link}">{fields["title"]}</a>' if link else fields["title"]
            lines.append(f"<li>{title} — {fields['keywords']} · {fields['feed']}{also}</li>")
        elif fmt == "markdown":
            title = f"[{fields['title']}]({link})" if link else fields["title"]
            lines.append(f"- {title} — {fields['keywords']} · {fields['feed']}{also}")
        else:
            lines.append(f"- {fields['title']} ({fields['keywords']}; {fields['feed']}){also}")
            if link:
                lines.append(f"  {link}")
    rest = len(contents) - len(shown)
    more = f"…and {rest} more: run `feed-monitor alerts` to see them all." if rest else ""
    heading_text = clean(heading, MAX_TITLE_CHARS)
    if fmt == "html":
        body = "<ul>\n" + "\n".join(lines) + "\n</ul>"
        body += f"\n<p>{html.escape(more)}</p>" if more else ""
    else:
        body = "\n".join(lines) + (f"\n\n{more}" if more else "")
    title = escape(heading_text, fmt) if title_in_body else heading_text
    return Rendered(title, body, fmt)


ALSO_SHOWN = 5  # outlets named in "also reported by"; the rest are counted


def also_reported(content: AlertContent, fmt: Format) -> str:
    """· also reported by 3: A, B, C — the event's other outlets (``events``), or ''."""
    outlets = content.also_reported_by
    if not outlets:
        return ""
    named = ", ".join(
        escape(clean(outlet, MAX_FIELD_CHARS), fmt) for outlet in outlets[:ALSO_SHOWN]
    )
    more = f" and {len(outlets) - ALSO_SHOWN} more" if len(outlets) > ALSO_SHOWN else ""
    return f" · also reported by {len(outlets)}: {named}{more}"


def _find_first(snippet: str, terms: Sequence[str]) -> tuple[int, int]:
    lowered = snippet.lower()
    found = [(lowered.find(term.lower()), len(term)) for term in terms if term]
    hits = [(at, at + size) for at, size in found if at >= 0]
    return min(hits) if hits else (0, 0)


def render_delivery(
    kind: str,
    reason: str | None,
    contents: Sequence[AlertContent],
    fmt: Format,
    templates: Mapping[str, str] | None = None,
    *,
    title_in_body: bool = False,
) -> Rendered:
    """The message for one outbox delivery: one alert, a burst summary, or a digest."""
    if kind == "alert" and len(contents) == 1:
        return render_alert(contents[0], fmt, templates, title_in_body=title_in_body)
    count = len(contents)
    watchlists = sorted({content.watchlist for content in contents})
    stories = count_of(count, "matching story", "matching stories")
    if kind == "summary":
        feeds = sorted({content.feed for content in contents})
        heading = f"[{', '.join(watchlists)}] {stories} in one poll of {feeds[0]}"
        if len(feeds) > 1:
            heading = f"[{', '.join(watchlists)}] {stories} at once"
    elif reason == "quiet hours":
        heading = f"[{', '.join(watchlists)}] {count_of(count, 'alert')} held during quiet hours"
    else:
        heading = f"[{', '.join(watchlists)}] digest: {stories}"
    return render_digest(contents, fmt, heading, title_in_body=title_in_body)


def render_notice(title: str, body: str, fmt: Format, *, title_in_body: bool = False) -> Rendered:
    """An operator notice (feed health). It quotes a feed's name, so it is escaped too."""
    lines = [escape(clean(line, MAX_FIELD_CHARS), fmt) for line in body.splitlines()]
    text = "<br>\n".join(lines) if fmt == "html" else "\n".join(lines)
    heading = clean(title, MAX_TITLE_CHARS)
    return Rendered(escape(heading, fmt if title_in_body else "text"), text, fmt)
