"""Matching stories against watchlists. Pure logic: no I/O, no clock.

A ``Matcher`` is compiled once per config load. A keyword matches case-insensitively on
whole words, and designators written with a separator (``S-400``, ``F-35``) also match
the spellings the press uses (``S400``, ``S 400``, en dash, non-breaking hyphen, ``F -35``)
and variant suffixes (``F-35A``, ``S-400s``), but never a longer number (``F-350``) or a
longer designator (``AS/400``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.config import Watchlist
from monitor.models import Entry, Match
from monitor.text import normalize_text

# Hyphen-like characters the press puts inside designators.
_DASHES = "\\-\u00ad\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_SEPARATOR = f"[^\\S\\n]*[{_DASHES}]?[^\\S\\n]*"
_TOKEN_RE = re.compile(r"[^\W_]+")
_SPLIT_ALNUM_RE = re.compile(r"\d+|[^\W\d_]+")
# After a designator's number: an optional variant letter (F-35A) and plural s (S-400s).
_VARIANT_SUFFIX = r"(?:[a-z](?![^\W_]))?(?:s(?![^\W_]))?"
SNIPPET_RADIUS = 90


def term_pattern(term: str) -> str:
    """A regular expression (without flags) for one watchlist term."""
    tokens = _TOKEN_RE.findall(normalize_text(term))
    if not tokens:
        return re.escape(term)
    # Letter-digit runs are split so "S400", "S-400" and "S 400" are one designator.
    parts = [piece for token in tokens for piece in _SPLIT_ALNUM_RE.findall(token)]
    body = _SEPARATOR.join(re.escape(part) for part in parts)
    ends_in_digit = parts[-1][0].isdigit()
    tail = _VARIANT_SUFFIX + r"(?![^\W_])" if ends_in_digit else r"(?![^\W_])"
    # Not preceded by a word character or a slash ("AS/400" is another system).
    return rf"(?<![^\W_])(?<!/){body}{tail}"


def _compile(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for all ``terms``; group ``t<i>`` tells which term matched."""
    alternatives = [f"(?P<t{i}>{term_pattern(term)})" for i, term in enumerate(terms)]
    if not alternatives:
        return None
    return re.compile("|".join(alternatives), re.IGNORECASE)


@dataclass(frozen=True)
class CompiledWatchlist:
    name: str
    tags: tuple[str, ...]
    keyword_names: tuple[str, ...]  # as written in the config, indexed by group t<i>
    keywords: re.Pattern[str]
    require: tuple[re.Pattern[str], ...]
    exclude: re.Pattern[str] | None


def story_text(entry: Entry) -> str:
    """The text a watchlist is matched against: title, summary and content, one per line."""
    return "\n".join(part for part in (entry.title, entry.summary, entry.content) if part)


class Matcher:
    """All watchlists of a config, compiled once."""

    def __init__(self, watchlists: Iterable[Watchlist]) -> None:
        self.watchlists: list[CompiledWatchlist] = []
        for watchlist in watchlists:
            keywords = _compile(watchlist.keywords)
            assert keywords is not None  # the config requires at least one keyword
            self.watchlists.append(
                CompiledWatchlist(
                    name=watchlist.name,
                    tags=tuple(watchlist.notify),
                    keyword_names=tuple(watchlist.keywords),
                    keywords=keywords,
                    require=tuple(
                        re.compile(term_pattern(term), re.IGNORECASE) for term in watchlist.require
                    ),
                    exclude=_compile(watchlist.exclude),
                )
            )

    def match(self, entry: Entry) -> list[Match]:
        """Every watchlist ``entry`` satisfies, with the terms as the story spells them."""
        text = story_text(entry)  # entries are normalized when parsed
        matches: list[Match] = []
        for watchlist in self.watchlists:
            found = list(watchlist.keywords.finditer(text))
            if not found:
                continue
            if not all(pattern.search(text) for pattern in watchlist.require):
                continue
            if watchlist.exclude is not None and watchlist.exclude.search(text):
                continue
            keywords = tuple(
                dict.fromkeys(
                    watchlist.keyword_names[int(m.lastgroup[1:])] for m in found if m.lastgroup
                )
            )
            spellings = tuple(dict.fromkeys(m.group(0) for m in found))
            # The title is in the alert already: show the body's context when it has a match.
            shown = next((m for m in found if m.start() > len(entry.title)), found[0])
            snippet, highlight = make_snippet(text, shown.start(), shown.end())
            matches.append(Match(watchlist.name, keywords, spellings, snippet, highlight))
        return matches


def make_snippet(text: str, start: int, end: int) -> tuple[str, tuple[int, int]]:
    """About ``SNIPPET_RADIUS`` characters either side of text[start:end], cut at spaces.

    Returns the snippet and where the matched term sits inside it.
    """
    left = max(0, start - SNIPPET_RADIUS)
    right = min(len(text), end + SNIPPET_RADIUS)
    if left > 0 and (space := text.find(" ", left, start)) != -1:
        left = space + 1
    if right < len(text) and (space := text.rfind(" ", end, right)) != -1:
        right = space
    prefix = "…" if left > 0 else ""
    suffix = "…" if right < len(text) else ""
    snippet = (prefix + text[left:right] + suffix).replace("\n", " ")
    offset = len(prefix) - left
    return snippet, (start + offset, end + offset)
