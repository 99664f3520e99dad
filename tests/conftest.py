"""Shared fixtures: real local servers on 127.0.0.1. Helpers are in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import logging_kept
from tests.servers import AlertSink, FeedServer, Mailbox, alert_sink, feed_server, smtp_server


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with feed_server() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    with alert_sink() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Every command run in process (CliRunner) configures the root logger for its own
    output streams; no test leaves that behind for the next."""
    with logging_kept():
        yield


@pytest.fixture(autouse=True, scope="session")
def _no_user_config_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing the tests run, module fixtures included, caches configs in ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CACHE_DIRECTORY", raising=False)
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True)
def _own_config_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test caches loaded configs (monitor.config_load) in its own directory, never
    in the user's ~/.cache, and starts with none."""
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
