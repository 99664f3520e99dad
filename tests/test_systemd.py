"""The shipped systemd unit: hardened, as `systemd-analyze security` scores it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.service import sd_notify, watchdog_interval
from tests.helpers import REPO

UNIT = REPO / "systemd" / "feed-monitor.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
def test_unit_exposure_is_low() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0


def test_unit_runs_the_daemon_and_reloads_with_sighup() -> None:
    text = UNIT.read_text()
    assert "ExecStart=/opt/feed-monitor/bin/feed-monitor run --config " in text
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "DynamicUser=yes" in text and "StateDirectory=feed-monitor" in text
    # Parser workers set their own memory limit: setrlimit must stay allowed.
    assert "@resources" not in text.split("SystemCallFilter=~", 1)[1].splitlines()[0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
@pytest.mark.parametrize("name", ["feed-monitor.service", "feed-monitor.user.service"])
def test_units_pass_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    # verify insists that ExecStart= exists: point it at this checkout's feed-monitor.
    text = (REPO / "systemd" / name).read_text()
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable} -m monitor", text, flags=re.M)
    unit = tmp_path / "feed-monitor.service"
    unit.write_text(text)
    args = ["--user"] if "user" in name else []
    runtime = tmp_path / "runtime"  # a user manager needs one
    runtime.mkdir()
    result = subprocess.run(
        ["systemd-analyze", "verify", *args, str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )  # fmt: skip
    problems = [line for line in result.stderr.splitlines() if "feed-monitor" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"feed-monitor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1", "STATUS=ok")
        assert listener.recv(1024) == b"READY=1\nSTATUS=ok"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")  # outside systemd: a no-op
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert watchdog_interval() is None
