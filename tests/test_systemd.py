"""The shipped systemd unit: hardened, as `systemd-analyze security` scores it."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

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
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "DynamicUser=yes" in text and "StateDirectory=feed-monitor" in text
    # Parser workers set their own memory limit: setrlimit must stay allowed.
    assert "@resources" not in text.split("SystemCallFilter=~", 1)[1].splitlines()[0]
