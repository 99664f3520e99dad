"""Nothing secret or hostile leaves the process (issue 11, items 15 and 16).

Feeds with credentials in their URLs (``user:pass@``, ``?token=``, ``?api_key=``, a
``${VAR}`` from the environment, a redirect to a tokenized URL) and a hostile feed
(escape sequences, bidi overrides and a NUL in its titles) are served from a local server
and polled for real; then every command that prints is run in process, and its output,
logs included, is searched for the secrets and for raw control characters.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli import cli, configure_logging
from monitor.config_load import load_config
from monitor.models import PollCounters
from monitor.store import Store
from monitor.web import render_metrics
from tests.helpers import cli as run_cli
from tests.helpers import numbered_items, rss, write_config
from tests.servers import AlertSink, FeedServer, feed_server

HOSTILE_TITLE = "S-400 \x1b]0;owned\x07 deal \x1b[2J\u202eevil\u202c Before\x00After"
HOSTILE_FEED_TITLE = "Feed\x1b[31mRed"
ENV_SECRET = "env-Secret-4"
SECRETS = ["alice", "pw-Secret-3", "tok-Secret-1", "key-Secret-2", ENV_SECRET, "tok-Secret-5"]
# What a terminal acts on; a printed line may end in "\n" and nothing else.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass
class Polled:
    config: Path
    server: FeedServer
    first_run: Result


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"FEED_SECRET": ENV_SECRET})


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Polled]:
    directory = tmp_path_factory.mktemp("secrets")
    with feed_server() as server:
        item = {"title": HOSTILE_TITLE, "link": "https://e.org/1", "guid": "g1",
                "description": "Body\x00Tail", "published": time.time() - 60}  # fmt: skip
        base = server.url("")
        server.serve("/a.xml?token=tok-Secret-1", rss([item], title=HOSTILE_FEED_TITLE))
        server.serve(f"/c.xml?t={ENV_SECRET}", rss([], title="From env"))
        server.serve("/d2.xml?token=tok-Secret-5", rss([], title="Moved"))
        server.serve("/d.xml", b"", status=301, etag=False,
                     headers={"Location": base + "/d2.xml?token=tok-Secret-5"})  # fmt: skip
        feeds = [
            base.replace("http://", "http://alice:pw-Secret-3@") + "/a.xml?token=tok-Secret-1",
            base + "/b.xml?api_key=key-Secret-2",  # not served: a 404, logged and in status
            base + "/c.xml?t=${FEED_SECRET}",
            base + "/d.xml",
        ]
        config = directory / "monitor.yaml"
        config.write_text(
            "database: monitor.db\ndefaults: {interval: 15m, timeout: 5s, jitter: 0.1s}\n"
            "feeds:\n" + "".join(f'  - url: "{url}"\n' for url in feeds)
            + "watchlists:\n  - name: w\n    keywords: [S-400]\n",
            encoding="utf-8",
        )  # fmt: skip
        first = _invoke("-v", "once", "--config", str(config))
        assert first.exit_code == 0, first.output
        yield Polled(config, server, first)


def _json_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _assert_clean(result: Result, *, terminal: bool = True) -> str:
    out = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    for secret in SECRETS:
        assert secret not in out, f"{secret!r} shown in:\n{out}"
    if terminal:
        assert not RAW_CONTROL.search(out), f"raw control character in:\n{out!r}"
    return out


def test_the_feeds_were_really_polled(polled: Polled) -> None:
    paths = [path for path, _ in polled.server.requests]
    assert "/a.xml?token=tok-Secret-1" in paths and f"/c.xml?t={ENV_SECRET}" in paths
    assert "/d2.xml?token=tok-Secret-5" in paths  # followed the redirect
    assert polled.server.hits("/a.xml?token=tok-Secret-1")[0]["authorization"].startswith("Basic")


def test_once_and_its_log_lines_mask_credentials(polled: Polled) -> None:
    out = _assert_clean(polled.first_run)
    # The failing feed's warning is there, masked (every logger passes the filter).
    assert "b.xml?api_key=****" in polled.first_run.stderr
    assert "1 new story" in out


def test_once_json_masks_credentials(polled: Polled) -> None:
    result = _invoke("once", "--json", "--config", str(polled.config))
    _assert_clean(result)
    urls = [feed["url"] for feed in json.loads(result.stdout)["feeds"]]
    assert any("http://****@127.0.0.1" in url and "token=****" in url for url in urls)
    assert any(url.endswith("/c.xml?t=****") for url in urls)


@pytest.mark.parametrize(
    "command",
    [["check"], ["check", "--json"], ["feeds", "list"], ["feeds", "list", "--json"],
     ["status"], ["status", "--json"]],
)  # fmt: skip
def test_config_and_status_views_mask_credentials(polled: Polled, command: list[str]) -> None:
    result = _invoke(*command, "--config", str(polled.config))
    out = _assert_clean(result)
    assert result.exit_code == 0, out
    if command[0] != "status":
        assert "token=****" in out and "api_key=****" in out and "t=****" in out


def test_export_masks_credentials_unless_asked_for_them(polled: Polled) -> None:
    exported = _invoke("feeds", "export-opml", "--config", str(polled.config))
    assert exported.exit_code == 0, exported.output
    assert ENV_SECRET not in exported.stdout and "/c.xml?t=****" in exported.stdout
    assert "pw-Secret-3" not in exported.stdout and "****@" in exported.stdout
    assert "--with-secrets" in exported.stderr  # says what it left out, apart from the file
    whole = _invoke("feeds", "export-opml", "--with-secrets", "--config", str(polled.config))
    assert whole.exit_code == 0, whole.output
    assert "alice:pw-Secret-3@" in whole.stdout and ENV_SECRET in whole.stdout
    assert "****" not in whole.stdout


def test_status_shows_the_moved_feed_and_the_error_masked(polled: Polled) -> None:
    text = _assert_clean(_invoke("status", "--config", str(polled.config)))
    assert "moved permanently to" in text and "d2.xml?token=****" in text
    report = json.loads(_invoke("status", "--json", "--config", str(polled.config)).stdout)
    moved = [feed for feed in report["feeds"] if feed["effective_url"]]
    assert [feed["effective_url"].rpartition("/")[2] for feed in moved] == ["d2.xml?token=****"]


@pytest.mark.parametrize(
    "command",
    [["status"], ["alerts"], ["matches"], ["search", "S-400"], ["backtest"], ["story", "1"]],
)
def test_feed_text_reaches_the_terminal_neutralized(polled: Polled, command: list[str]) -> None:
    result = _invoke(*command, "--config", str(polled.config))
    out = _assert_clean(result)
    assert result.exit_code == 0, out
    # The text is shown, only its control characters are not.
    assert "]0;owned" in out or "[31mRed" in out


@pytest.mark.parametrize(
    "command",
    [["matches", "--json"], ["story", "1", "--json"], ["alerts", "--json"],
     ["search", "S-400", "--json"], ["backtest", "--json"], ["status", "--json"]],
)  # fmt: skip
def test_json_keeps_feed_text_exact_but_escaped(polled: Polled, command: list[str]) -> None:
    result = _invoke(*command, "--config", str(polled.config))
    out = _assert_clean(result)
    assert result.exit_code == 0, out
    text = json.dumps(json.loads(out if out.startswith(("[", "{\n")) else out.splitlines()[0]))
    assert "\\u001b]0;owned" in text or "\\u001b[31mRed" in text


def test_a_nul_in_feed_text_does_not_cut_it_short(polled: Polled) -> None:
    [hit] = _json_lines(_invoke("search", "S-400", "--json", "--config", str(polled.config)))
    assert str(hit["title"]).endswith("Before\ufffdAfter")
    assert "After" in str(hit["snippet"])  # SQLite's snippet() ended the text at the NUL
    [tail] = _json_lines(_invoke("search", "Tail", "--json", "--config", str(polled.config)))
    assert tail["story_id"] == hit["story_id"]


def test_metrics_labels_mask_credentials(polled: Polled) -> None:
    config = load_config(polled.config, {"FEED_SECRET": ENV_SECRET}, check_notify=False)
    with Store.open(config.database) as store:
        text = render_metrics(store, PollCounters(), [feed.url for feed in config.feeds])
    for secret in SECRETS:
        assert secret not in text
    labels = re.findall(r'feed_monitor_feed_consecutive_errors\{feed="([^"]*)"\}', text)
    assert len(labels) == 4 and len(set(labels)) == 4
    assert any(label.endswith("/a.xml?token=****") and "****@" in label for label in labels)


def test_two_feeds_that_mask_alike_keep_distinct_metric_labels(tmp_path: Path) -> None:
    urls = ["http://h.example/f?token=one-one", "http://h.example/f?token=two-two"]
    with Store.open(tmp_path / "m.db") as store:
        store.sync_feeds([(url, None) for url in urls], time.time())
        text = render_metrics(store, PollCounters(), urls)
    labels = re.findall(r'feed_monitor_feed_consecutive_errors\{feed="([^"]*)"\}', text)
    assert sorted(labels) == ["http://h.example/f?token=****", "http://h.example/f?token=**** #2"]


def test_the_log_filter_masks_every_logger_and_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("feeds:\n  - url: https://h.example/${FEED_TOKEN}\n", encoding="utf-8")
    load_config(config, {"FEED_TOKEN": "known-Secret-7"})  # a value from the environment
    for log_format in ("text", "json"):
        configure_logging(0, log_format)  # type: ignore[arg-type]
        some_library = logging.getLogger("some.library")
        some_library.warning("GET %s: token known-Secret-7", "https://u:p-Secret@h/x?sig=s-Secret")
        try:
            raise RuntimeError("failed for https://h/x?access_token=at-Secret")
        except RuntimeError:
            some_library.exception("request failed \x1b[2J")
        err = capsys.readouterr().err
        for secret in ("known-Secret-7", "p-Secret", "s-Secret", "at-Secret"):
            assert secret not in err, err
        assert "\x1b" not in err
        assert "sig=****" in err and "access_token=****" in err and "RuntimeError" in err
    configure_logging(0)


def test_a_notify_url_from_the_environment_is_masked_in_debug_logs_and_the_database(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    # The whole URL from ${VAR}: its token sits in the path, which Apprise itself does not
    # treat as secret for json://, and urllib3 logs the path it requests at -vv.
    token = "Hk7tQ2zLw9Xv"
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 test {n}", 1)))
    config = write_config(tmp_path, feeds=[url], notify=["${HOOK_URL}"])
    hook = f"json://127.0.0.1:{sink.port}/hook/{token}"
    result = run_cli("-vv", "once", "--config", config, env={"HOOK_URL": hook})
    assert result.returncode == 0, result.stderr
    assert len(sink.wait_for(1)) == 1 and sink.received[0]["_path"] == f"/hook/{token}"
    assert "POST /hook/" in result.stderr  # the debug lines are there, masked
    assert token not in result.stdout + result.stderr
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        stored = " ".join(str(row) for row in db.execute("SELECT target FROM attempts"))
    assert stored and token not in stored


def test_a_notify_url_written_in_the_file_is_masked_in_debug_logs(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    # Written literally: nothing came from ${VAR}, yet its path token and the API key that
    # Apprise turns into a query parameter are secrets, and urllib3 logs both at -vv.
    token, key = "Hk7tQ2zLw9Xv", "QueryKey66"
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 test {n}", 1)))
    hook = f"json://127.0.0.1:{sink.port}/hook/{token}?-apikey={key}"
    config = write_config(tmp_path, feeds=[url], notify=[hook])
    result = run_cli("-vv", "once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert len(sink.wait_for(1)) == 1 and sink.received[0]["_path"] == f"/hook/{token}?apikey={key}"
    assert "POST /hook/" in result.stderr  # the debug lines are there, masked
    assert token not in result.stdout + result.stderr
    assert key not in result.stdout + result.stderr
