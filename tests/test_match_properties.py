"""Property-based tests (hypothesis) of normalization and matching invariants."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import Watchlist
from monitor.match import DASHES, Matcher
from monitor.models import Entry
from monitor.text import html_to_text, normalize_text

ascii_words = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
designators = st.tuples(
    st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=3),
    st.integers(min_value=1, max_value=9999),
)


def keywords_found(keyword: str, text: str) -> tuple[str, ...]:
    matcher = Matcher([Watchlist(name="w", keywords=[keyword])])
    matches = matcher.match(Entry(key="k", title=normalize_text(text), link=None))
    return matches[0].keywords if matches else ()


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(st.text(alphabet=st.characters(blacklist_characters="<&")))
def test_plain_text_passes_html_to_text_unchanged(text: str) -> None:
    assert html_to_text(text) == normalize_text(text)


@given(st.lists(ascii_words, min_size=1, max_size=4), ascii_words, ascii_words)
def test_a_term_always_matches_itself_between_spaces(
    words: list[str], before: str, after: str
) -> None:
    term = " ".join(words)
    assert keywords_found(term, f"{before} {term} {after}") == (term,)


@given(designators, st.sampled_from(["", " ", *DASHES, " - "]), st.booleans())
def test_designators_match_every_separator_and_case(
    designator: tuple[str, int], separator: str, lower: bool
) -> None:
    letters, number = designator
    term = f"{letters}-{number}"
    written = f"{letters.lower() if lower else letters}{separator}{number}"
    # A lowercase word then a number ("a 12") is ordinary text, not the designator A-12.
    expected = () if lower and separator.isspace() else (term,)
    assert keywords_found(term, f"Reports on the {written} program") == expected


@given(designators, st.integers(min_value=0, max_value=9))
def test_designators_never_match_a_longer_number(designator: tuple[str, int], digit: int) -> None:
    letters, number = designator
    assert keywords_found(f"{letters}-{number}", f"the {letters}-{number}{digit} model") == ()


@settings(max_examples=50)
@given(st.text(alphabet=string.ascii_letters + " .,;:!?-'", max_size=200))
def test_matching_ignores_ascii_case(text: str) -> None:
    term = "Caatsa"
    assert keywords_found(term, text.upper()) == keywords_found(term, text.lower())
