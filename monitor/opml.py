"""OPML, the feed list every reader imports and exports.

Pure: bytes in, ``OutlineFeed`` list out, and the reverse. An OPML file comes from
elsewhere, so it is parsed with defusedxml (no entity expansion, no external entities).
Readers nest feeds in folders (``<outline text="Defense"><outline xmlUrl=.../>``); the
folder becomes the feed's ``category``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.utils import formatdate

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from monitor.errors import MonitorError


class OPMLError(MonitorError):
    """An OPML file that cannot be read."""


@dataclass(frozen=True)
class OutlineFeed:
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
    for feed in _outlines(body, None):
        if feed.url not in seen:
            seen.add(feed.url)
            out.append(feed)
    return out


def _outlines(node: ET.Element, category: str | None) -> Iterator[OutlineFeed]:
    for outline in node.findall("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        title = (outline.get("title") or outline.get("text") or "").strip() or None
        if url:
            yield OutlineFeed(url, title, category)
        else:  # a folder
            yield from _outlines(outline, title or category)


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
