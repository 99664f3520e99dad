"""`backtest` and `check` warnings through the CLI, on a real database."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import cli, edit_config, rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer


def test_backtest_replays_stored_stories_without_sending(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = [
        seed_article_item(),
        {"title": "Patriot batteries arrive in Poland", "link": "https://e.org/p", "guid": "p"},
        {"title": "Weather delays naval drills", "link": "https://e.org/w", "guid": "w"},
    ]
    url = feeds.serve("/f.xml", rss(items, title="Defense Wire"))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    assert cli("once", "--config", config).returncode == 0
    assert len(sink.wait_for(1)) == 1

    # The analyst adds a keyword and checks what it would have caught.
    edit_config(config, lambda c: c["watchlists"][0]["keywords"].insert(0, "Patriot"))
    result = cli("backtest", "--config", config, "--since", "1d")
    assert result.returncode == 0, result.stderr
    assert "Patriot batteries arrive in Poland" in result.stdout
    assert "Russia announced the sale" in result.stdout
    assert "Weather delays" not in result.stdout
    assert "matched S-400, F-35" in result.stdout
    assert "»Patriot«" in result.stdout
    assert "3 stories first seen in the last 1d; matches: 2 turkey-air-defense" in result.stdout

    as_json = cli("backtest", "--config", config, "--json")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {row["title"] for row in rows} == {items[0]["title"], items[1]["title"]}
    assert all(row["feed"] == "Defense Wire" for row in rows)
    assert len(sink.received) == 1  # a backtest sends nothing


def test_backtest_refuses_unknown_watchlist_and_bad_since(tmp_path: Path) -> None:
    config = write_config(tmp_path, feeds=[])
    unknown = cli("backtest", "--config", config, "--watchlist", "nope")
    assert unknown.returncode == 2
    assert "no watchlist named nope (known: turkey-air-defense)" in unknown.stderr
    bad = cli("backtest", "--config", config, "--since", "forever")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_check_warns_about_useless_and_broad_terms(tmp_path: Path) -> None:
    config = write_config(tmp_path, feeds=[], keywords=["S-400", "the", "AI", "'---'", "'/x*/'"])
    edit_config(config, lambda c: c["watchlists"][0].update(exclude=["S-400"]))
    result = cli("check", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "'the' is a very common word" in result.stderr
    assert "'AI' is very short" in result.stderr
    assert "'---' has no letters or digits" in result.stderr
    assert "/x*/ matches the empty string" in result.stderr
    assert "'S-400' is both a keyword and excluded" in result.stderr
