"""Matching real text: short capitals and designators against ordinary words (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.config import Watchlist
from monitor.match import Matcher
from monitor.models import Entry
from tests.helpers import write_config

WATCHLIST = Watchlist(name="w", keywords=["US", "IT", "SAM", "A12", "4K", "S-400"])
MATCHER = Matcher([WATCHLIST])


def found(text: str) -> set[str]:
    return {kw for m in MATCHER.match(Entry("k", text, None)) for kw in m.keywords}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Short capitals: only in capitals, also dotted, never the everyday word.
        ("Tell us what you think", set()),
        ("Us and them", set()),
        ("US troops leave the base", {"US"}),
        ("U.S. troops leave the base", {"US"}),
        ("a U.S.-led coalition", {"US"}),
        ("the U.S.A. at the games", set()),
        ("locale en_US and de_DE", set()),
        ("US_ARMY_ID", set()),
        ("it is over", set()),
        ("IT outage at the ministry", {"IT"}),
        ("three SAMs were fired", {"SAM"}),
        ("Sam said so", set()),
        ("Coastal СAM sites", {"SAM"}),  # a Cyrillic С in a Latin word
        ("coastal сam sites", set()),
        # Designators: not a lowercase word then a number, nor a number that goes on.
        ("a phone with a 12,000 mAh battery", set()),
        ("a 10-year plan", set()),
        ("a 12 in the review", set()),
        ("A 12.5 percent rise", set()),
        ("a12 drone", {"A12"}),
        ("A12% of it", set()),
        ("the A12 drone", {"A12"}),
        ("the A-12 Oxcart", {"A12"}),
        ("A 12 prototypes", {"A12"}),
        ("K 4 K 20", set()),
        ("4K video", {"4K"}),
        ("4 K video", {"4K"}),
        ("s-400 and S400", {"S-400"}),
        ("the S-400.", {"S-400"}),
        ("S-400, then more", {"S-400"}),
        ("s 400 units", set()),
        ("S-400_backup", set()),
    ],
)
def test_short_terms_and_designators_in_real_text(text: str, expected: set[str]) -> None:
    assert found(text) == expected


def test_check_says_how_short_and_designator_terms_match(tmp_path: Path) -> None:
    config = write_config(tmp_path, feeds=[], keywords=["US", "A12", "4K", "it", "CAATSA"])
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [us] = [line for line in lines if line.strip().startswith("US:")]
    assert "only in capitals" in us and "U.S." in us and "'us'" in us
    [a12] = [line for line in lines if line.strip().startswith("A12:")]
    assert "'a 12'" in a12 and "'A 12,000'" in a12 and "A-12" in a12
    [k4] = [line for line in lines if line.strip().startswith("4K:")]
    assert "'4 K 20'" in k4
    [it] = [line for line in lines if line.strip().startswith("it:")]
    assert "capitals (IT)" in it
    assert not any(line.strip().startswith("CAATSA:") for line in lines)
    as_json = CliRunner().invoke(cli, ["check", "--json", "--config", str(config)])
    terms = json.loads(as_json.output)["terms"]["turkey-air-defense"]
    assert [t.split(":")[0] for t in terms] == ["US", "A12", "4K", "it"]
