"""kill -9 at random moments loses no story and no alert (at most one repeat per kill)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO, cli, numbered_items, rss, write_config
from tests.servers import AlertSink, FeedServer

# Under pytest-xdist, in one group with the other test that loads the machine most (the
# real-world corpus): each needs the cores it can get (here: daemons that must do some work
# between start and a random kill), so the two never run at the same time.
pytestmark = pytest.mark.xdist_group("heavy")

STORIES = 40
KILLS = 12


def test_killing_the_daemon_at_random_moments_loses_nothing(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    items = numbered_items("S-400 report number {n}", STORIES)
    half = STORIES // 2
    url = feeds.serve("/f.xml", rss(items[:half]))
    second = feeds.serve("/g.xml", rss(items[half:]))
    defaults = "{interval: 1s, min_interval: 1s, timeout: 5s, max_age: 7d, jitter: 0.1s}"
    config = write_config(
        tmp_path,
        feeds=[url, second],
        notify=[sink.url],
        defaults=defaults,
        extra="alerts: {burst_limit: 100}",  # one message per alert, to count them
    )
    rng = random.Random(20261124)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(KILLS):
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "-v", "run", "--config", str(config)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Once it runs (start-up time varies with the machine's load), it is killed at a
        # random moment of its work: the randomness of that moment is the point here.
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if "feed-monitor running" in line:
                break
        time.sleep(rng.uniform(0.0, 1.2))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        daemon.stderr.close()

    # The daemons did real work between the kills (this is not all left to `once`).
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        assert db.execute("SELECT count(*) FROM stories").fetchone()[0] == STORIES
    assert sink.received, "no daemon lived long enough to deliver anything"

    # After the crashes, one clean run delivers whatever is still pending.
    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        stored = db.execute("SELECT count(*) FROM stories").fetchone()[0]
        unsent = db.execute("SELECT count(*) FROM deliveries WHERE status != 'sent'").fetchone()[0]
        unrouted = db.execute("SELECT count(*) FROM alerts WHERE routed_at IS NULL").fetchone()[0]
        [(sent,)] = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'")
    assert stored == STORIES
    assert (unsent, unrouted, sent) == (0, 0, STORIES)
    received = Counter(alert["title"] for alert in sink.wait_for(STORIES))
    assert len(received) == STORIES  # no alert lost
    repeats = sum(received.values()) - STORIES
    assert repeats <= KILLS  # at most the delivery in flight at each kill is repeated
