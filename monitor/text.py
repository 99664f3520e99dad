"""Turning untrusted feed markup into clean, comparable plain text.

Pure functions, no I/O: HTML to text (tags dropped, entities decoded, attribute values
ignored), Unicode NFKC normalization, and whitespace folding.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

_SPACE_RE = re.compile(r"\s+")
# Elements whose text is never part of what a reader sees.
_INVISIBLE = frozenset({"script", "style", "head", "title", "template", "noscript"})
# Elements that separate words even when the markup has no space between them.
_BLOCK = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "td",
        "th",
        "table",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "hr",
        "pre",
        "dd",
        "dt",
        "img",
    }
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def normalize_text(text: str) -> str:
    """NFKC-normalize and fold runs of whitespace into single spaces."""
    return _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, normalized; plain text passes through unchanged."""
    if "<" not in markup and "&" not in markup:
        return normalize_text(markup)
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    return normalize_text("".join(extractor.parts))
