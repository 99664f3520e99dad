"""One alert per event, through the whole pipeline: several outlets' feeds, several polling
rounds (`once` in process), real SQLite and a real json:// receiver. The reports are the
labelled ones of tests/data/event_pairs.yaml (the grouping itself: test_events.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import cli as feed_monitor
from tests.helpers import rss, write_config
from tests.servers import AlertSink, FeedServer
from tests.test_events import report


def item(name: str, minutes_ago: float = 30) -> dict[str, object]:
    title, body = report(name)
    paragraphs = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
    return {"title": title, "link": f"https://{name}.example/story", "guid": name,
            "description": paragraphs, "published": time.time() - minutes_ago * 60}  # fmt: skip


def run(*args: str) -> str:
    result = CliRunner().invoke(feed_monitor, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_reports_of_one_event_alert_once_and_distinct_events_stay_apart(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    wire = feeds.serve("/wire.xml", rss([item("s400-missile-wire")], title="Wire"))
    daily = feeds.serve("/daily.xml", rss([], title="Daily"))
    weekly = feeds.serve("/weekly.xml", rss([], title="Weekly"))
    config = write_config(
        tmp_path, feeds=[wire, daily, weekly], notify=[sink.url], keywords=["S-400"],
        extra="events: {window: 48h, follow_up_at: 3}\nalerts: {burst_limit: 100}",
    )  # fmt: skip
    run("once", "--config", str(config))
    [first] = sink.wait_for(1)
    assert "Turkey test-fires S-400 missile" in first["title"]

    # The next round: two newspapers republish the wire story under their own headlines and
    # intros, and the wire reports a different S-400 event (same topic, other news).
    feeds.serve("/daily.xml", rss([item("s400-missile-daily")], title="Daily"))
    feeds.serve("/weekly.xml", rss([item("s400-missile-edited")], title="Weekly"))
    other = [item("s400-missile-wire"), item(_other_event_report(), minutes_ago=5)]
    feeds.serve("/wire.xml", rss(other, title="Wire"))
    report_json = json.loads(run("once", "--json", "--config", str(config)))
    assert report_json["new_stories"] == 3
    # One alert for the other event, one follow-up (3 outlets now), no second alert.
    received = sink.wait_for(3)
    titles = [post["title"] for post in received]
    assert sum("test-fires S-400" in t or "S-400 at last" in t or "live S-400" in t
               for t in titles if t.startswith("[turkey")) == 1  # fmt: skip
    assert any(t.startswith("[feed-monitor] 3 outlets") for t in titles)
    assert len([t for t in titles if t.startswith("[turkey")]) == 2

    events = json.loads(run("events", "--json", "--config", str(config)))
    [event] = events
    assert event["reports"][0]["outlet"] == "Wire"  # the first report names the event
    assert sorted(r["outlet"] for r in event["reports"]) == ["Daily", "Weekly", "Wire"]
    joined = next(r for r in event["reports"] if r["outlet"] == "Daily")
    story = json.loads(run("story", str(joined["story_id"]), "--json", "--config", str(config)))
    assert story["event"]["id"] == event["id"] and len(story["event"]["reports"]) == 3
    [verdict] = story["watchlists"]
    assert "another report of event" in " ".join(verdict["alert"])
    text = run("story", str(joined["story_id"]), "--config", str(config))
    assert "reported by 3 stories" in text and "Wire" in text and "Weekly" in text


def test_events_false_alerts_every_report(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    wire = feeds.serve("/wire.xml", rss([item("s400-missile-wire")], title="Wire"))
    daily = feeds.serve("/daily.xml", rss([item("s400-missile-daily")], title="Daily"))
    config = write_config(
        tmp_path, feeds=[wire, daily], notify=[sink.url], keywords=["S-400"], extra="events: false"
    )
    run("once", "--config", str(config))
    assert len(sink.wait_for(2)) == 2


def test_a_summary_names_the_other_outlets_of_its_events(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    wire_items = [item("s400-missile-wire"), item(_other_event_report(), minutes_ago=5)]
    wire = feeds.serve("/wire.xml", rss(wire_items, title="Wire"))
    daily = feeds.serve("/daily.xml", rss([], title="Daily"))
    config = write_config(
        tmp_path, feeds=[wire, daily], notify=[sink.url], keywords=["S-400"],
        extra="alerts: {burst_limit: 1}",  # the wire's two alerts: one summary
    )  # fmt: skip
    sink.fail_with = 503  # the summary waits for its retry...
    run("once", "--config", str(config))
    # ...while a newspaper republishes the missile story.
    feeds.serve("/daily.xml", rss([item("s400-missile-daily")], title="Daily"))
    sink.fail_with = None
    run("once", "--config", str(config))
    [summary] = sink.wait_for(1)
    assert summary["title"] == "[turkey-air-defense] 2 matching stories in one poll of Wire"
    missile_line = next(
        line for line in summary["message"].splitlines() if "test-fires S-400 missile" in line
    )
    assert "also reported by 1: Daily" in missile_line


def _other_event_report() -> str:
    """A labelled report of another S-400 event than the missile test."""
    from tests.test_events import PAIRS

    return next(
        name
        for name, story in PAIRS["stories"].items()
        if story["event"] != "s400-missile" and name.startswith("s400")
    )


def test_only_stories_that_match_a_watchlist_form_events(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    # The others never alert; fingerprinting them would cost every story a comparison.
    wire = feeds.serve("/wire.xml", rss([item("s400-missile-wire")], title="Wire"))
    daily = feeds.serve("/daily.xml", rss([item("s400-missile-daily")], title="Daily"))
    config = write_config(tmp_path, feeds=[wire, daily], keywords=["Patriot"])
    assert json.loads(run("once", "--json", "--config", str(config)))["new_stories"] == 2
    assert json.loads(run("events", "--json", "--config", str(config))) == []
