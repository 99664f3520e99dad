"""Helper processes (parser workers, multiprocessing's resource tracker) die with their parent.

kill -9 of the daemon gives it no chance to stop them; they must notice on their own, and
let go of the daemon's stdout and stderr so whoever reads them sees the end.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, numbered_items, rss, write_config
from tests.servers import FeedServer


def group_members(pgid: int) -> set[int]:
    """Live (not zombie) processes in process group ``pgid``, from /proc."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        state, _ppid, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.add(int(entry.name))
    return members


def test_kill_9_of_run_leaves_no_helper_alive_and_closes_its_output(
    tmp_path: Path, feeds: FeedServer
) -> None:
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 story {n}", 5)))
    config = write_config(tmp_path, feeds=[url])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FEED_MONITOR_CONFIG", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: every helper it starts is in it
    )  # fmt: skip
    assert daemon.stdout is not None and daemon.stderr is not None
    streams = selectors.DefaultSelector()
    streams.register(daemon.stdout, selectors.EVENT_READ)
    streams.register(daemon.stderr, selectors.EVENT_READ)
    log = b""
    try:
        # The feed was parsed: parser workers exist.
        deadline = time.monotonic() + 30
        while b"5 entries" not in log:
            assert time.monotonic() < deadline, f"the daemon never parsed the feed:\n{log!r}"
            for key, _ in streams.select(timeout=0.5):
                chunk = os.read(key.fd, 65536)
                log += chunk
        helpers = group_members(daemon.pid) - {daemon.pid}
        assert helpers, "expected parser workers beside the daemon"
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)

    # Every helper exits, and the last holder of each pipe's write end with it.
    open_streams = {daemon.stdout.fileno(), daemon.stderr.fileno()}
    deadline = time.monotonic() + 10
    try:
        while open_streams or group_members(daemon.pid):
            left = deadline - time.monotonic()
            assert left > 0, (
                f"still alive after kill -9 of the daemon: {group_members(daemon.pid)}; "
                f"pipes still open: {open_streams}"
            )
            for key, _ in streams.select(timeout=min(left, 0.2)):
                if not os.read(key.fd, 65536):
                    open_streams.discard(key.fd)
                    streams.unregister(key.fileobj)
    finally:
        if group_members(daemon.pid):
            os.killpg(daemon.pid, signal.SIGKILL)  # leave nothing behind, even on failure
        daemon.stdout.close()
        daemon.stderr.close()


def test_a_hup_to_the_whole_group_reloads_and_stops_cleanly(
    tmp_path: Path, feeds: FeedServer
) -> None:
    # `timeout`, a closing terminal or `kill -HUP -PGID` send HUP to every process of the
    # group: the daemon reloads; its parser workers must not die of it.
    url = feeds.serve("/f.xml", rss(numbered_items("S-400 story {n}", 5)))
    config = write_config(tmp_path, feeds=[url])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "-v", "run", "--config", str(config)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert daemon.stdout is not None
    log = []
    for line in daemon.stdout:  # until the feed was parsed: parser workers exist
        log.append(line.decode())
        if "5 entries" in log[-1]:
            break
    workers = group_members(daemon.pid) - {daemon.pid}
    os.killpg(daemon.pid, signal.SIGHUP)
    for line in daemon.stdout:
        log.append(line.decode())
        if "config reloaded" in log[-1]:
            break
    assert workers <= group_members(daemon.pid), "a parser worker died of the HUP"
    daemon.send_signal(signal.SIGTERM)
    rest, _ = daemon.communicate(timeout=40)
    output = "".join(log) + rest.decode()
    assert daemon.returncode == 0, output
    assert "Traceback" not in output and "died unexpectedly" not in output, output
