"""Matching stories against watchlists. Pure logic: no I/O, no clock.

A watchlist reaches it as a plain ``models.WatchlistSpec`` (its name, terms, fields and
tags), never as the config's model: matching knows nothing of pydantic or config files.

How a term is read (``term_pattern``):

- Case-insensitive and on whole words, over text that ``parse`` already turned into
  NFKC plain text. Cyrillic and Greek letters inside an otherwise Latin word count as
  the Latin letter they stand for (``С-400`` with a Cyrillic С, ``CΑΑTSΑ`` with Greek
  alphas); a word wholly in Cyrillic or Greek never matches a Latin term.
- Letter–digit designators tolerate the press's separators: ``S-400`` matches ``S400``,
  ``S 400``, ``F -35`` and every dash and hyphen character, plus variant suffixes
  (``F-35A``, ``F-35s``, ``S-400'ler``, possessives), but never a longer number or
  another designator (``F-350``, ``S-4000``, ``S-300``, ``AS/400``).
- Acronyms (``CAATSA``) also match a plural ``s`` and possessives; hyphenated compounds
  (``CAATSA-related``) match because a hyphen ends a word.
- Other punctuation inside a term is kept (``AT&T``, ``America's`` with either
  apostrophe); spaces and hyphens between words are interchangeable.
- A term written ``/.../`` is a regular expression, used as is (case-insensitive), run
  by RE2 so that no pattern can take more than linear time (``monitor.pattern``).

Speed (``Matcher``): every term is compiled once per config load. One Aho-Corasick pass
over the lower-cased story finds where each term's rarest piece occurs; only terms whose
piece occurs as a whole letter or digit run, and whose other pieces occur at all, are
tried, and only in a window around the piece. The cost grows with the story, not with
the number of terms. ``benchmarks/bench_match.py`` measures it against one regex per term.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

import ahocorasick
from msgspec import Struct

from monitor.models import MATCH_FIELDS, Entry, Match, WatchlistSpec
from monitor.pattern import (
    PatternError,
    TextPattern,
    compile_user_pattern,
    is_regex_term,
    lint_user_pattern,
)
from monitor.text import normalize_text

# Hyphen-like characters the press puts inside designators (NFKC already maps a few).
DASHES = "-\u00ad\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d"
_DASH_CLASS = "[" + re.escape(DASHES) + "]"
# Between the parts of a designator or the words of a phrase: spaces and/or one dash,
# on one line (fields are joined by newlines and must not run into each other).
_GAP = rf"[^\S\n]*{_DASH_CLASS}?[^\S\n]*"
# Between two words, or two numbers, something must separate them: "video game" is not
# "videogame", and "S 4 00" is not "S-400".
_WORD_GAP = rf"(?:[^\S\n]+|[^\S\n]*{_DASH_CLASS}[^\S\n]*)"
_DIGIT_SPLIT_RE = re.compile(r"\d+|\D+")
_APOSTROPHES = "'\u2019\u02bc\u2018`\u00b4"
# Letters of the alphabetic scripts that separate words with spaces, digits, and "_" (an
# identifier such as en_US is one word). A term edge next to one of these is inside a
# word; next to anything else (space, punctuation, or a CJK character, as in
# 俄罗斯S-400防空系统) it is a word edge.
_WORD_CHAR = "[0-9A-Za-z_\u00c0-\u024f\u1e00-\u1eff\u0370-\u03ff\u1f00-\u1fff\u0400-\u052f]"
_NOT_WORD = f"(?!{_WORD_CHAR})"
# After a designator's number: not a number that goes on as a quantity (12,000, 10.5, 10%).
_NOT_QUANTITY = r"(?![.,]\d|[^\S\n]?%)"
_WORD_CHAR_RE = re.compile(_WORD_CHAR)
_WORD_START = f"(?<!{_WORD_CHAR})"
# Pieces: digit runs, and letter runs of one script (other letters one at a time).
_PIECE_RE = re.compile(
    r"\d+|[a-z\u00c0-\u024f\u1e00-\u1eff]+|[\u0370-\u03ff\u1f00-\u1fff]+|[\u0400-\u052f]+|[^\W\d_]",
    re.IGNORECASE,
)
_TERM_PART_RE = re.compile(r"[^\W_]+|[^\w\s]+|\s+")

# Cyrillic and Greek letters that stand for Latin ones in an otherwise Latin word: by
# their look (Greek Α in "CΑΑTSΑ") or, for Russian designators, by transliteration
# (Cyrillic С in "С-400" is an S, у in "Су-35" a u). Lower case; matching ignores case.
_LOOKS_LIKE = {
    "a": "аα",
    "b": "вβ",
    "c": "с",
    "e": "еε",
    "h": "нη",
    "i": "іι",
    "j": "ј",
    "k": "кκ",
    "m": "мμ",
    "n": "нν",
    "o": "оο",
    "p": "рρ",
    "r": "р",
    "s": "сѕ",
    "t": "тτ",
    "u": "уυ",
    "v": "вν",
    "x": "хχ",
    "y": "уυ",
    "z": "ζ",
}
# Two readings of a foreign letter, by look and by sound, for the cheap pre-check.
_BY_LOOK = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "і": "i",
        "ј": "j",
        "ѕ": "s",
        "α": "a",
        "β": "b",
        "ε": "e",
        "ζ": "z",
        "η": "h",
        "ι": "i",
        "κ": "k",
        "μ": "m",
        "ν": "n",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "y",
        "χ": "x",
    }
)
_BY_SOUND = str.maketrans({"с": "s", "у": "u", "н": "n", "р": "r", "в": "v", "υ": "u", "ν": "v"})
_FOREIGN_LETTER_RE = re.compile("[\u0370-\u03ff\u1f00-\u1fff\u0400-\u052f]")
_LATIN_OR_DIGIT_RE = re.compile(r"[A-Za-z0-9]")

SNIPPET_RADIUS = 90


def _stands_alone(span: str) -> bool:
    """False for a wholly Cyrillic/Greek word that merely looks like a Latin term."""
    return not _FOREIGN_LETTER_RE.search(span) or bool(_LATIN_OR_DIGIT_RE.search(span))


class Term(Struct, frozen=True):
    """One term, with the pieces that must occur in a story for it to match."""

    text: str  # as written in the config
    # The pieces of the term: letter and digit runs of two or more characters. ``anchor``
    # holds the spellings of the one looked up in every story (a trailing word also in the
    # plural); only where it occurs as a whole piece must ``others`` occur (as substrings)
    # before the pattern is tried. None: always try the pattern (a regular expression).
    anchor: frozenset[str] | None
    others: frozenset[str] = frozenset()

    # How far a match can reach before and after its anchor's first character. Text is
    # whitespace-normalized, so a gap in a term is at most a few characters wide.
    reach_before: int = 0
    reach_after: int = 0
    # A designator (letters and digits in one word): its matches pass ``_is_designator``.
    designator: bool = False

    @property
    def pattern(self) -> TextPattern:
        """re.Pattern for plain terms; RE2 for /.../ terms. Compiled when first needed."""
        return _pattern(self.text)


# Each term's compiled pattern, by the term as written: compiling a plain term's pattern
# costs ~2 ms (its look-alike letters under IGNORECASE), and most polls meet few of a
# watchlist's terms, or none. So a pattern is compiled the first time a story holds the
# term's anchor, once per process (the terms are the config's: this stays small).
_PATTERNS: dict[str, TextPattern] = {}


def _pattern(term: str) -> TextPattern:
    pattern = _PATTERNS.get(term)
    if pattern is None:
        if is_regex_term(term):
            pattern = compile_user_pattern(term[1:-1])
        else:
            pattern = re.compile(term_pattern(term), re.IGNORECASE)
        _PATTERNS[term] = pattern
    return pattern


def compiled_patterns() -> set[str]:
    """The terms whose pattern this process has compiled so far."""
    return set(_PATTERNS)


def compile_term(term: str) -> Term:
    if is_regex_term(term):
        return Term(term, anchor=None)
    capitals = is_short_capitals(term)
    parts = _PIECE_RE.findall(normalize_text(term).lower().translate(_BY_LOOK))
    significant = [part for part in parts if len(part) > 1] or parts
    if not significant:
        return Term(term, anchor=None)
    needs: dict[str, frozenset[str]] = {}
    for part in significant:
        spellings = {part}
        if part == parts[-1] and not part.isdigit():
            spellings.add(part + "s")  # CAATSAs, and any word a plural suffix may follow
        if capitals:
            spellings.add(".".join(part))  # U.S.
        needs[part] = frozenset(spellings)
    ordered = list(needs.values())
    # The longest piece is the rarest, and at equal length a number ("35") is far rarer
    # inside other words than letters ("su").
    anchor = max(ordered, key=lambda need: (len(min(need, key=len)), next(iter(need)).isdigit()))
    # A plural spelling contains the singular, so the singular is the substring to seek.
    others = frozenset(min(need, key=len) for need in ordered if need is not anchor)
    folded = normalize_text(term).lower().translate(_BY_LOOK)
    offset = max(0, folded.find(min(anchor, key=len)))
    return Term(
        term,
        anchor,
        others,
        reach_before=3 * offset + 2,
        reach_after=3 * (len(folded) - offset) + 4,
        designator=is_designator_term(term),
    )


def is_short_capitals(term: str) -> bool:
    """A two- or three-letter word in capitals (US, IT, SAM): matched only in capitals,
    or dotted (U.S.), never as the everyday word ("us", "it") or inside "en_US"."""
    word = normalize_text(term)
    return 2 <= len(word) <= 3 and word.isalpha() and word.isupper() and word.isascii()


def is_designator_term(term: str) -> bool:
    """A word of letters and digits, together or with a dash: S-400, A12, 4K, Su-35 (not
    a phrase the analyst wrote with a space, such as "Block 3")."""
    word = normalize_text(term)
    if is_regex_term(term) or " " in word:
        return False
    pieces = _PIECE_RE.findall(word)
    return any(p[0].isdigit() for p in pieces) and any(not p[0].isdigit() for p in pieces)


def term_pattern(term: str) -> str:
    """The regular expression for one watchlist term, for use with re.IGNORECASE (short
    capitals, ``is_short_capitals``, carry their own case-sensitive group)."""
    if is_short_capitals(term):
        return _capitals_pattern(normalize_text(term))
    normalized = normalize_text(term).translate(_BY_LOOK)
    parts = _TERM_PART_RE.findall(normalized)
    words = [part for part in parts if part[0].isalnum()]
    if not words:
        return re.escape(normalized)
    out: list[str] = []
    previous_part = ""
    previous_char = ""  # the last character of the previous word
    for part in parts:
        if part[0].isalnum():
            if out and _is_gap(previous_part):
                same_kind = previous_char.isdigit() == part[0].isdigit()
                out.append(_WORD_GAP if same_kind else _GAP)
            # "S400" is "S" and "400": a letter-digit boundary tolerates a gap.
            out.append(_GAP.join(_letters(run) for run in _DIGIT_SPLIT_RE.findall(part)))
            previous_char = part[-1]
        elif not _is_gap(part):
            out.append(_punctuation(part))
        previous_part = part
    last = words[-1]
    if last[-1].isdigit():
        # Designators: a variant letter (F-35A) and/or a plural (F-35s), nothing longer;
        # nor a number that goes on as a quantity (A 12,000, A 12.5, A 12%).
        tail = rf"(?:[A-Za-z]{_NOT_WORD}|[A-Za-z]?(?-i:s){_NOT_WORD}|{_NOT_QUANTITY})"
    elif len(last) >= 2 and last.isupper() and len(words) == 1:
        tail = r"(?-i:s)?"  # acronyms: SAMs, ICBMs (but not SAMS as another word)
    else:
        tail = ""
    return rf"{_WORD_START}{''.join(out)}{tail}{_NOT_WORD}"


def _capitals_pattern(word: str) -> str:
    """US, USs or U.S. (but not the U.S of U.S.A.), in capitals, look-alikes included."""
    letters = []
    for char in word:
        extra = _LOOKS_LIKE.get(char.lower(), "").upper()
        letters.append(f"[{re.escape(char)}{extra}]" if extra else re.escape(char))
    dotted = r"\.".join(letters) + rf"\.?(?!\.?{_WORD_CHAR})"
    # Case-sensitive inside, so the pattern means the same under re.IGNORECASE.
    return rf"(?-i:{_WORD_START}(?:{dotted}|{''.join(letters)}s?{_NOT_WORD}))"


# A letter run and a digit run of a designator, either way round, with what separates them.
_LETTERS_DIGITS_RE = re.compile(r"([^\W\d_]+)([^\S\n]*[" + re.escape(DASHES) + r"]?[^\S\n]*)(\d+)")
_DIGITS_LETTERS_RE = re.compile(r"(\d+)([^\S\n]*[" + re.escape(DASHES) + r"]?[^\S\n]*)([^\W\d_]+)")
# After a designator's letters: another number follows ("4 K 20": K goes with the 20).
_NUMBER_NEXT_RE = re.compile(r"[^\S\n]*[" + re.escape(DASHES) + r"]?[^\S\n]*\d")


def _is_designator(text: str, start: int, end: int) -> bool:
    """Whether a match of a designator term written with a space (text[start:end]) is one
    in the text, not ordinary words and numbers that happen to line up with it.

    A lowercase word then a number ("a 12", "a 10-year") is not A12, and in "K 4 K 20" the
    second K belongs to the 20, not to a "4K". Written together or with a dash (a12, s-400)
    they are designators whatever their case; a number that goes on as a quantity ("a
    12,000 mAh", "10.5", "10%") never is one (``term_pattern`` sees to that).
    """
    found = text[start:end]
    for letters, gap, _ in _LETTERS_DIGITS_RE.findall(found):
        if gap and gap.isspace() and letters.islower():
            return False
    for match in _DIGITS_LETTERS_RE.finditer(found):
        if match.group(2) and match.group(2).isspace():
            after = start + match.end()
            if _NUMBER_NEXT_RE.match(text, after):
                return False
    return True


def _is_gap(part: str) -> bool:
    """Whether a piece of a term is only spaces and dashes (a flexible gap)."""
    return bool(part) and all(char.isspace() or char in DASHES for char in part)


def _letters(run: str) -> str:
    """A run of a term's letters, each also accepting its Cyrillic/Greek stand-ins."""
    out = []
    for char in run:
        extra = _LOOKS_LIKE.get(char.lower(), "")
        out.append(f"[{re.escape(char)}{extra}]" if extra else re.escape(char))
    return "".join(out)


def _punctuation(part: str) -> str:
    """Punctuation inside a term: apostrophes are interchangeable, spaces around & or /."""
    out = []
    for char in part:
        if char in _APOSTROPHES:
            out.append("[" + re.escape(_APOSTROPHES) + "]")
        else:
            out.append(r"[^\S\n]*" + re.escape(char) + r"[^\S\n]*")
    return "".join(out)


class _Rule(Struct, frozen=True):
    """A watchlist, with its terms as indexes into the matcher's term table."""

    name: str
    tags: tuple[str, ...]
    fields: frozenset[str]
    require: tuple[int, ...]
    exclude: tuple[int, ...]


class _Hit(NamedTuple):  # a NamedTuple: made by the thousand, the cheapest record
    field: str
    start: int
    end: int


class Matcher:
    """All watchlists of a config, compiled once.

    Finding candidates is one Aho-Corasick pass (pyahocorasick, in C) over the lower-cased
    text for every term's trigger piece; only terms whose trigger occurs as a whole piece
    are checked with their regular expression, and only around those occurrences.
    """

    def __init__(self, watchlists: Iterable[WatchlistSpec]) -> None:
        self.terms: list[Term] = []
        self._index: dict[str, int] = {}
        self.rules: list[_Rule] = []
        # term index → (rule index, keyword it stands for), for keywords and aliases
        self._keyword_of: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for watchlist in watchlists:
            rule_index = len(self.rules)
            for keyword in watchlist.keywords:
                for text in (keyword, *watchlist.aliases.get(keyword, ())):
                    self._keyword_of[self._term(text)].append((rule_index, keyword))
            self.rules.append(
                _Rule(
                    name=watchlist.name,
                    tags=tuple(watchlist.notify),
                    fields=frozenset(watchlist.fields),
                    require=tuple(self._term(term) for term in watchlist.require),
                    exclude=tuple(self._term(term) for term in watchlist.exclude),
                )
            )
        # Only each term's anchor piece goes into the automaton; its other pieces are
        # checked (as plain substrings) once the anchor has been seen.
        self._terms_by_anchor: dict[str, list[int]] = defaultdict(list)
        self._always: list[int] = []
        for i, term in enumerate(self.terms):
            if term.anchor is None:
                self._always.append(i)
            for spelling in term.anchor or ():
                self._terms_by_anchor[spelling].append(i)
        self._automaton = ahocorasick.Automaton()
        for piece, term_ids in self._terms_by_anchor.items():
            self._automaton.add_word(piece, (len(piece), piece[0].isdigit(), tuple(term_ids)))
        if self._terms_by_anchor:
            self._automaton.make_automaton()
        self._fields = tuple(
            f for f in MATCH_FIELDS if any(f in rule.fields for rule in self.rules)
        )

    @property
    def tags(self) -> dict[str, tuple[str, ...]]:
        """Each watchlist's notification tags, by watchlist name."""
        return {rule.name: rule.tags for rule in self.rules}

    def _term(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.terms)
            self.terms.append(compile_term(text))
        return self._index[text]

    def match(self, entry: Entry, feed_name: str = "") -> list[Match]:
        """Every watchlist ``entry`` satisfies, with the terms as the story spells them."""
        texts = story_fields(entry, feed_name)
        hits = self._hits(texts)
        if not hits:
            return []
        found: dict[int, list[tuple[_Hit, str]]] = defaultdict(list)
        for term, term_hits in hits.items():
            for rule_index, keyword in self._keyword_of.get(term, ()):
                fields = self.rules[rule_index].fields
                found[rule_index].extend((hit, keyword) for hit in term_hits if hit.field in fields)
        matches = []
        for rule_index in sorted(found):
            rule, rule_found = self.rules[rule_index], found[rule_index]
            if not rule_found:
                continue
            if not all(_in_fields(hits.get(t, ()), rule.fields) for t in rule.require):
                continue
            if any(_in_fields(hits.get(t, ()), rule.fields) for t in rule.exclude):
                continue
            rule_found.sort(key=lambda item: (MATCH_FIELDS.index(item[0].field), item[0].start))
            keywords = tuple(dict.fromkeys(keyword for _, keyword in rule_found))
            spellings = tuple(
                dict.fromkeys(texts[hit.field][hit.start : hit.end] for hit, _ in rule_found)
            )
            # The title is in the alert already: show the body's context when it has a match.
            shown = next((hit for hit, _ in rule_found if hit.field != "title"), rule_found[0][0])
            snippet, highlight = make_snippet(texts[shown.field], shown.start, shown.end)
            matches.append(Match(rule.name, keywords, spellings, snippet, highlight))
        return matches

    def _hits(self, texts: dict[str, str]) -> dict[int, list[_Hit]]:
        """Every occurrence of every term, by term index, with offsets within its field.

        The fields are searched as one text, one per line (no pattern crosses a newline),
        which costs one pass instead of one per field.
        """
        fields = [field for field in self._fields if texts[field]]
        text = "\n".join(texts[field] for field in fields)
        starts = [0]
        for field in fields[:-1]:
            starts.append(starts[-1] + len(texts[field]) + 1)
        hits: dict[int, list[_Hit]] = defaultdict(list)
        for term_index, (low, high) in self._candidates(text):
            term = self.terms[term_index]
            pattern = term.pattern
            for found in pattern.finditer(text, low, high):
                if high < len(text) and found.end() >= high:
                    # The window's end hid what follows: check against the whole text.
                    found = pattern.match(text, found.start())
                    if found is None:
                        continue
                start, end = found.span()
                i = bisect_right(starts, start) - 1
                if end == start or end > starts[i] + len(texts[fields[i]]):
                    continue  # empty, or running from one field into the next
                span = found.group(0)
                if not _stands_alone(span):
                    continue
                if term.designator and " " in span and not _is_designator(text, start, end):
                    continue
                hits[term_index].append(_Hit(fields[i], start - starts[i], end - starts[i]))
        return hits

    def _candidates(self, text: str) -> list[tuple[int, tuple[int, int]]]:
        """(term, text window) pairs worth checking with the term's regular expression.

        This runs for every story and every config term, so it is written for speed.
        """
        lower = text.lower()
        readings = [lower]
        if not lower.isascii() and _FOREIGN_LETTER_RE.search(lower):
            readings += [lower.translate(_BY_LOOK), lower.translate(_BY_SOUND)]
        starts: dict[int, list[int]] = {}  # term → where its anchor starts
        if self._terms_by_anchor:
            for reading in readings:
                last = len(reading) - 1
                for end, (size, digits, term_ids) in self._automaton.iter(reading):
                    start = end - size + 1
                    before = reading[start - 1] if start else " "
                    after = reading[end + 1] if end < last else " "
                    # Only a whole piece counts: "400" in "S-400s", not in "4000".
                    if digits:
                        if before.isdigit() or after.isdigit():
                            continue
                    elif (before.isalpha() and (before.isascii() or _is_letter(before))) or (
                        after.isalpha() and (after.isascii() or _is_letter(after))
                    ):
                        continue
                    for term_id in term_ids:
                        starts.setdefault(term_id, []).append(start)
        # A few characters (Turkish İ) lengthen when lower-cased; then offsets are off.
        exact = len(lower) == len(text)
        # The other pieces of the terms whose anchor occurs, each looked for once.
        wanted = set().union(*(self.terms[term_id].others for term_id in starts))
        if len(readings) == 1:
            present = {piece for piece in wanted if piece in lower}
        else:
            present = {piece for piece in wanted if any(piece in r for r in readings)}
        windows = []
        for term_id, positions in starts.items():
            term = self.terms[term_id]
            if not term.others <= present:
                continue
            if not exact:
                windows.append((term_id, (0, len(text))))
                continue
            reach_before, reach_after = term.reach_before, term.reach_after
            if len(positions) > 1:
                positions.sort()
            low, high = positions[0] - reach_before, positions[0] + reach_after
            for position in positions[1:]:
                if position - reach_before > high:
                    windows.append((term_id, (max(0, low), min(high, len(text)))))
                    low = position - reach_before
                high = position + reach_after
            windows.append((term_id, (max(0, low), min(high, len(text)))))
        windows.extend((term_id, (0, len(text))) for term_id in self._always)
        return windows


def _accepted(term: Term, text: str, found: re.Match[str]) -> bool:
    """Whether a match of ``term``'s pattern is the term: not a wholly Cyrillic or Greek
    word that looks Latin, and for a designator, not ordinary words and numbers."""
    span = found.group(0)
    if not _stands_alone(span):
        return False
    return not (term.designator and " " in span) or _is_designator(text, *found.span())


def occurs(term: Term, text: str) -> bool:
    """Whether ``term`` occurs in ``text`` (plain text, as stored), as a watchlist reads it."""
    return any(_accepted(term, text, found) for found in term.pattern.finditer(text))


class SearchQuery(Struct, frozen=True):
    """A ``search`` query read as watchlist terms, one per word (all must occur).

    ``fts`` is an FTS5 expression that finds every story that may hold them (each term's
    spellings: S-400 is "s 400" or "s400", F-35 also "f 35a"); ``accepts`` then keeps the
    stories where every term occurs as a watchlist would match it.
    """

    fts: str
    terms: tuple[Term, ...]

    def accepts(self, text: str) -> bool:
        return all(occurs(term, text) for term in self.terms)


def search_query(query: str) -> SearchQuery | None:
    """The query's words as terms, or None when it has no letter or digit to look for.

    A ``/.../`` word (a watchlist's regular expression) raises ``PatternError``: the
    full-text index finds words, not patterns."""
    clauses, terms = [], []
    for word in normalize_text(query).split():
        if is_regex_term(word):
            raise PatternError(
                f"{word} is a regular expression: search finds words; put it in a "
                "watchlist and run `feed-monitor backtest` to see what it matches"
            )
        word = word.strip("\"'")
        pieces = [p.lower() for p in _PIECE_RE.findall(word)]
        if not pieces:
            continue  # punctuation alone ("--", "*") says nothing to look for
        phrase, joined = " ".join(pieces), "".join(pieces)
        as_written = " ".join(re.findall(r"[^\W_]+", word.lower()))  # as FTS tokenizes it
        if is_designator_term(word):
            spellings = [f'"{as_written}"*', f'"{phrase}"*', f'"{joined}"*']  # F-35A, S400s
        else:
            spellings = [f'"{as_written}"', f'"{phrase}"', f'"{joined}"']
            if word.isupper() and len(joined) > 1:
                spellings.append(f'"{joined}s"')  # SAMs
            if is_short_capitals(word):
                spellings.append(f'"{" ".join(joined)}"')  # U.S.
        clauses.append("(" + " OR ".join(dict.fromkeys(spellings)) + ")")
        terms.append(compile_term(word))
    if not terms:
        return None
    return SearchQuery(" AND ".join(clauses), tuple(terms))


def _in_fields(hits: Sequence[_Hit], fields: frozenset[str]) -> bool:
    return any(hit.field in fields for hit in hits)


def _is_letter(char: str) -> bool:
    """A letter of a script that separates words with spaces (not CJK, say)."""
    return char.isalpha() and (char.isascii() or _WORD_CHAR_RE.match(char) is not None)


def story_fields(entry: Entry, feed_name: str = "") -> dict[str, str]:
    """The text of each field a watchlist can match (entries are normalized when parsed)."""
    return {
        "title": entry.title,
        "summary": entry.summary,
        "content": entry.content,
        "link": entry.link or "",
        "feed": feed_name,
    }


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


# Words so common in news that a watchlist term made only of them matches nearly everything.
_COMMON_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "in",
        "is",
        "it",
        "its",
        "new",
        "news",
        "of",
        "on",
        "or",
        "said",
        "says",
        "she",
        "that",
        "the",
        "their",
        "they",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)


def lint_watchlist(watchlist: WatchlistSpec) -> list[str]:
    """Warnings about terms that can never match or that match far too much."""
    warnings: list[str] = []
    excluded = {term.casefold() for term in watchlist.exclude}
    terms = [*watchlist.keywords, *(a for names in watchlist.aliases.values() for a in names)]
    for term in [*terms, *watchlist.require, *watchlist.exclude]:
        if is_regex_term(term):
            warnings.extend(f"{term} {warning}" for warning in lint_user_pattern(term[1:-1]))
            continue
        words = _PIECE_RE.findall(normalize_text(term).lower())
        if not words:
            warnings.append(f"{term!r} has no letters or digits and can never match")
        elif all(word in _COMMON_WORDS for word in words):
            warnings.append(f"{term!r} is a very common word and will match most stories")
        elif len("".join(words)) <= 2:
            warnings.append(f"{term!r} is very short and may match many unrelated stories")
    for term in terms:
        if term.casefold() in excluded:
            warnings.append(f"{term!r} is both a keyword and excluded, so it never alerts")
    return [f"watchlist {watchlist.name!r}: {warning}" for warning in warnings]


def explain_term(term: str) -> str | None:
    """How ``check`` says a short or designator-like term is matched; None for others."""
    word = normalize_text(term)
    if is_regex_term(term) or not word:
        return None
    if is_short_capitals(term):
        return (
            f"{term}: only in capitals ({word}, {word}s, {'.'.join(word)}.), "
            f"never the word {word.lower()!r} or {word.title()!r}, nor inside en_{word}"
        )
    if is_designator_term(term):
        pieces = _PIECE_RE.findall(word)
        dashed = "-".join(pieces) if len(pieces) == 2 else word
        forms = ["".join(pieces), dashed, " ".join(pieces), "".join(pieces) + "s"]
        nots = []
        for i, (left, right) in enumerate(pairwise(pieces)):
            if not left[0].isdigit() and right[0].isdigit() and left.lower() != left:
                nots.append(f"{left.lower()} {right}")  # "a 12": a word, then a number
            if left[0].isdigit() and not right[0].isdigit():
                nots.append(f"{' '.join(pieces[: i + 2])} 20")  # "4 K 20": K goes with 20
        if word[-1].isdigit():
            spaced = " ".join(pieces)
            nots += [f"{spaced},000", f"{spaced}.5", f"{spaced}%"]
        return (
            f"{term}: designator, any case, written together or with a dash or space "
            f"({', '.join(dict.fromkeys(forms))}); not {', '.join(map(repr, nots))}"
        )
    letters = "".join(_PIECE_RE.findall(word))
    if len(letters) <= 3 and letters.isalpha():
        return (
            f"{term}: any case, as a whole word; write it in capitals "
            f"({word.upper()}) to match only the acronym"
        )
    return None


def explain_terms(watchlist: WatchlistSpec) -> list[str]:
    """How each short or designator-like term of ``watchlist`` will be matched."""
    terms = [*watchlist.keywords, *(a for names in watchlist.aliases.values() for a in names),
             *watchlist.require, *watchlist.exclude]  # fmt: skip
    return [text for term in dict.fromkeys(terms) if (text := explain_term(term))]
