"""The labelled corpus (tests/data/match_corpus.yaml): precision and recall must be 1.0."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from monitor.config import Watchlist
from monitor.match import Matcher
from monitor.parse import parse_feed
from tests.helpers import DATA, rss

CORPUS: dict[str, Any] = yaml.safe_load((DATA / "match_corpus.yaml").read_text(encoding="utf-8"))
MATCHER = Matcher(Watchlist.model_validate(w) for w in CORPUS["watchlists"])
CASES = CORPUS["cases"]


def found_in(case: dict[str, Any]) -> set[tuple[str, str]]:
    """(watchlist, keyword) pairs the matcher reports for a case, parsed as a real feed."""
    item = {"title": case["title"], "link": "https://example.org/story", "guid": "1"}
    if "summary" in case:
        item["description"] = case["summary"]
    [entry] = parse_feed(rss([item]).encode(), url="https://example.org/feed").entries
    return {(m.watchlist, keyword) for m in MATCHER.match(entry) for keyword in m.keywords}


def expected_in(case: dict[str, Any]) -> set[tuple[str, str]]:
    return {(name, kw) for name, keywords in case["expect"].items() for kw in keywords}


@pytest.mark.parametrize("case", CASES, ids=[case["title"][:50] for case in CASES])
def test_case(case: dict[str, Any]) -> None:
    assert found_in(case) == expected_in(case)


def test_precision_and_recall_are_perfect() -> None:
    true_positives = false_positives = false_negatives = 0
    for case in CASES:
        found, expected = found_in(case), expected_in(case)
        true_positives += len(found & expected)
        false_positives += len(found - expected)
        false_negatives += len(expected - found)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    assert len(CASES) >= 50 and true_positives >= 40
    assert (precision, recall) == (1.0, 1.0)
