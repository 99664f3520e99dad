"""Watchlist matching: pure, no servers."""

from __future__ import annotations

import pytest

from monitor.config import Watchlist
from monitor.match import Matcher, make_snippet
from monitor.models import Entry
from tests.helpers import DATA

WATCHLIST = Watchlist(name="w", keywords=["S-400", "CAATSA", "F-35"])


def found(text: str, watchlist: Watchlist = WATCHLIST) -> tuple[str, ...]:
    matches = Matcher([watchlist]).match(Entry(key="k", title=text, link=None))
    return matches[0].keywords if matches else ()


@pytest.mark.parametrize(
    "text",
    [
        "S-400 deal",
        "the S400 system",
        "an S 400 battery",
        "S\u2011400",
        "S\u2013400",
        "S-400s",
        "Turkey's S-400'ler",
        "s-400",
        "Russia’s S-400’s radar",
    ],
)
def test_designator_spellings_match(text: str) -> None:
    assert found(text) == ("S-400",)


@pytest.mark.parametrize("text", ["F-35A", "F-35B jets", "F -35", "F-35I Adir", "F-35s", "F35"])
def test_designator_variants_match(text: str) -> None:
    assert found(text) == ("F-35",)


@pytest.mark.parametrize(
    "text", ["F-350 pickup", "F-355", "S-4000", "S-300", "AS/400 server", "RS-400", "F-3"]
)
def test_lookalike_designators_stay_silent(text: str) -> None:
    assert found(text) == ()


@pytest.mark.parametrize("text", ["CAATSA", "caatsa sanctions", "CAATSA-related", "CAATSA's"])
def test_acronyms(text: str) -> None:
    assert found(text) == ("CAATSA",)


def test_acronym_inside_a_word_is_silent() -> None:
    assert found("NOCAATSA and CAATSAX") == ()


def test_require_and_exclude() -> None:
    watchlist = Watchlist(name="w", keywords=["S-400"], require=["Turkey"], exclude=["video game"])
    assert found("S-400 sold to Turkey", watchlist) == ("S-400",)
    assert found("S-400 sold to India", watchlist) == ()
    assert found("S-400 in Turkey, the video game", watchlist) == ()


def test_sample_article_names_s400_and_f35_with_a_marked_snippet() -> None:
    headline, _, body = (DATA / "seed-article.txt").read_text().partition("\n")
    entry = Entry(key="k", title=headline.strip(), link=None, summary=" ".join(body.split()))
    [match] = Matcher([WATCHLIST]).match(entry)
    assert match.keywords == ("S-400", "F-35")
    assert "S-400s" in match.terms
    start, end = match.highlight
    assert match.snippet[start:end] == "S-400"


def test_snippet_is_cut_at_spaces_around_the_match() -> None:
    text = "word " * 50 + "S-400" + " word" * 50
    start = text.index("S-400")
    snippet, (a, b) = make_snippet(text, start, start + 5)
    assert snippet.startswith("…word") and snippet.endswith("word…")
    assert snippet[a:b] == "S-400"
    assert len(snippet) < 200


def test_a_term_pattern_is_compiled_only_when_a_story_has_its_anchor() -> None:
    # Compiling a plain term's pattern costs ~2 ms (its look-alike letters under
    # IGNORECASE): a watchlist of a hundred terms made every quiet `once` pay 0.3 s.
    from monitor.match import compiled_patterns

    terms = [f"Codename{i} Mk{i}" for i in range(200)] + ["Kh-4747", "/Wagner\\s+Group77/"]
    before = compiled_patterns()
    matcher = Matcher([Watchlist(name="w", keywords=terms)])
    assert compiled_patterns() == before
    matcher.match(Entry(key="k", title="Nothing of note today", link=None))
    # a /regular expression/ has no anchor: it is tried on every story
    assert compiled_patterns() - before == {"/Wagner\\s+Group77/"}
    [match] = matcher.match(Entry(key="k", title="A test of the Kh-4747 missile", link=None))
    assert match.keywords == ("Kh-4747",)
    assert compiled_patterns() - before == {"/Wagner\\s+Group77/", "Kh-4747"}
