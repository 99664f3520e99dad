"""`search` spells terms as watchlists do, and never shows FTS5 syntax errors (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.identity import TITLE_WINDOW, source_keys
from monitor.match import Matcher
from monitor.models import Entry, PollRecord
from monitor.pipeline import plan_poll
from monitor.store import Store
from tests.helpers import write_config

NOW = 1_790_000_000.0
STORIES = {
    "id:1": "Turkey weighs a second S400 purchase",
    "id:2": "Marines fly the F-35A from Iwakuni",
    "id:3": "Ford F-350 recall widens",
    "id:4": "S-300 batteries leave Crete",
    "id:5": "New log4j-core flaw patched; C++ toolchains hit too",
    "id:6": "Let us talk about drones",
    "id:7": "U.S. and Turkey discuss the S-400 deal",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, feeds=[])
    store = Store.open(tmp_path / "monitor.db")
    feed = store.sync_feeds([("https://e.org/f", "E")], NOW)["https://e.org/f"]
    batch = [Entry(key, title, f"https://e.org/{key[3:]}") for key, title in STORIES.items()]
    keyed = [(entry, source_keys(entry, set())) for entry in batch]
    lookup = store.lookup(feed.id, [keys for _, keys in keyed], NOW - TITLE_WINDOW)
    plan = plan_poll(keyed, lookup, Matcher([]), feed_id=feed.id, feed_name="E", now=NOW,
                     max_age=86400)  # fmt: skip
    store.save_poll(feed.id, PollRecord(NOW, NOW + 900, status=200), plan)
    store.close()
    return path


def search(config: Path, *query: str) -> tuple[int, str]:
    args = ["search", "--since", "3650d", "--config", str(config), "--", *query]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def titles(output: str) -> set[str]:
    return {title for title in STORIES.values() if title in output}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("S-400", {"id:1", "id:7"}),  # S400 and S-400, not S-300
        ("S400", {"id:1", "id:7"}),
        ("F-35", {"id:2"}),  # F-35A, not F-350
        ("log4j-core", {"id:5"}),
        ("C++", {"id:5"}),
        ("US", {"id:7"}),  # U.S., not the word "us"
        ("S-400 Turkey", {"id:1", "id:7"}),
        ("NOT OR AND NEAR", set()),  # FTS5 operators are words here
        ('"S-400', {"id:1", "id:7"}),  # an unbalanced quote is no syntax error
    ],
)
def test_search_spells_terms_as_watchlists_do(config: Path, query: str, expected: set[str]) -> None:
    code, output = search(config, query)
    assert code == 0, output
    assert titles(output) == {STORIES[key] for key in expected}
    assert (f"{len(expected)} stories" if len(expected) != 1 else "1 story") in output


@pytest.mark.parametrize("query", ["", "   ", '"', '""', "'", "--", "*", "-"])
def test_an_empty_query_gets_a_clear_message(config: Path, query: str) -> None:
    code, output = search(config, query)
    assert code == 2, output
    assert "search for at least one word or number" in output
    assert "fts5" not in output.lower() and "Traceback" not in output


@pytest.mark.parametrize("query", ["/(S-400/", "Turkey /S-4[00/", "/S-?[34]00/"])
def test_a_regular_expression_is_refused_with_where_it_works(config: Path, query: str) -> None:
    # The index finds words, so a /.../ word (a watchlist's regular expression) cannot be
    # searched for: it was a traceback when invalid, and "0 stories" when valid.
    code, output = search(config, query)
    assert code == 2, output
    assert "a regular expression" in output
    assert "feed-monitor backtest" in output
    assert "Traceback" not in output
