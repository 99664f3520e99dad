"""``/.../`` terms run in linear time (RE2) and keep the meaning they had under Python's re."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.config import Watchlist
from monitor.match import Matcher, lint_watchlist
from monitor.models import Entry
from monitor.pattern import compile_user_pattern, to_re2
from tests.helpers import rss, write_config
from tests.servers import FeedServer

# (a+)+$ backtracks exponentially in Python's re: 2**27 steps for 27 a's and a "!".
EVIL = "/(a+)+$/"


def keywords(text: str, *terms: str, summary: str = "") -> tuple[str, ...]:
    watchlist = Watchlist(name="w", keywords=list(terms))
    matches = Matcher([watchlist]).match(Entry(key="k", title=text, link=None, summary=summary))
    return matches[0].keywords if matches else ()


def test_a_catastrophic_pattern_answers_in_bounded_time() -> None:
    # Bounds on the CPU time this thread spends (not the wall clock, which other work on
    # the machine stretches).
    crafted = "a" * 27 + "!"  # about 8 s under Python's re; instant under RE2
    started = time.thread_time()
    assert keywords(crafted, EVIL) == ()
    assert keywords("a" * 27, EVIL) == (EVIL,)
    assert time.thread_time() - started < 1.0
    long_story = "a" * 200_000 + "!"  # would never finish under a backtracking engine
    started = time.thread_time()
    assert keywords(long_story, EVIL, "/(x+x+)+y/") == ()
    assert time.thread_time() - started < 2.0


@pytest.mark.parametrize(
    ("term", "text", "matched"),
    [
        (r"/\bPAC-?[23]\b/", "Patriot PAC-3 battery", True),
        (r"/\bPAC-?[23]\b/", "pac2 interceptors", True),  # case-insensitive, as before
        (r"/\bPAC-?[23]\b/", "PAC-23", False),
        (r"/Z\w+ch/", "Zürich talks", True),  # \w is every script's letters, as in Python
        (r"/\d+\s*tonnes/", "٣ tonnes", True),  # \d is every script's digits
        (r"/S-400\s+deal/", "S-400\u00a0deal", True),  # \s covers NBSP, as in Python
        (r"/deal\Z/", "an S-400 deal", True),  # Python's \Z, end of text
        (r"/^an/", "an S-400 deal", True),
        (r"/[\w-]+ missile/", "anti-ship missile", True),
        (r"/\u0421-400/", "С-400 delivered", True),  # Python's \uXXXX escape
        (r"/[]x]/", "a ] b", True),  # "]" first in a class is a literal, as in Python
        (r"/[^]x]+ z/", "y z", True),
        (r"/S-400.*Turkey/", "S-400", False),  # never across fields (title, summary)
    ],
)
def test_regex_terms_keep_their_python_meaning(term: str, text: str, matched: bool) -> None:
    found = keywords(text, term, summary="Turkey" if "Turkey" in term else "")
    assert found == ((term,) if matched else ())


def test_whitespace_class_is_pythons() -> None:
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    pattern = compile_user_pattern(r"\s")
    negated = compile_user_pattern(r"\S")
    assert all(pattern.match(c) for c in spaces)
    assert not any(negated.match(c) for c in spaces)
    others = [chr(c) for c in range(0x3001) if not chr(c).isspace() and not 0xD800 <= c < 0xE000]
    assert not any(pattern.match(c) for c in others)


def test_escapes_are_rewritten_outside_and_inside_classes() -> None:
    assert to_re2(r"\w[\d_]\Z") == r"[\p{L}\p{N}_][\p{Nd}_]\z"
    assert to_re2(r"\\w") == r"\\w"  # an escaped backslash, then a plain w
    with pytest.raises(ValueError, match=r"\\W inside \[...\]"):
        compile_user_pattern(r"[\W]")


def test_the_match_reports_the_story_spelling_and_a_snippet() -> None:
    watchlist = Watchlist(name="w", keywords=[r"/\bPAC-?[23]\b/"])
    entry = Entry(key="k", title="Patriot", link=None, summary="A new pac-3 battery arrived")
    [match] = Matcher([watchlist]).match(entry)
    assert match.terms == ("pac-3",)
    start, end = match.highlight
    assert match.snippet[start:end] == "pac-3"


def test_check_warns_about_empty_matches_and_ascii_only_word_edges() -> None:
    watchlist = Watchlist(name="w", keywords=["/a*/", r"/\bРоссия\b/", r"/\bPAC-3\b/"])
    warnings = lint_watchlist(watchlist)
    assert any("/a*/ matches the empty string" in w for w in warnings)
    assert any(r"/\bРоссия\b/ uses \b" in w for w in warnings)
    assert not any("PAC-3" in w for w in warnings)


def test_once_with_a_catastrophic_term_and_a_crafted_story_finishes(
    tmp_path: Path, feeds: FeedServer
) -> None:
    items = [
        {"title": "a" * 30 + "!", "guid": "crafted", "published": time.time() - 60},
        {"title": "plain " + "a" * 30, "guid": "match", "published": time.time() - 60},
    ]
    url = feeds.serve("/feed", rss(items))
    config = write_config(tmp_path, feeds=[url], keywords=[f"'{EVIL}'"])
    started = time.process_time()  # CPU time of this process, where stories are matched
    result = CliRunner().invoke(cli, ["once", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 new stories, 1 alert queued" in result.output
    assert time.process_time() - started < 20
