"""Delivery under faults, with real parts: a target that stalls mid-response, a receiver
slower than Apprise's default timeouts, two processes on one database, a database that
fills up between a send and its record, and backlogs larger than one batch.

Each test here failed on the version before delivery became its own component (issue 11,
items 1, 4, 5, 6, 7 and 13).
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from monitor.alert import Notifier
from monitor.config_load import load_config
from monitor.delivery import Deliverer
from monitor.errors import StoreError
from monitor.store import Store
from tests.helpers import REPO, cli, cli_process, numbered_items, rss, write_config
from tests.servers import AlertSink, FeedServer, QuietHandler, serving
from tests.test_daemon import DaemonProcess, daemon_factory  # noqa: F401 (fixture)


@dataclass
class SlowReceiver:
    """A json:// receiver that takes its time: it answers after ``delay`` seconds, or,
    with ``stall`` set, sends the status line and then one byte every half second until
    the test ends (no read timeout ever fires)."""

    delay: float = 0.0
    stall: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} posts, got {len(self.received)}"
                self.arrived.wait(left)
            return list(self.received)


@contextmanager
def slow_receiver(delay: float = 0.0, stall: bool = False) -> Iterator[SlowReceiver]:
    state = SlowReceiver(delay=delay, stall=stall)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            with state.arrived:
                state.received.append(payload)
                state.arrived.notify_all()
            if state.stall:
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                while not state.released.wait(0.5):  # the fault: a trickle, forever
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return
                return
            state.released.wait(state.delay)  # the fault: a slow answer
            self.reply(200)

    with serving(Handler) as port:
        state.port = port
        try:
            yield state
        finally:
            state.released.set()


def story_titles(received: list[dict[str, Any]]) -> Counter[str]:
    return Counter(post["title"] for post in received)


def test_a_stalled_target_delays_only_its_own_deliveries_and_shutdown_is_bounded(
    tmp_path: Path,
    feeds: FeedServer,
    sink: AlertSink,
    daemon_factory: type[DaemonProcess],  # noqa: F811
) -> None:
    items = numbered_items("S-400 battery {n} moved", 3)
    url = feeds.serve("/f.xml", rss(items[:1]))
    defaults = "{interval: 1s, min_interval: 1s, timeout: 5s, max_age: 7d, jitter: 0.1s}"
    with slow_receiver(stall=True) as stalled:
        config = write_config(
            tmp_path, feeds=[url], notify=[stalled.url, sink.url], defaults=defaults,
            extra="alerts: {send_timeout: 4s}",
        )  # fmt: skip
        daemon = daemon_factory(config)
        stalled.wait_for(1)  # the first alert is stuck in the stalled target
        # The feed is polled again meanwhile and its new stories reach the healthy target.
        feeds.serve("/f.xml", rss(items[:2]))
        sink.wait_for(2)
        feeds.serve("/f.xml", rss(items))
        assert set(story_titles(sink.wait_for(3))) == {
            f"[turkey-air-defense] S-400 battery {n} moved" for n in range(3)
        }
        # The stuck send is given up after its deadline and recorded as failed for now.
        daemon.wait_for_log("no answer within 4s", timeout=20)
        daemon.proc.send_signal(signal.SIGTERM)
        # Bounded: the daemon does not wait for the thread stuck inside Apprise.
        assert daemon.proc.wait(timeout=40) == 0
    assert len(sink.received) == 3


def test_a_receiver_slower_than_apprises_defaults_gets_each_alert_once(
    tmp_path: Path, feeds: FeedServer
) -> None:
    # Apprise's own read timeout is 4 s: a receiver that takes 6 s used to be sent the
    # alert again on every run while it accepted every copy.
    url = feeds.serve("/f.xml", rss(numbered_items("F-35 delivery {n}", 1)))
    with slow_receiver(delay=6) as slow:
        config = write_config(tmp_path, feeds=[url], notify=[slow.url])
        first = cli("once", "--config", config)
        assert first.returncode == 0, first.stderr
        assert "1 sent, 0 failed deliveries" in first.stdout
        second = cli("once", "--config", config)
        assert "0 sent, 0 failed deliveries" in second.stdout
        assert len(slow.received) == 1


def test_two_runs_at_once_send_each_alert_once(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = numbered_items("CAATSA sanction {n}", 30)
    url = feeds.serve("/f.xml", rss(items[:15]))
    other = feeds.serve("/g.xml", rss(items[15:]))
    config = write_config(
        tmp_path, feeds=[url, other], notify=[sink.url], extra="alerts: {burst_limit: 100}"
    )
    command = [sys.executable, "-m", "monitor", "once", "--config", str(config)]
    runs = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(3)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "polled 2 feeds (2 ok" in out
        assert "Traceback" not in err and "database is locked" not in err
    sink.wait_for(30)
    counts = story_titles(sink.received)
    assert len(counts) == 30 and set(counts.values()) == {1}, counts
    with Store.open(tmp_path / "monitor.db") as store:
        [(stories,)] = store.db.execute("SELECT count(*) FROM stories").fetchall()
    assert stories == 30


def test_once_beside_a_running_daemon_sends_nothing_twice(
    tmp_path: Path,
    feeds: FeedServer,
    sink: AlertSink,
    daemon_factory: type[DaemonProcess],  # noqa: F811
) -> None:
    items = numbered_items("S-400 convoy {n}", 20)
    url = feeds.serve("/f.xml", rss(items[:10]))
    defaults = "{interval: 1s, min_interval: 1s, timeout: 5s, max_age: 7d, jitter: 0.1s}"
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], defaults=defaults,
        extra="alerts: {burst_limit: 100}",
    )  # fmt: skip
    daemon = daemon_factory(config)
    sink.wait_for(10)
    feeds.serve("/f.xml", rss(items))
    once = cli("once", "--config", config)
    assert once.returncode == 0, once.stderr
    sink.wait_for(20)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=40) == 0
    counts = story_titles(sink.received)
    assert len(counts) == 20 and set(counts.values()) == {1}, counts


def test_once_sends_a_backlog_larger_than_one_batch(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = numbered_items("F-35 part {n}", 600)
    url = feeds.serve("/f.xml", rss(items))
    config = write_config(
        tmp_path, feeds=[url], notify=[sink.url], extra="alerts: {burst_limit: 1000}"
    )
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "600 alerts queued, 600 sent" in result.stdout
    assert len(sink.wait_for(600)) == 600


def test_a_burst_larger_than_one_batch_is_one_summary(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = numbered_items("CAATSA case {n}", 1500)
    url = feeds.serve("/f.xml", rss(items, title="Wire"))
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    result = cli("once", "--config", config)
    assert "1500 alerts queued, 1 sent" in result.stdout, result.stdout + result.stderr
    [summary] = sink.wait_for(1)
    assert summary["title"] == "[turkey-air-defense] 1500 matching stories in one poll of Wire"


@contextmanager
def file_size_limit() -> Iterator[None]:
    """Inside, the test may set RLIMIT_FSIZE so that files cannot grow (EFBIG): a full disk
    for this process, without root. SIGXFSZ is ignored so writes fail instead of killing;
    the limit is lifted on leaving."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_sent_but_not_recorded_is_not_sent_again(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 radar {n}", 1)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    wal = tmp_path / "monitor.db-wal"
    received: list[dict[str, Any]] = []
    # Set once the database is filled: `once` runs in this process, and its own send must
    # not fill the disk.
    armed = threading.Event()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            # The disk fills up while the first send after arming is in flight.
            if armed.is_set() and len(received) == 1:
                resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size, hard))
            self.reply(200)

    with serving(Handler) as port, file_size_limit():
        config_path = write_config(
            tmp_path, feeds=[url], notify=[f"json://127.0.0.1:{port}/alerts"]
        )
        assert cli("once", "--config", config_path).returncode == 0
        config = load_config(config_path)
        with Store.open(config.database) as store:
            # Queue the alert again as if it had never been sent, then deliver.
            store.db.execute("UPDATE deliveries SET status = 'pending', attempts = 0")
            store.db.execute("DELETE FROM attempts")
            store.db.conn.commit()
            received.clear()
            armed.set()
            deliverer = Deliverer(config, store, Notifier(config.notify))
            first = asyncio.run(deliverer.deliver_due())
            assert len(received) == 1 and first.unrecorded == 1
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
            again = asyncio.run(deliverer.deliver_due(ignore_backoff=True))
            assert len(received) == 1, "sent again although the first send succeeded"
            assert again.recorded_late == 1
            [(status,)] = store.db.execute("SELECT status FROM deliveries").fetchall()
            assert status == "sent"


def test_a_crash_between_send_and_record_repeats_at_most_once(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 site {n}", 1)))
    config_path = write_config(tmp_path, feeds=[url], notify=[sink.url])
    assert cli("once", "--config", config_path).returncode == 0
    config = load_config(config_path)
    with Store.open(config.database) as store:
        store.db.execute("UPDATE deliveries SET status = 'pending', attempts = 0")
        store.db.conn.commit()
        # A process that claimed the delivery and died before recording anything:
        target = _only_target(store)
        t = time.time() + 1000
        [claimed] = store.claim_due(target, now=t, owner="dead", lease=60)
        # Its claim holds until the lease runs out, then another process sends it once.
        assert store.claim_due(target, now=t + 20, owner="live", lease=60) == []
        [again] = store.claim_due(target, now=t + 61, owner="live", lease=60)
        assert again.id == claimed.id and again.attempts == claimed.attempts + 1


def _only_target(store: Store) -> str:
    [(target,)] = store.db.execute("SELECT DISTINCT target FROM deliveries").fetchall()
    return str(target)


def test_test_notify_is_bounded_by_the_send_deadline(tmp_path: Path) -> None:
    with slow_receiver(stall=True) as stalled:
        config = write_config(
            tmp_path, feeds=[], notify=[stalled.url], extra="alerts: {send_timeout: 2s}"
        )
        # A process of its own: its exit must not wait for the send stuck inside Apprise.
        result = cli_process("test-notify", "--config", config, timeout=30)
    assert result.returncode == 1
    assert "no answer within 2s" in result.stdout
    assert "Traceback" not in result.stderr


def test_once_is_bounded_by_its_timeout(tmp_path: Path, feeds: FeedServer) -> None:
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 depot {n}", 1)))
    with slow_receiver(stall=True) as stalled:
        config = write_config(tmp_path, feeds=[url], notify=[stalled.url])
        # A process of its own: its exit must not wait for the send stuck inside Apprise.
        result = cli_process("once", "--timeout", "3s", "--config", config, timeout=30)
        assert stalled.received  # the send was under way when the deadline came
    assert result.returncode == 1
    assert "stopped after its --timeout of 3s" in result.stderr
    assert "Traceback" not in result.stderr
    with Store.open(tmp_path / "monitor.db") as store:
        [(stories,)] = store.db.execute("SELECT count(*) FROM stories").fetchall()
    assert stories == 1  # what was polled is kept


def test_a_claim_of_a_process_that_died_here_is_released_at_once(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 regiment {n}", 1)))
    config_path = write_config(tmp_path, feeds=[url], notify=[sink.url])
    assert cli("once", "--config", config_path).returncode == 0
    sink.wait_for(1)
    dead_owner = f"{socket.gethostname()}:{_dead_pid()}:abcd1234"
    config = load_config(config_path)
    with Store.open(config.database) as store:
        store.db.execute(
            "UPDATE deliveries SET status = 'pending', claimed_by = ?, claimed_until = ?",
            [dead_owner, time.time() + 3600],
        )
        store.db.conn.commit()
        summary = asyncio.run(Deliverer(config, store, Notifier(config.notify)).deliver_due())
    assert summary.sent == 1 and len(sink.wait_for(2)) == 2


def _dead_pid() -> int:
    """A pid that no longer runs (reused only after the kernel wraps around)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_once_sends_an_alert_while_a_slow_feed_is_still_answering(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    """``once`` sends each alert as soon as a poll queues it: a feed that answers only
    once the alert has arrived (or after 10 s) does not hold it back, nor would a
    ``--timeout`` that ended the run before the slowest feed."""
    answered: list[bool] = []  # for each request of the slow feed: had the alert arrived?

    class SlowFeed(QuietHandler):
        def do_GET(self) -> None:
            with sink._cond:
                arrived = sink._cond.wait_for(lambda: sink.received, timeout=10)
            answered.append(bool(arrived))
            self.reply(200, rss([]).encode(), {"Content-Type": "application/rss+xml"})

    story = {"title": "S-400 deal signed", "guid": "a", "link": "https://e.org/a",
             "published": time.time()}  # fmt: skip
    fast = feeds.serve("/fast.xml", rss([story]))
    with serving(SlowFeed) as port:
        config = write_config(
            tmp_path, feeds=[fast, f"http://127.0.0.1:{port}/slow.xml"], notify=[sink.url]
        )
        result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "1 alert queued, 1 sent" in result.stdout
    assert answered == [True]
    assert [alert["title"] for alert in sink.received] == ["[turkey-air-defense] S-400 deal signed"]


def test_once_tries_each_delivery_once_however_many_passes(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """Alerts are sent while polls go on, and by a pass after them: a delivery that
    failed in one pass is not tried again by a later pass of the same run (it waits for
    its retry time), so every failure is attempted and counted once."""
    posts = threading.Condition()
    posted: list[bytes] = []

    class FailingReceiver(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with posts:
                posted.append(body)
                posts.notify_all()
            self.reply(500)

    class SlowFeed(QuietHandler):  # answers once the first sends have failed
        def do_GET(self) -> None:
            with posts:
                posts.wait_for(lambda: posted, timeout=10)
            items = numbered_items("F-35 late {n}", 2, key="late-")
            self.reply(200, rss(items).encode(), {"Content-Type": "application/rss+xml"})

    urls = [
        feeds.serve(f"/{n}.xml", rss(numbered_items(f"F-35 report {n}.{{n}}", 2, key=f"{n}-")))
        for n in range(2)
    ]
    with serving(FailingReceiver) as receiver, serving(SlowFeed) as slow:
        config = write_config(
            tmp_path,
            feeds=[*urls, f"http://127.0.0.1:{slow}/slow.xml"],
            notify=[f"json://127.0.0.1:{receiver}/alerts"],
        )
        result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "6 alerts queued, 0 sent, 6 failed deliveries" in result.stdout, result.stdout
    assert len(posted) == 6
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        tries = db.execute("SELECT delivery_id, count(*) FROM attempts GROUP BY 1").fetchall()
        assert len(tries) == 6 and {count for _, count in tries} == {1}
        statuses = db.execute("SELECT DISTINCT status FROM deliveries").fetchall()
        assert statuses == [("pending",)]  # each tried again later, at its retry time


def test_a_delivery_pass_that_meets_a_database_error_stops_no_other(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass of ``once``'s sending while it polls fails on the database (locked, full):
    it is logged, and the later passes send everything; the run ends well."""
    routed_once = threading.Event()
    route = Deliverer._route

    def failing_once(self: Deliverer, now: float) -> None:
        if not routed_once.is_set():
            routed_once.set()
            raise StoreError("database write failed: database is locked")
        route(self, now)

    monkeypatch.setattr(Deliverer, "_route", failing_once)

    class SlowFeed(QuietHandler):  # answers once the first pass has failed
        def do_GET(self) -> None:
            routed_once.wait(timeout=10)
            items = numbered_items("CAATSA late {n}", 2, key="late-")
            self.reply(200, rss(items).encode(), {"Content-Type": "application/rss+xml"})

    fast = feeds.serve("/fast.xml", rss(numbered_items("S-400 early {n}", 2, key="early-")))
    with serving(SlowFeed) as slow:
        config = write_config(
            tmp_path, feeds=[fast, f"http://127.0.0.1:{slow}/slow.xml"], notify=[sink.url]
        )
        result = cli("once", "--config", config)
    assert routed_once.is_set()
    assert result.returncode == 0, result.stderr
    assert "4 alerts queued, 4 sent, 0 failed deliveries" in result.stdout
    assert "delivery pass failed" in result.stderr
    assert len(sink.wait_for(4)) == 4


def test_once_stopped_while_a_send_is_in_flight_lets_it_end_and_sends_it_once(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """Ctrl-C (or ``--timeout``) while ``once`` polls and sends: the send in flight may
    finish and is recorded, so the next run does not send it again; no new one starts."""
    posted: list[bytes] = []
    arrived, answer = threading.Condition(), threading.Event()
    polls_may_end = threading.Event()

    class HeldReceiver(QuietHandler):  # answers only when the test says so
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with arrived:
                posted.append(body)
                arrived.notify_all()
            answer.wait(timeout=20)
            self.reply(200)

    class SlowFeed(QuietHandler):  # keeps the first run polling
        def do_GET(self) -> None:
            polls_may_end.wait(timeout=30)
            self.reply(200, rss([]).encode(), {"Content-Type": "application/rss+xml"})

    fast = feeds.serve("/fast.xml", rss(numbered_items("S-400 deal {n}", 1)))
    with serving(HeldReceiver) as receiver, serving(SlowFeed) as slow:
        config = write_config(
            tmp_path,
            feeds=[fast, f"http://127.0.0.1:{slow}/slow.xml"],
            notify=[f"json://127.0.0.1:{receiver}/alerts"],
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "monitor", "once", "--config", str(config)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            with arrived:
                assert arrived.wait_for(lambda: posted, timeout=30), "nothing was sent"
            run.send_signal(signal.SIGINT)  # the send is in flight: its answer is held
            answer.set()
            _, stderr = run.communicate(timeout=30)
        finally:
            run.kill()
            polls_may_end.set()
        assert run.returncode == 1 and "Aborted" in stderr, stderr
        again = cli("once", "--config", config)
    assert again.returncode == 0, again.stderr
    assert "0 sent" in again.stdout
    assert len(posted) == 1
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        assert db.execute("SELECT status, attempts FROM deliveries").fetchall() == [("sent", 1)]


def test_a_send_whose_record_fails_within_a_batch_is_recorded_once(tmp_path: Path) -> None:
    """``once`` records sends while its polls are batched. When the disk fills as a send's
    record is committed, the failed write is undone with the batch's uncommitted polls
    (fetched again next run; SQLite undoes a transaction whose commit met a full disk,
    and the store one that a failed commit left open), never committed later beside the
    record the deliverer makes once there is room: one attempt, one row."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    store = Store.open(tmp_path / "m.db")
    store.queue_message("Notice", "body", ["t"], 1000.0)
    with file_size_limit(), store.batching(seconds=3600):
        store.sync_feeds([("https://a.example/feed", None)], 1000.0)  # a poll, batched
        [delivery] = store.claim_due("t", now=1000.0, owner="me", lease=60)  # commits both
        store.sync_feeds([("https://b.example/feed", None)], 1000.0)
        wal = tmp_path / "m.db-wal"
        resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size, hard))  # disk full
        with pytest.raises(StoreError):
            store.record_attempt(delivery.id, "t", ok=True, detail="", now=1001.0)
        assert not store.db.conn.in_transaction
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
        store.record_attempt(delivery.id, "t", ok=True, detail="", now=1002.0)
    other = sqlite3.connect(tmp_path / "m.db")
    assert other.execute("SELECT at FROM attempts").fetchall() == [(1002.0,)]
    assert other.execute("SELECT status FROM deliveries").fetchall() == [("sent",)]
    feeds = [url for (url,) in other.execute("SELECT url FROM feeds ORDER BY url")]
    assert feeds == ["https://a.example/feed"]  # b's poll: undone, polled again next run
    store.close()
