"""Config fuzzer: whatever ``check`` accepts, ``once`` runs without a traceback.

Hypothesis writes config files from valid and hostile values for every kind of key
(durations, numbers, strings, lists, crontab lines, listen addresses, watchlist terms,
paths) and asserts two things (issue 11, item 10 and "Tests"):

- ``load_config`` either accepts the file or raises ``ConfigError``, never anything else,
  and refuses every file that holds a value known to be hostile;
- ``once``, driven in process through click's CliRunner against a local feed server
  and a local Apprise ``json://`` receiver, runs on any accepted file and exits 0 or 1
  with a message, never with a traceback.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from monitor.cli import cli
from monitor.config_load import load_config
from monitor.errors import ConfigError
from tests.helpers import rss
from tests.servers import AlertSink, FeedServer, alert_sink, feed_server

# Each key's values: (valid, hostile). A valid value may be odd (a floor, the longest
# duration, a leap-day digest); a hostile one must be refused by validation.
DURATION = (
    ["15m", "1s", "2h", 30, "0.5m", "3650d", "1w"],
    [".nan", ".inf", "-.inf", "-1", "0", "99999999999999999999w", "1e400", "0.000001s",
     "''", "[1]", "{a: 1}", "true", "soon", "3651d", str(10**30)],
)  # fmt: skip
RETENTION = (["1h", "365d", "3650d"], [".nan", "59m", "0", "-1d", "99999999999999999999w"])
JITTER = (["0.1s", "30s", 1], [".nan", "-5s", "0", "99999w"])
COUNT = (["1", "4", "16"], ["0", "-3", ".nan", "1e400", "999999", "'many'", "[4]"])
SILENCE_FACTOR = (["2", "10.5"], ["1", ".inf", ".nan", "0"])
CRON = (
    ["'0 8 * * *'", "'*/5 * * * *'", "'0 8 29 2 *'", "'0 0 31 * *'"],
    ["'0 0 31 2 *'", "'0 0 30 2 *'", "'61 * * * *'", "''", "'* * * *'", "'x'"],
)
LISTEN = (
    ["'127.0.0.1:9465'", "'[::1]:9465'", "'localhost:1'"],
    ["':::::18998'", "'127.0.0.1:0'", "'127.0.0.1:99999'", "'::1:9465'", "'host'", "''"],
)
QUIET = (["'22:00-07:00'", "'09:00-09:30'"], ["'25:00-01:00'", "'08:00-08:00'", "'soon'"])
ZONE = (["UTC", "Europe/Berlin"], ["Nowhere/Land", "''", "'../../etc/passwd'"])
DATABASE = (["m.db", "sub/dir/m.db", "'m \u00e9.db'"], ['"m\\0.db"', "''"])
USER_AGENT = (["'Desk/1.0 (ops@example.org)'"], ['"bad\\nheader"', '"nul\\0"'])
NAME = (["'w'", "'S-400 watch'", "'щит'"], ["''", "[]", "{a: b}"])
TERMS = (
    ["S-400", "CAATSA", "'/(a+)+$/'", "'/\\bPAC-?[23]\\b/'", "'/\\w+ missile/'", "F-35",
     "'/a*/'", "'---'", "video game", "'/'", "'С-400'"],
    ["''", "'/(a)\\1/'", "'/S(?=400)/'", "'/(?<!F-)35/'", "'/(unclosed/'", "'/a++/'", "[x]"],
)  # fmt: skip
TEMPLATE = (["'[$watchlist] $title'", "'$$ $feed'"], ["'$nosuch'", "'${title'"])


def pick(draw: st.DrawFn, values: tuple[list[object], list[object]], hostile: bool) -> str:
    """A YAML scalar for one key: hostile only when this key is the one made hostile."""
    chosen = draw(st.sampled_from(values[1] if hostile else values[0]))
    return str(chosen)


def any_text(draw: st.DrawFn) -> str:
    """Any string at all, as a YAML scalar (JSON's escapes are YAML's too)."""
    return json.dumps(draw(st.text(min_size=1, max_size=12)))


@st.composite
def configs(draw: st.DrawFn, feed_url: str, sink_url: str) -> tuple[str, bool]:
    """A config file's text, and whether it holds a hostile value."""
    keys = ["interval", "timeout", "max_age", "jitter", "min_interval", "max_backoff",
            "concurrency", "per_host", "burst_limit", "max_attempts", "retry_after",
            "story_text", "failing_after", "silence_factor", "digest", "every", "listen",
            "quiet_hours", "timezone", "database", "user_agent", "name", "keyword",
            "require", "exclude", "template", "feed_interval"]  # fmt: skip
    bad = draw(st.none() | st.sampled_from(keys))  # at most one hostile key per file

    def value(key: str, values: tuple[list[object], list[object]]) -> str:
        return pick(draw, values, hostile=key == bad)

    def maybe(key: str) -> bool:  # a hostile key is always written; others sometimes
        return key == bad or draw(st.booleans())

    defaults = [f"{k}: {value(k, JITTER if k == 'jitter' else DURATION)}"
                for k in ("interval", "timeout", "max_age", "jitter", "min_interval",
                          "max_backoff") if maybe(k)]  # fmt: skip
    if not any(d.startswith("min_interval") for d in defaults):
        defaults.append("min_interval: 1s")  # keep `interval` >= min_interval legal
    defaults.append("max_interval: 3650d")
    lines = [f"database: {value('database', DATABASE)}", f"defaults: {{{', '.join(defaults)}}}"]
    for key in ("concurrency", "per_host"):
        if maybe(key):
            lines.append(f"{key}: {value(key, COUNT)}")
    if maybe("user_agent"):
        lines.append(f"user_agent: {value('user_agent', USER_AGENT)}")
    if maybe("timezone"):
        lines.append(f"timezone: {value('timezone', ZONE)}")
    if maybe("story_text"):
        lines.append(f"retention: {{story_text: {value('story_text', RETENTION)}}}")
    alerts = [f"{k}: {value(k, COUNT)}" for k in ("burst_limit", "max_attempts") if maybe(k)]
    if maybe("retry_after"):
        alerts.append(f"retry_after: {value('retry_after', DURATION)}")
    if maybe("template"):
        alerts.append(f"templates: {{title: {value('template', TEMPLATE)}}}")
    lines.append(f"alerts: {{{', '.join(alerts)}}}")
    if maybe("listen"):
        lines.append(f"http: {{listen: {value('listen', LISTEN)}}}")
    health = [f"{k}: {value(k, DURATION)}" for k in ("failing_after",) if maybe(k)]
    if maybe("silence_factor"):
        health.append(f"silence_factor: {value('silence_factor', SILENCE_FACTOR)}")
    if health:
        lines.append(f"health: {{notify: [ops], {', '.join(health)}}}")
    feed = f"  - url: {feed_url}"
    if maybe("feed_interval"):
        feed += f"\n    interval: {value('feed_interval', DURATION)}"
    if draw(st.booleans()):  # any text at all as the feed's name
        feed += f"\n    name: {json.dumps(draw(st.text(max_size=12)))}"
    name = value("name", NAME) if bad == "name" or draw(st.booleans()) else any_text(draw)
    lines += ["feeds:", feed, "watchlists:", f"  - name: {name}"]
    terms = [value("keyword", TERMS), *draw(st.lists(st.sampled_from(TERMS[0]), max_size=3))]
    if draw(st.booleans()):
        terms.append(any_text(draw))
    lines.append(f"    keywords: [{', '.join(terms)}]")
    for key in ("require", "exclude"):
        if maybe(key):
            lines.append(f"    {key}: [{value(key, TERMS)}]")
    schedule = draw(st.sampled_from(["digest", "every", "quiet_hours", None]))
    if bad in ("digest", "every", "quiet_hours"):
        schedule = bad
    if schedule == "digest":
        lines.append(f"    digest: {value('digest', CRON)}")
    elif schedule == "every":
        lines.append(f"    every: {value('every', DURATION)}")
    elif schedule == "quiet_hours":
        lines.append(f"    quiet_hours: {value('quiet_hours', QUIET)}")
    lines += ["notify:", f"  - url: '{sink_url}'", "    tags: [ops]"]
    return "\n".join(lines) + "\n", bad is not None


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FeedServer, AlertSink]]:
    with feed_server() as feeds, alert_sink() as sink:
        now = time.time() - 600
        items = [
            {"title": "Turkey buys more S-400 and CAATSA follows", "guid": "1", "published": now},
            {"title": "a" * 30 + "!", "guid": "2", "published": now},  # the (a+)+$ trap
            {"title": "PAC-3 and F-35A in a video game", "guid": "3", "published": now,
             "description": "<p>Patriot PAC-2 battery, С-400 and 30 anti-ship missile</p>"},
        ]  # fmt: skip
        feeds.serve("/feed", rss(items))
        yield feeds, sink


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every run: a fixed, bounded cost
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_what_check_accepts_once_runs_without_a_traceback(
    servers: tuple[FeedServer, AlertSink], data: st.DataObject
) -> None:
    feeds, sink = servers
    text, hostile = data.draw(configs(feeds.url("/feed"), sink.url))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "monitor.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, environ={})
        except ConfigError as exc:
            event("refused")
            assert exc.problems and all(p.startswith(f"{path}:") for p in exc.problems), exc
            return
        assert not hostile, f"a hostile value was accepted:\n{text}"
        event("accepted, then once")
        result = CliRunner().invoke(cli, ["once", "--json", "--config", str(path)])
        assert result.exit_code == 0, f"{text}\n{result.output}\n{result.exception!r}"
        report = json.loads(result.output.rstrip("\n").split("\n")[-1])  # not splitlines: \x85
        assert report["feeds"][0]["ok"], report
        assert "Traceback" not in result.output
