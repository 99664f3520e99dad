"""User-written regular expressions (``/.../`` watchlist terms, ``is_regex_term``), run by RE2.

A pattern from a config file runs against every story, and Python's backtracking
engine can take exponential time on some of them (``(a+)+$`` against a long run of
``a``s held ``once`` for more than 30 s and made ``run`` ignore SIGTERM). RE2 (Google's
engine, the ``google-re2`` binding) matches in time linear in the text, whatever the
pattern; the price is that it has no backreferences, lookaround, atomic groups or
possessive quantifiers. ``compile_user_pattern`` refuses those with a reason the user
can act on.

Patterns keep the meaning they had under Python's ``re``: matching ignores case, and
``\\w``, ``\\d`` and ``\\s`` cover every script (RE2's are ASCII-only, so they are
rewritten into Unicode classes here); Python's ``\\Z``, ``\\uXXXX`` and ``\\UXXXXXXXX``
are rewritten into RE2's spelling. One difference remains: RE2's ``\\b`` and ``\\B``
know only ASCII letters and digits (``lint_user_pattern`` warns where that matters).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Protocol


def is_regex_term(term: str) -> bool:
    """Whether a watchlist term is written ``/.../``: a regular expression, run by RE2."""
    return len(term) > 2 and term.startswith("/") and term.endswith("/")


class TextPattern(Protocol):
    """What the matcher calls on a compiled term (``re.Pattern`` or ``UserPattern``)."""

    def finditer(self, text: str, pos: int = 0, endpos: int = ..., /) -> Iterator[Any]: ...
    def match(self, text: str, pos: int = 0, endpos: int = ..., /) -> Any: ...
    def search(self, text: str, pos: int = 0, endpos: int = ..., /) -> Any: ...


# Python's \s for str patterns: the characters for which str.isspace() is true.
_SPACE = (
    r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
    r"\x{205f}\x{3000}"
)
# Python's \w: str.isalnum() (letters and every kind of number) and the underscore.
_WORD = r"\p{L}\p{N}_"
_OUTSIDE_CLASS = {
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "d": r"\p{Nd}",
    "D": r"\P{Nd}",
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "Z": r"\z",  # Python's end of text is RE2's \z
}
_INSIDE_CLASS = {"w": _WORD, "d": r"\p{Nd}", "D": r"\P{Nd}", "s": _SPACE}
_HEX_ESCAPE_RE = re.compile(r"u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})")

# What RE2 refuses that Python accepted, by the start of RE2's message, and why.
_NOT_SUPPORTED = [
    (r"invalid escape sequence: \\[1-9]", "backreferences (\\1) are not supported"),
    (r"invalid perl operator: \(\?P(=|$)", "backreferences ((?P=name)) are not supported"),
    (r"invalid perl operator: \(\?[=!]", "lookahead ((?=...), (?!...)) is not supported"),
    (r"invalid perl operator: \(\?<[=!]", "lookbehind ((?<=...), (?<!...)) is not supported"),
    (r"invalid perl operator: \(\?>", "atomic groups ((?>...)) are not supported"),
    (r"invalid perl operator: \(\?\(", "conditionals ((?(1)...)) are not supported"),
    (r"bad repetition operator: [*+?}]\+", "possessive quantifiers (a++) are not supported"),
    (r"invalid perl operator: \(\?[ax]", "the flags (?x) and (?a) are not supported"),
]
_WHY_RE2 = (
    "terms are matched by RE2, which runs in linear time and so has no backreferences, "
    "lookaround, atomic groups or possessive quantifiers"
)


class PatternError(ValueError):
    """A ``/.../`` term that cannot be used; the message says why and what to write."""


class UserPattern:
    """A compiled user pattern: the subset of ``re.Pattern`` the matcher uses, run by RE2."""

    def __init__(self, source: str) -> None:
        import re2  # 13 ms: paid only by a config that has a /.../ term

        self.source = source  # as the user wrote it (Python syntax)
        options = re2.Options()
        options.case_sensitive = False
        options.log_errors = False  # RE2 would print the pattern to stderr
        try:
            self._regexp = re2.compile(to_re2(source), options)
        except re2.error as exc:
            raise PatternError(_explain(exc)) from None

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None, /) -> Iterator[Any]:
        return self._regexp.finditer(text, pos, endpos)  # type: ignore[no-any-return]

    def match(self, text: str, pos: int = 0, endpos: int | None = None, /) -> Any:
        return self._regexp.match(text, pos, endpos)

    def search(self, text: str, pos: int = 0, endpos: int | None = None, /) -> Any:
        return self._regexp.search(text, pos, endpos)


def compile_user_pattern(source: str) -> UserPattern:
    """The RE2 pattern for ``source`` (Python ``re`` syntax), or ``PatternError``."""
    return UserPattern(source)


def to_re2(source: str) -> str:
    """``source`` with Python's Unicode-aware escapes spelled the way RE2 reads them."""
    out: list[str] = []
    in_class = False
    class_start = -1  # where the current [...] began, to read "[]" and "[^]" right
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            escaped = source[i + 1]
            if hex_escape := _HEX_ESCAPE_RE.match(source, i + 1):
                out.append(f"\\x{{{hex_escape[1] or hex_escape[2]}}}")
                i = hex_escape.end()
                continue
            table = _INSIDE_CLASS if in_class else _OUTSIDE_CLASS
            if escaped in table:
                out.append(table[escaped])
            elif in_class and escaped in "WS":
                raise PatternError(
                    f"\\{escaped} inside [...] is not supported here; write [^...] instead"
                )
            else:
                out.append(source[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class, class_start = True, i
        elif char == "]" and in_class:
            # A "]" right after "[" or "[^" is a literal, as in Python.
            opening = source[class_start + 1 : i]
            if opening not in ("", "^"):
                in_class = False
        out.append(char)
        i += 1
    return "".join(out)


def _explain(exc: Exception) -> str:
    message = exc.args[0] if exc.args else str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    for pattern, reason in _NOT_SUPPORTED:
        if re.match(pattern, message):
            return f"{reason} ({_WHY_RE2})"
    return message


def lint_user_pattern(source: str) -> list[str]:
    """Warnings about a pattern that compiles but may not mean what its author meant."""
    warnings = []
    pattern = compile_user_pattern(source)
    if pattern.search("") is not None:
        warnings.append("matches the empty string, so it matches every story")
    if re.search(r"\\[bB]", source) and not source.isascii():
        warnings.append(
            "uses \\b, which knows only ASCII letters and digits: next to letters of other "
            "scripts it never matches (write the word's edges out, e.g. (?:^|[^\\p{L}]))"
        )
    return warnings
