"""The daemon as a real process: scheduled polls, SIGHUP reload, SIGTERM shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    REPO,
    DirectoryChanges,
    add_keyword,
    cli,
    config_line,
    edit_config,
    edited,
    misspell_keywords,
    numbered_items,
    rss,
    seed_article_item,
    write_config,
)
from tests.servers import AlertSink, FeedServer, held_port


class DaemonProcess:
    """``feed-monitor run`` in a subprocess, with its log collected as it is written."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "-v", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for_log(self, text: str, timeout: float = 15.0, after: int = 0) -> int:
        """Index of the first log line after ``after`` containing ``text``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(after, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line with {text!r}:\n{''.join(self.lines)}")
                self._cond.wait(min(left, 0.5))


@pytest.fixture
def daemon_factory() -> Iterator[type[DaemonProcess]]:
    started: list[DaemonProcess] = []

    class Factory(DaemonProcess):
        def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
            super().__init__(config, env)
            started.append(self)

    yield Factory
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(10)


def test_daemon_polls_reloads_and_stops_cleanly(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, daemon_factory: type[DaemonProcess]
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    defaults = "{interval: 1s, min_interval: 1s, timeout: 5s, max_age: 7d, jitter: 0.1s}"
    config = write_config(tmp_path, feeds=[url], notify=[sink.url], defaults=defaults)
    daemon = daemon_factory(config)

    [first] = sink.wait_for(1)
    assert "S-400" in first["title"]
    # It keeps polling on its interval, conditionally, without alerting again.
    feeds.wait_for_hits("/f.xml", 3)
    assert feeds.hits("/f.xml")[-1].get("if-none-match")
    assert len(sink.received) == 1

    # A broken edit is refused and the daemon runs on.
    good_text = config.read_text()
    config.write_text(edited(good_text, misspell_keywords))
    mark = len(daemon.lines)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log("config reload refused", after=mark)
    daemon.wait_for_log("keywordz", after=mark)
    assert daemon.proc.poll() is None

    # A good edit takes effect without a restart: a new keyword alerts on a new story.
    config.write_text(edited(good_text, add_keyword("Patriot")))
    mark = len(daemon.lines)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log("config reloaded", after=mark)
    feeds.serve(
        "/f.xml",
        rss(
            [
                seed_article_item(),
                {
                    "title": "Patriot batteries arrive",
                    "link": "https://example.org/p",
                    "guid": "p1",
                },
            ]
        ),
    )
    alerts = sink.wait_for(2)
    assert "Patriot batteries arrive" in alerts[1]["title"]

    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    daemon.wait_for_log("stopped")
    assert not any("Traceback" in line for line in daemon.lines)


def test_daemon_sends_a_watchlists_digest_from_its_scheduled_job(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, daemon_factory: type[DaemonProcess]
) -> None:
    items = numbered_items("S-400 battery {n}", 3)
    url = feeds.serve("/f.xml", rss(items))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    edit_config(config, lambda c: c["watchlists"][0].update(every="3s"))
    daemon = daemon_factory(config)
    daemon.wait_for_log("3 alerts queued")
    [digest] = sink.wait_for(1, timeout=20)  # the outbox job alone would wait 30 s
    assert digest["title"] == "[turkey-air-defense] digest: 3 matching stories"
    assert all(f"S-400 battery {n}" in digest["message"] for n in range(3))
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert len(sink.received) == 1


def test_editing_the_config_file_under_the_daemon_takes_effect_within_seconds(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, daemon_factory: type[DaemonProcess]
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    defaults = "{interval: 1s, min_interval: 1s, timeout: 5s, max_age: 7d, jitter: 0.1s}"
    config = write_config(tmp_path, feeds=[url], notify=[sink.url], defaults=defaults)
    daemon = daemon_factory(config)
    sink.wait_for(1)
    good = config.read_text()

    # A bad edit, saved the way editors do (write elsewhere, rename over): refused, logged
    # with the same message as `check`, and the daemon runs on the old config.
    mark = len(daemon.lines)
    saved = config.with_suffix(".tmp")
    saved.write_text(edited(good, misspell_keywords))
    saved.replace(config)
    line = config_line(config, "keywordz:")
    daemon.wait_for_log("config reload refused", after=mark)
    daemon.wait_for_log(f"{config}:{line}: watchlists[0].keywordz: unknown key", after=mark)
    feeds.wait_for_hits("/f.xml", len(feeds.hits("/f.xml")) + 2)  # still polling, old config
    assert daemon.proc.poll() is None

    # A good edit: a new keyword and a new feed, picked up without a signal or restart.
    patriot = {"title": "Patriot batteries arrive", "link": "https://example.org/p", "guid": "p1"}
    second = feeds.serve("/g.xml", rss([patriot]))
    mark = len(daemon.lines)

    def add_feed_and_keyword(config: dict[str, Any]) -> None:
        add_keyword("Patriot")(config)
        config["feeds"].append({"url": second})

    config.write_text(edited(good, add_feed_and_keyword))
    # Within seconds: the edit is noticed and its new story alerted within 10 s.
    deadline = time.monotonic() + 10
    daemon.wait_for_log("config reloaded: 2 feeds", after=mark, timeout=10)
    alerts = sink.wait_for(2, timeout=max(deadline - time.monotonic(), 0.001))
    assert "Patriot batteries arrive" in alerts[1]["title"]
    assert len(alerts) == 2  # the story alerted before the edit is not alerted again
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0


def test_daemon_speaks_sd_notify_and_logs_for_journald(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, daemon_factory: type[DaemonProcess]
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(15)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000",
           "JOURNAL_STREAM": "8:1234"}  # fmt: skip
    daemon = daemon_factory(config, env)
    messages: list[str] = []

    def receive_until(field: str) -> None:
        while not any(field in message for message in messages):
            messages.append(listener.recv(4096).decode())

    receive_until("READY=1")
    ready = next(message for message in messages if "READY=1" in message)
    assert "STATUS=1 feed (0 failing); deliveries:" in ready
    watchdog_pets = 0
    while watchdog_pets < 2:  # petted every second for a 2 s watchdog
        message = listener.recv(4096).decode()
        watchdog_pets += "WATCHDOG=1" in message
        messages.append(message)
    daemon.proc.send_signal(signal.SIGTERM)
    receive_until("STOPPING=1")
    assert daemon.proc.wait(30) == 0
    listener.close()
    # journald: a syslog priority on every line, no timestamp of our own.
    running = daemon.lines[daemon.wait_for_log("feed-monitor running")]
    assert running.startswith("<6>monitor.daemon: feed-monitor running: 1 feed")


def test_json_log_lines(tmp_path: Path, feeds: FeedServer, sink: AlertSink) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    result = cli("-v", "--log-format", "json", "once", "--config", config)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    assert any(e["level"] == "info" and "1 new" in e["message"] for e in entries)


@pytest.fixture
def reserved_port() -> Iterator[Callable[[], int]]:
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(held_port())


def test_daemon_serves_healthz_and_metrics_on_localhost(
    tmp_path: Path,
    feeds: FeedServer,
    sink: AlertSink,
    daemon_factory: type[DaemonProcess],
    reserved_port: Callable[[], int],
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    # The daemon binds http.listen itself (with SO_REUSEADDR) and cannot be given port 0;
    # the port stays held here until it listens, so no one else can take it meanwhile.
    port = reserved_port()
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], extra=f"http: {{listen: 127.0.0.1:{port}}}"
    )

    def read_metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    with DirectoryChanges(tmp_path) as database_changes:
        daemon = daemon_factory(config)
        sink.wait_for(1)
        daemon.wait_for_log("serving /healthz and /metrics")
        # The delivery is recorded (a commit to the database) just after the sink sees it.
        deadline = time.monotonic() + 15
        while 'feed_monitor_deliveries{state="sent"} 1' not in (metrics := read_metrics()):
            database_changes.wait(deadline, f"the delivery recorded as sent:\n{metrics}")
    assert 'feed_monitor_polls_total{outcome="ok"} 1' in metrics
    assert "feed_monitor_stories 1" in metrics and "feed_monitor_matches_total 1" in metrics
    assert f'feed_monitor_feed_consecutive_errors{{feed="{url}"}} 0' in metrics
    assert f'feed_monitor_feed_last_success_timestamp_seconds{{feed="{url}"}} 1' in metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["feeds"] == 1 and health["failing_feeds"] == 0

    status = json.loads(cli("status", "--json", "--config", config).stdout)
    [feed] = status["feeds"]
    assert feed["url"] == url and feed["health"] == "ok" and feed["stories"] == 1
    assert status["deliveries"] == {"sent": 1, "pending": 0, "held": 0, "failed": 0}
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0


def test_a_port_in_use_is_a_clear_error_not_a_traceback(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, feeds=[url], extra=f"http: {{listen: 127.0.0.1:{port}}}")
        result = cli("run", "--config", config)
    assert result.returncode == 1
    assert f"cannot serve /healthz and /metrics on 127.0.0.1:{port} (http.listen)" in result.stderr
    assert "Traceback" not in result.stderr
