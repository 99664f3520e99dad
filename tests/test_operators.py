"""What operators run: read-only commands without secrets, unknown names as errors, health
of configured feeds only, `story` explaining (non-)alerts, delivery errors, `backup`.

Everything goes through the command line in process (click's CliRunner) against real
local servers and real SQLite files.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from monitor.cli import cli
from monitor.config import FeedConfig
from monitor.daemon import Daemon
from tests.helpers import edit_config, rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer, Mailbox, alert_sink, feed_server, held_port

SECRET_TOKEN = "sink-path-Secret-7"
SMTP_PASSWORD = "smtp-pw-Secret-8"
# What the read-only commands run without: neither the variable nor the credential.
NO_SECRETS = {"SINK_PATH": None, "CREDENTIALS_DIRECTORY": None}


def invoke(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], env=env or {})


@dataclass
class Desk:
    """A config with two targets whose secrets come from the environment and a systemd
    credential, and a database that one `once` (with the secrets) filled."""

    config: Path
    server: FeedServer
    sink: AlertSink
    secrets: dict[str, str | None]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    directory = tmp_path_factory.mktemp("desk")
    credentials = directory / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text(SMTP_PASSWORD + "\n")
    with feed_server() as server, alert_sink() as sink:
        items = [
            seed_article_item(),
            {"title": "Old S-400 story", "guid": "old", "link": "https://e.org/old",
             "description": "Turkey took delivery.", "published": time.time() - 30 * 86400},
            {"title": "Russia sells S-400 batteries", "guid": "req", "link": "https://e.org/req",
             "description": "no country named here", "published": time.time() - 60},
            {"title": "S-400 video game review", "guid": "ex", "link": "https://e.org/ex",
             "description": "a game", "published": time.time() - 60},
            {"title": "Weather report", "guid": "none", "link": "https://e.org/none",
             "description": "sunny", "published": time.time() - 60},
        ]  # fmt: skip
        feed = server.serve("/feed.xml", rss(items, title="Desk Feed"))
        config = directory / "monitor.yaml"
        config.write_text(
            "database: monitor.db\n"
            "defaults: {interval: 15m, timeout: 5s, max_age: 7d, jitter: 0.1s}\n"
            f"feeds:\n  - url: {feed}\n"
            "watchlists:\n"
            "  - name: turkey\n    keywords: [S-400, CAATSA]\n    require: [Turkey]\n"
            "    exclude: [video game]\n    notify: [desk]\n"
            "  - name: jets\n    keywords: [F-35]\n    notify: [desk]\n"
            "  - name: weather\n    keywords: [Weather]\n    notify: [desk]\n    every: 1d\n"
            "alerts: {burst_limit: 1}\n"
            "notify:\n"
            f'  - {{url: "json://127.0.0.1:{sink.port}/${{SINK_PATH}}", tags: [desk]}}\n'
            "  - url: mailto://user:${credential:smtp-password}@127.0.0.1:1?to=d@e.org"
            "&from=m@e.org\n    tags: [mail]\n",
            encoding="utf-8",
        )
        secrets: dict[str, str | None] = {
            "SINK_PATH": SECRET_TOKEN,
            "CREDENTIALS_DIRECTORY": str(credentials),
        }
        first = invoke("once", "-c", config, env=secrets)
        assert first.exit_code == 0, first.output
        sink.wait_for(1)
        yield Desk(config, server, sink, secrets)


READ_ONLY = [
    ["status"],
    ["status", "--json"],
    ["search", "S-400"],
    ["feeds", "list"],
    ["matches"],
    ["alerts"],
    ["alerts", "--json"],
    ["story", "1"],
    ["story", "1", "--json"],
    ["backtest"],
    ["feeds", "export-opml"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_need_no_notification_secrets(desk: Desk, command: list[str]) -> None:
    result = invoke(*command, "-c", desk.config, env=NO_SECRETS)
    assert result.exit_code == 0, result.output
    assert "SINK_PATH" not in result.stderr and "credential" not in result.stderr
    assert SECRET_TOKEN not in result.output and SMTP_PASSWORD not in result.output


def test_alerts_names_targets_without_their_secrets(desk: Desk) -> None:
    result = invoke("alerts", "-c", desk.config, env=NO_SECRETS)
    assert result.exit_code == 0, result.output
    # The target's label as its attempt recorded it: masked, never the outbox key alone.
    assert "json://127.0.0.1" in result.output
    assert SECRET_TOKEN not in result.output


@pytest.mark.parametrize("command", [["check"], ["test-notify"], ["once"]], ids=" ".join)
def test_commands_that_send_still_need_the_secrets(desk: Desk, command: list[str]) -> None:
    result = invoke(*command, "-c", desk.config, env=NO_SECRETS)
    assert result.exit_code == 2, result.output
    assert "environment variable SINK_PATH is not set" in result.stderr
    assert "credential smtp-password" in result.stderr


class _Eager(random.Random):
    """Start-up polls at once rather than spread over seconds."""

    def uniform(self, a: float, b: float) -> float:
        return a


class _Watched(Daemon):
    """The daemon, telling when it has scheduled its feeds and when each poll has ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scheduled = asyncio.Event()
        self.polled = asyncio.Event()

    def _schedule_feeds(self, feeds: list[FeedConfig], retimed: Set[str] = frozenset()) -> None:
        super()._schedule_feeds(feeds, retimed)
        self.scheduled.set()

    async def _poll_and_deliver(self, url: str) -> None:
        try:
            await super()._poll_and_deliver(url)
        finally:
            self.polled.set()


def test_health_counts_only_the_configured_feeds(tmp_path: Path, feeds: FeedServer) -> None:
    from monitor.config_load import load_config

    good = [feeds.serve(f"/{n}.xml", rss([], title=f"Feed {n}")) for n in ("a", "b")]
    removed = feeds.url("/gone-from-config.xml")  # not served: every poll fails
    config_path = tmp_path / "monitor.yaml"
    body = "database: monitor.db\ndefaults: {interval: 1h, jitter: 0.1s}\nfeeds:\n"
    config_path.write_text(body + f"  - url: {removed}\n")
    assert invoke("once", "-c", config_path).exit_code == 0
    config_path.write_text(body + "".join(f"  - url: {url}\n" for url in good))
    config = load_config(config_path)

    daemon = _Watched(config_path, config, rng=_Eager())

    async def observe() -> tuple[dict[str, object], str]:
        task = asyncio.ensure_future(daemon.run())
        async with asyncio.timeout(15):
            while not hasattr(daemon, "runtime") or daemon.runtime.poller.counters.ok < 2:
                polled = asyncio.ensure_future(daemon.polled.wait())
                await asyncio.wait([task, polled], return_when=asyncio.FIRST_COMPLETED)
                polled.cancel()
                assert not task.done(), "the daemon stopped before the feeds were polled"
                daemon.polled.clear()
        seen = daemon.health(), daemon.health_summary()
        daemon.stop()
        await task
        return seen

    health, summary = asyncio.run(observe())
    assert health["feeds"] == 2 and health["failing_feeds"] == 0, health
    assert summary.startswith("2 feeds (0 failing)"), summary
    status = json.loads(invoke("status", "--json", "-c", config_path).output)
    assert [feed["url"] for feed in status["feeds"]] == good


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        (["test-notify", "--tag", "nosuch"], 2, "no tag named nosuch (known: desk, mail)"),
        (
            ["matches", "--watchlist", "nope"],
            2,
            "no watchlist named nope (known: jets, turkey, weather)",
        ),
        (["backtest", "--watchlist", "nope"], 2, "no watchlist named nope"),
        (["alerts", "retry", "99"], 2, "no alert #99"),
        (["story", "9999"], 2, "no story #9999"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_unknown_names_and_ids_are_errors(
    desk: Desk, command: list[str], code: int, message: str
) -> None:
    if command[0] == "alerts":
        command = ["alerts", "retry", "-c", str(desk.config), *command[2:]]
    else:
        command = [*command, "-c", str(desk.config)]
    result = invoke(*command, env=desk.secrets)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stdout == ""  # nothing that looks like an answer


def test_counts_are_spelled_in_the_singular_for_one(desk: Desk) -> None:
    assert invoke("search", "Weather", "-c", desk.config).output.endswith("\n1 story\n")
    assert "1 feed in " in invoke("feeds", "list", "-c", desk.config).output
    assert "\n1 match\n" in invoke("matches", "-w", "jets", "-c", desk.config).output
    alerts = invoke("alerts", "-c", desk.config, env=NO_SECRETS).output
    assert ", 1 attempt" in alerts and "1 attempts" not in alerts


def _interval_config(path: Path, url: str, interval: str) -> Path:
    path.write_text(
        "database: monitor.db\n"
        "defaults: {interval: 15m, min_interval: 5m, max_interval: 12h, jitter: 0.1s}\n"
        f"feeds:\n  - url: {url}\n    name: Ministry\n    interval: {interval}\n",
        encoding="utf-8",
    )
    return path


def _status_interval(config: Path) -> float:
    [feed] = json.loads(invoke("status", "--json", "-c", config).output)["feeds"]
    return float(feed["interval"])


def test_an_interval_edit_takes_effect_on_a_feed_that_answers_304(
    tmp_path: Path, feeds: FeedServer
) -> None:
    url = feeds.serve("/ministry.xml", rss([], title="Ministry"))
    config = _interval_config(tmp_path / "monitor.yaml", url, "1h")
    assert invoke("once", "-c", config).exit_code == 0
    assert _status_interval(config) == 3600
    _interval_config(config, url, "2h")
    assert invoke("once", "-c", config).exit_code == 0
    assert feeds.requests[-1][1].get("if-none-match")  # the second poll was answered 304
    assert _status_interval(config) == 7200


def test_check_says_when_an_interval_is_outside_min_and_max(tmp_path: Path) -> None:
    config = _interval_config(tmp_path / "monitor.yaml", "https://example.org/feed", "1m")
    result = invoke("check", "-c", config)
    assert result.exit_code == 0, result.output
    assert (
        f"{config}:6: feeds[0].interval: feed 'Ministry': interval 1m is below "
        "defaults.min_interval 5m; raised to 5m"
    ) in result.stderr
    _interval_config(config, "https://example.org/feed", "1d")
    assert (
        "interval 1d is above defaults.max_interval 12h; lowered to 12h"
        in invoke("check", "-c", config).stderr
    )
    _interval_config(config, "https://example.org/feed", "30m")
    assert "interval" not in invoke("check", "-c", config).stderr


def test_check_reports_a_duplicate_name_with_every_other_problem(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "feeds:\n"
        "  - url: https://example.org/feed\n"
        "  - url: https://example.org/feed\n"
        "    intervall: 5m\n"
        "watchlists:\n"
        "  - name: desk\n    keywords: [S-400]\n    notify: [nosuch]\n"
        "  - name: desk\n    keywords: []\n",
        encoding="utf-8",
    )
    result = invoke("check", "-c", config)
    assert result.exit_code == 2, result.output
    problems = result.stderr.splitlines()[1:]
    # In the order of the file's lines, the order someone fixes them in.
    assert problems == [
        f"  {config}:3: feeds[1].url: this feed is listed twice",
        f"  {config}:4: feeds[1].intervall: unknown key; did you mean 'interval'?",
        f"  {config}:8: watchlists[0].notify: unknown tag 'nosuch': no notify target has it "
        "(known tags: none are defined)",
        f"  {config}:9: watchlists[1].name: another watchlist has this name",
        f"  {config}:10: watchlists[1].keywords: List should have at least 1 item after "
        "validation, not 0",
    ]


def _story_ids(config: Path) -> dict[str, int]:
    from monitor.config_load import load_config
    from monitor.store import Store

    with Store.open(load_config(config, need_targets=False).database) as store:
        return {story.entry.title: story.id for story in store.stories_since(0)}


def test_story_explains_for_each_watchlist_why_it_did_or_did_not_alert(desk: Desk) -> None:
    ids = _story_ids(desk.config)

    def story(title: str) -> str:
        result = invoke("story", str(ids[title]), "-c", desk.config, env=NO_SECRETS)
        assert result.exit_code == 0, result.output
        return result.output

    seed = story(seed_article_item()["title"])
    assert seed.startswith(f"#{ids[seed_article_item()['title']]}  Russia announced the sale")
    assert "    https://bulgarianmilitary.com/2020/08/s400-turkey/\n" in seed
    assert "; first seen " in seed and " in Desk Feed\n" in seed
    assert "Vladimir Putin" in seed  # an excerpt of the text
    assert "seen in 1 place:\n" in seed
    assert "  [turkey] matched S-400 (as S-400" in seed
    assert "  [jets] matched F-35 (as F-35" in seed
    assert "  [weather] no keyword in the story\n" in seed
    # Two alerts for one target from one poll, over burst_limit 1: folded into a summary.
    assert "alert: json://127.0.0.1" in seed
    assert "sent in a burst summary (too many alerts from one poll)" in seed

    old = story("Old S-400 story")
    assert "[turkey] matched S-400 (as S-400)" in old
    assert "alert: not alerted: published " in old and "more than max_age (7d)" in old

    required = story("Russia sells S-400 batteries")
    assert "[turkey] has S-400 (as S-400) but required Turkey not in the story" in required
    excluded = story("S-400 video game review")
    assert "excluded by video game (as video game)" in excluded
    held = story("Weather report")
    assert "[weather] matched Weather (as Weather)" in held
    assert "alert: json://127.0.0.1" in held and ": held for the weather digest" in held

    as_json = json.loads(
        invoke("story", str(ids["S-400 video game review"]), "--json", "-c", desk.config).output
    )
    [turkey] = [w for w in as_json["watchlists"] if w["watchlist"] == "turkey"]
    assert turkey["verdict"]["missing"] == ["Turkey"]
    assert turkey["verdict"]["excluded_by"] == [["video game", "video game"]]
    assert as_json["title"] == "S-400 video game review" and as_json["link"] == "https://e.org/ex"


def test_matches_says_why_a_match_was_not_alerted(desk: Desk) -> None:
    out = invoke("matches", "-w", "turkey", "--since", "60d", "-c", desk.config).output
    assert "not alerted" in out
    assert "alert: not alerted: published " in out and "more than max_age (7d)" in out


def test_delivery_errors_say_what_happened(
    tmp_path: Path, feeds: FeedServer, smtp: tuple[Mailbox, int]
) -> None:
    _, port = smtp
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    no_auth = f"mailto://user:{SMTP_PASSWORD}@127.0.0.1:{port}?from=m@e.org&to=d@e.org"
    with held_port() as closed:  # bound, not listening: connections are refused
        refused = f"mailto://127.0.0.1:{closed}?from=m@e.org&to=d@e.org"
        config = write_config(tmp_path, feeds=[url], notify=[no_auth, refused])
        assert invoke("once", "-c", config).exit_code == 0
    shown = invoke("alerts", "-c", config)
    assert shown.exit_code == 0, shown.output
    assert "SMTP AUTH extension not supported by server" in shown.output
    assert "Connection refused" in shown.output
    assert SMTP_PASSWORD not in shown.output
    trail = json.loads(invoke("alerts", "--json", "-c", config).output)
    details = [a["detail"] for d in trail[0]["deliveries"] for a in d["attempts_log"]]
    assert any("SMTP AUTH extension not supported" in detail for detail in details), details


def test_email_text_part_has_the_link_and_addresses_stay_whole(
    tmp_path: Path, feeds: FeedServer, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    long_title = "S-400 " + "deliveries to Ankara continue " * 10 + "says desk@example.org"
    item = {"title": long_title, "link": "https://e.org/s400-story", "guid": "g1",
            "description": "Write to press@ministry.example for S-400 details, @everyone.",
            "published": time.time() - 60}  # fmt: skip
    url = feeds.serve("/f.xml", rss([item]))
    mailto = f"mailto://127.0.0.1:{port}?from=m@e.org&to=d@e.org"
    config = write_config(tmp_path, feeds=[url], notify=[mailto])
    assert invoke("once", "-c", config).exit_code == 0
    with mailbox.arrived:
        assert mailbox.arrived.wait_for(lambda: mailbox.messages, timeout=20)
    [message] = mailbox.messages
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    plain = text.get_content()
    assert "https://e.org/s400-story" in plain
    assert "press@ministry.example" in plain  # no zero-width space inside an address
    assert "@\u200beveryone" in plain  # a mass mention is still broken
    subject = str(message["Subject"])
    assert len(subject) <= 200 and subject.endswith("…"), subject
    assert subject[:-1].split()[-1] in long_title.split(), subject  # cut between words


def test_backup_copies_a_live_wal_database_consistently(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url])
    assert invoke("once", "-c", config).exit_code == 0
    database = tmp_path / "monitor.db"
    writer = sqlite3.connect(database, isolation_level=None)  # the daemon, say
    writer.execute("INSERT INTO feeds (url, added_at) VALUES ('https://committed.example', 0)")
    assert (tmp_path / "monitor.db-wal").stat().st_size > 0  # committed, still in the WAL only
    writer.execute("BEGIN IMMEDIATE")  # and in the middle of its next write
    writer.execute("INSERT INTO feeds (url, added_at) VALUES ('https://uncommitted.example', 0)")
    try:
        copy = tmp_path / "backups" / "monitor-copy.db"
        copy.parent.mkdir()
        result = invoke("backup", copy, "-c", config)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"backed up {database} to {copy} (1 story, ")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with sqlite3.connect(copy) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert check.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert check.execute("SELECT count(*) FROM stories").fetchone() == (1,)
        urls = [row[0] for row in check.execute("SELECT url FROM feeds")]
    assert sorted(urls) == sorted([url, "https://committed.example"])
    assert not list(copy.parent.glob(".*partial"))
    again = invoke("backup", copy, "-c", config)
    assert again.exit_code == 2 and "exists (add --force to replace it)" in again.stderr
    assert invoke("backup", copy, "--force", "-c", config).exit_code == 0
    # The copy is a working database: point a config at it.
    restored = tmp_path / "restored.yaml"
    restored.write_text(config.read_text())
    edit_config(restored, lambda c: c.update(database="backups/monitor-copy.db"))
    [feed] = json.loads(invoke("status", "--json", "-c", restored).output)["feeds"]
    assert feed["url"] == url and feed["stories"] == 1


REPO = Path(__file__).parent.parent


@pytest.mark.parametrize("unit", sorted((REPO / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_unit_documentation_points_at_something_the_install_creates(unit: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for line in unit.read_text(encoding="utf-8").splitlines():
        if not line.startswith("Documentation="):
            continue
        for target in line.removeprefix("Documentation=").split():
            if target.startswith("file://"):
                path = target.removeprefix("file://")
                # The README's install steps put the file there.
                assert f"install -D -m 0644 README.md {path}" in readme, target
            else:
                assert target.startswith(("https://", "man:")), target


def test_readme_command_table_lists_every_command() -> None:
    import click

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("| `feed-monitor ")]
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        names = [name]
        if isinstance(command, click.Group):
            names += [f"{name} {sub}" for sub in command.commands]
        for full in names:
            words = full.split()
            listed = any(
                f"`feed-monitor {full}" in row
                or (len(words) == 2 and f"`feed-monitor {words[0]}" in row and words[1] in row)
                for row in table
            )
            assert listed, f"`feed-monitor {full}` is not in the README's command table"


def test_feed_edits_need_no_notification_secrets(desk: Desk, tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(desk.config.read_text())
    edit_config(config, lambda c: c.update(database="x.db"))
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline type="rss" text="Other" xmlUrl="https://example.org/other.xml"/></body></opml>'
    )
    imported = invoke("feeds", "import-opml", opml, "-c", config, env=NO_SECRETS)
    assert imported.exit_code == 0, imported.output
    assert "https://example.org/other.xml" in config.read_text()
    other = "https://example.org/other.xml"
    removed = invoke("feeds", "remove", other, "-c", config, env=NO_SECRETS)
    assert removed.exit_code == 0, removed.output
    assert other not in config.read_text()


@pytest.mark.parametrize(
    "command",
    [["status"], ["search", "S-400"], ["matches"], ["story", "1"], ["events"], ["alerts"],
     ["alerts", "retry"], ["backtest"]],
)  # fmt: skip
def test_reading_commands_refuse_a_missing_database_and_create_none(
    tmp_path: Path, command: list[str]
) -> None:
    config = write_config(tmp_path, feeds=["http://127.0.0.1:9/feed.xml"])
    result = invoke(*command, "--config", config)
    assert result.exit_code == 1, result.output
    assert f"no database at {tmp_path / 'monitor.db'}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "monitor.db").exists()


def test_feeds_add_needs_none_of_the_notify_secrets(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/new.xml", rss([], title="New Desk"))
    config = write_config(tmp_path, feeds=[], notify=["json://127.0.0.1:9/${UNSET_HOOK_TOKEN}"])
    result = invoke("feeds", "add", url, "--config", config, env={"UNSET_HOOK_TOKEN": None})
    assert result.exit_code == 0, result.output
    assert f"added {url}" in result.output and url in config.read_text()


def test_a_feeds_own_interval_is_kept_and_a_reload_retimes_it_at_once(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """An ``interval`` set on a feed is what the user asked for: a reload that changes it
    takes effect at once (not after the poll decided under the old one), and adaptive
    scheduling does not stretch it to the feed's publishing rhythm (hourly here)."""
    from monitor.config_load import load_config

    hourly = [{"title": f"Item {n}", "link": f"https://e.org/{n}", "guid": f"g{n}",
               "published": time.time() - 3600 * n} for n in range(5)]  # fmt: skip
    url = feeds.serve("/hourly.xml", rss(hourly))
    config_path = tmp_path / "monitor.yaml"
    head = "database: monitor.db\ndefaults: {interval: 1h, min_interval: 1s, jitter: 0.1s}\n"
    config_path.write_text(head + f"feeds:\n  - url: {url}\n")

    daemon = _Watched(config_path, load_config(config_path), rng=_Eager())

    def seconds_to_next_poll() -> float:
        job = daemon.scheduler.get_job(url)
        return float(job.next_run_time.timestamp() - time.time())

    async def observe() -> tuple[float, float, float]:
        task = asyncio.ensure_future(daemon.run())
        async with asyncio.timeout(20):
            await daemon.polled.wait()  # the first poll, at start
            daemon.polled.clear()
            adapted = seconds_to_next_poll()  # adaptive: half the hourly rhythm
            config_path.write_text(head + f"feeds:\n  - url: {url}\n    interval: 2s\n")
            daemon.reload()
            retimed = seconds_to_next_poll()
            await daemon.polled.wait()  # the poll the new interval brought
            kept = seconds_to_next_poll()
        daemon.stop()
        await task
        return adapted, retimed, kept

    adapted, retimed, kept = asyncio.run(observe())
    assert 1700 < adapted <= 1800.2, adapted
    assert retimed <= 2.2, retimed
    assert kept <= 2.2, kept  # not stretched to 30 minutes by the hourly rhythm


def test_a_restart_applies_a_feeds_new_interval(tmp_path: Path, feeds: FeedServer) -> None:
    """Polled under `interval: 1h`, then the file says 2s and the daemon starts: the next
    poll is within 2 s, not an hour after the last."""
    from monitor.config_load import load_config

    url = feeds.serve("/f.xml", rss([{"title": "x", "link": "https://e.org/x", "guid": "x"}]))
    config_path = tmp_path / "monitor.yaml"
    head = "database: monitor.db\ndefaults: {min_interval: 1s, jitter: 0.1s}\nfeeds:\n"
    config_path.write_text(head + f"  - url: {url}\n    interval: 1h\n")
    assert invoke("once", "-c", config_path).exit_code == 0
    config_path.write_text(head + f"  - url: {url}\n    interval: 2s\n")

    daemon = _Watched(config_path, load_config(config_path))

    async def observe() -> None:
        task = asyncio.ensure_future(daemon.run())
        async with asyncio.timeout(15):
            await daemon.polled.wait()
        daemon.stop()
        await task

    asyncio.run(observe())
    assert len(feeds.hits("/f.xml")) == 2  # the once, then the daemon within the new 2 s


def test_a_reload_retiming_many_feeds_spreads_their_polls(
    tmp_path: Path, feeds: FeedServer
) -> None:
    from monitor.config_load import load_config

    urls = [feeds.serve(f"/{n}.xml", rss([], title=f"Feed {n}")) for n in range(20)]
    config_path = tmp_path / "monitor.yaml"
    head = "database: monitor.db\ndefaults: {min_interval: 1s, jitter: 0.1s}\nfeeds:\n"

    def write(interval: str) -> None:
        config_path.write_text(
            head + "".join(f"  - url: {url}\n    interval: {interval}\n" for url in urls)
        )

    write("1h")
    assert invoke("once", "-c", config_path).exit_code == 0  # next polls: an hour away

    daemon = _Watched(config_path, load_config(config_path), rng=random.Random(7))

    async def observe() -> list[float]:
        task = asyncio.ensure_future(daemon.run())
        async with asyncio.timeout(15):
            await daemon.scheduled.wait()  # the feeds of the start are scheduled
        write("2m")
        daemon.reload()
        starts = [daemon.scheduler.get_job(url).next_run_time.timestamp() for url in urls]
        daemon.stop()
        await task
        return [start - time.time() for start in starts]

    delays = asyncio.run(observe())
    assert all(delay <= 120.5 for delay in delays), delays  # within the new interval
    assert max(delays) - min(delays) > 30, delays  # spread over it, not one burst


def test_a_poll_cut_short_by_the_shutdown_deadline_is_no_error(
    tmp_path: Path, feeds: FeedServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import logging

    from monitor import daemon as daemon_module
    from monitor.config_load import load_config

    monkeypatch.setattr(daemon_module, "SHUTDOWN_DEADLINE", 0.2)
    url = feeds.serve("/f.xml", rss([]))
    config_path = write_config(tmp_path, feeds=[url])

    class Stuck(daemon_module.Daemon):
        started = asyncio.Event()

        async def _poll_and_deliver(self, url: str) -> None:
            self.started.set()
            await asyncio.Event().wait()  # a poll that would outlive any deadline

    daemon = Stuck(config_path, load_config(config_path), rng=_Eager())

    async def observe() -> None:
        task = asyncio.ensure_future(daemon.run())
        async with asyncio.timeout(10):
            await daemon.started.wait()
            daemon.stop()
            await task

    with caplog.at_level(logging.INFO):
        asyncio.run(observe())
    assert "stopped" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text and "CancelledError" not in caplog.text


def test_out_of_range_numbers_and_bad_destinations_are_usage_errors(
    tmp_path: Path, feeds: FeedServer
) -> None:
    # Found by a sweep of every command with hostile arguments: each of these was a
    # traceback (OverflowError, OSError) or quietly did something else than asked.
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url])
    assert invoke("once", "-c", config).exit_code == 0
    huge = str(2**70)
    bad = [
        ("story", huge),
        ("search", "S-400", "--limit", huge),
        ("search", "S-400", "--limit", "0"),
        ("alerts", "--limit", huge),
        ("alerts", "--limit", "-1"),
        ("alerts", "retry", huge),
        ("backup", str(tmp_path / ("x" * 300))),  # a name too long for the file system
        ("backup", str(tmp_path / "monitor.yaml" / "copy.db")),  # a file as a directory
        ("backup", "--force", str(tmp_path / "monitor.db-wal")),  # the database's own WAL
        ("backup", "--force", "/dev/null"),  # not a regular file: never replaced
    ]
    for args in bad:
        result = invoke(*args, "-c", config)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output, args
    assert Path("/dev/null").is_char_device()


def test_once_refuses_a_timeout_under_a_second(tmp_path: Path) -> None:
    config = write_config(tmp_path, feeds=[])
    result = invoke("once", "--timeout", "0.0000001s", "-c", config)
    assert result.exit_code == 2
    assert "--timeout" in result.output and "must be at least 1s" in result.output


@pytest.mark.parametrize("kind", ["directory", "not sqlite", "parent is a file", "device"])
def test_check_refuses_a_database_path_no_command_could_use(tmp_path: Path, kind: str) -> None:
    """`check` said OK, and then every command that opens the database failed."""
    database = tmp_path / "monitor.db"
    if kind == "directory":
        database.mkdir()
    elif kind == "not sqlite":
        database.write_text("these are my notes\n")
    elif kind == "parent is a file":
        (tmp_path / "data").write_text("")
        database = tmp_path / "data" / "monitor.db"
    else:
        database = Path("/dev/null")
    config = tmp_path / "monitor.yaml"
    config.write_text(f"feeds: []\ndatabase: {database}\n")
    result = invoke("check", "-c", config)
    assert result.exit_code == 2, result.output
    assert f"{config}:2: database: " in result.output
    assert "Traceback" not in result.output


def test_check_accepts_a_new_or_existing_database(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("feeds: []\ndatabase: data/new/monitor.db\n")
    assert invoke("check", "-c", config).exit_code == 0
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    config.write_text(f"feeds: []\ndatabase: {empty}\n")
    assert invoke("check", "-c", config).exit_code == 0
    sqlite3.connect(tmp_path / "real.db").execute("CREATE TABLE t (x)").connection.close()
    config.write_text(f"feeds: []\ndatabase: {tmp_path / 'real.db'}\n")
    assert invoke("check", "-c", config).exit_code == 0


def test_feeds_add_to_a_feed_list_that_is_no_list_names_the_problem_once(
    tmp_path: Path,
) -> None:
    """It listed one error for each character of `feeds: abc...`, at the wrong lines."""
    config = tmp_path / "monitor.yaml"
    config.write_text("database: m.db\nfeeds: https://example.org/feed.xml\n")
    result = invoke("feeds", "add", "https://example.org/other.xml", "--no-check", "-c", config)
    assert result.exit_code == 2, result.output
    assert f"{config}:2: feeds: must be a list" in result.output
    assert result.output.count("\n") <= 3
    assert config.read_text() == "database: m.db\nfeeds: https://example.org/feed.xml\n"


def test_check_warns_of_a_config_with_no_feeds(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("database: m.db\n")
    result = invoke("check", "-c", config)
    assert result.exit_code == 0
    assert "no feeds to poll" in result.output


def test_check_warns_of_an_empty_secret_and_names_the_console_when_no_target_is_set(
    tmp_path: Path,
) -> None:
    """`TOKEN=` left unfinished in an environment file sent `desk:` as the password."""
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "database: m.db\nfeeds:\n  - url: https://e.org/f?key=${FEED_KEY}\n", encoding="utf-8"
    )
    result = invoke("check", "-c", config, env={"FEED_KEY": ""})
    assert result.exit_code == 0, result.output
    assert "${FEED_KEY} is empty" in result.stderr
    assert "notify:     none configured: alerts are printed on the console" in result.stdout
    filled = invoke("check", "-c", config, env={"FEED_KEY": "Feed-Key-77"})
    assert filled.exit_code == 0 and "is empty" not in filled.stderr


def test_commands_end_cleanly_through_the_real_entry_point(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """``python -m monitor`` as cron or systemd runs it, output into pipes: a ``once``
    that parses (its parser workers started and stopped) prints its summary and nothing
    on stderr (no helper process complaining of leaked semaphores: a run's exit
    handlers run); exit codes are kept; and a reader that closes the pipe first
    (``| head``) makes no traceback."""
    import os
    import subprocess
    import sys

    urls = [feeds.serve(f"/{n}.xml", rss([{"title": f"Story {n}", "guid": f"g{n}"}]))
            for n in range(3)]  # fmt: skip
    config = write_config(tmp_path, feeds=urls)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "FEED_MONITOR_CONFIG")
    }

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "monitor", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    once = run("once", "--config", config)
    assert once.returncode == 0 and once.stderr == ""
    assert once.stdout.startswith("polled 3 feeds (3 ok, 0 failed, 0 unchanged), 3 new stories")
    listed = run("feeds", "list", "--config", config)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 4
    missing = run("feeds", "list", "--config", tmp_path / "missing.yaml")
    assert missing.returncode == 2 and missing.stderr.startswith("error:")

    command = [sys.executable, "-m", "monitor", "feeds", "list", "--config", str(config)]
    early = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert early.stdout is not None and early.stderr is not None
    early.stdout.close()  # before it has written anything: its output meets a closed pipe
    assert early.wait(timeout=60) == 1  # click's status for output that could not be written
    assert early.stderr.read() == b""
    early.stderr.close()
