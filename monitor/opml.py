"""OPML, the feed list every reader imports and exports.

Pure: bytes in, ``OutlineFeed`` list out, and the reverse. An OPML file comes from
elsewhere, so it is parsed with defusedxml (no entity expansion, no external entities).
Readers nest feeds in folders (``<outline text="Defense"><outline xmlUrl=.../>``); the
folder becomes the feed's ``category``.

An OPML file is untrusted text. Folders are walked without recursion (a file nested
5,000 deep is still just a list). Names are cleaned by ``terminal_safe``: control
characters, which could forge lines of output, are neutralized (a name is only a label,
so the rest of it is kept).
URLs are not cleaned but judged by ``url_problem``: a URL with a control character or a
space is not one a feed reader wrote, and guessing what it meant could fetch the wrong
thing, so such a feed is left out, and said so.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from email.utils import formatdate
from urllib.parse import urlsplit

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from msgspec import Struct

from monitor.errors import MonitorError
from monitor.redact import MASK, has_control_characters, terminal_safe


class OPMLError(MonitorError):
    """An OPML file that cannot be read."""


class OutlineFeed(Struct, frozen=True):
    url: str
    title: str | None = None
    category: str | None = None


def read_opml(data: bytes) -> list[OutlineFeed]:
    """The feeds in an OPML document, in order, each URL once."""
    try:
        root = SafeET.fromstring(data)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise OPMLError(f"not a readable OPML file: {exc}") from None
    body = root.find("body")
    if root.tag != "opml" or body is None:
        raise OPMLError("not an OPML file: no <opml><body>")
    seen: set[str] = set()
    out = []
    for feed in _outlines(body):
        if feed.url not in seen:
            seen.add(feed.url)
            out.append(feed)
    return out


def _outlines(body: ET.Element) -> Iterator[OutlineFeed]:
    """Every feed under ``body``, in document order, each with its nearest folder's name."""
    stack: list[tuple[Iterator[ET.Element], str | None]] = [(iter(body.findall("outline")), None)]
    while stack:
        outlines, category = stack[-1]
        outline = next(outlines, None)
        if outline is None:
            stack.pop()
            continue
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        title = _clean_name(outline.get("title") or outline.get("text") or "")
        if url:
            yield OutlineFeed(url, title, category)
        else:  # a folder
            stack.append((iter(outline.findall("outline")), title or category))


def _clean_name(name: str) -> str | None:
    return " ".join(terminal_safe(name).split()) or None


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a feed URL to import ("not http(s)"...), or None."""
    if has_control_characters(url) or any(char.isspace() for char in url):
        return "with a control character or space"
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "not http(s)"
    if not parts.hostname:
        return "without a host"
    if MASK in url:
        return "with a credential masked as **** (export with --with-secrets)"
    return None


def write_opml(feeds: Sequence[OutlineFeed], title: str = "feed-monitor feeds") -> str:
    """An OPML 2.0 document listing ``feeds``, grouped in folders by category."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = formatdate(usegmt=True)
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for feed in feeds:
        parent = body
        if feed.category:
            if feed.category not in folders:
                folders[feed.category] = ET.SubElement(
                    body, "outline", text=feed.category, title=feed.category
                )
            parent = folders[feed.category]
        name = feed.title or feed.url
        ET.SubElement(parent, "outline", type="rss", text=name, title=name, xmlUrl=feed.url)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
