"""A database that is damaged, deleted or replaced stops feed-monitor with a clear error.

Damaged: every command says which file, why, and how to recover, and exits 1; never a
traceback. Deleted or replaced under a running daemon: it stops (exit 1, so systemd
restarts it on the file now at the path) instead of writing to a file nobody will read.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli as feed_monitor
from tests.helpers import REPO, cli, rss, seed_article_item, write_config
from tests.servers import FeedServer, feed_server

# -- a damaged database ------------------------------------------------------------------


def garbage(db: Path) -> None:
    db.write_bytes(b"not a database, whatever its name says\n" * 500)


def corrupt_pages(db: Path) -> None:
    """Keep page 1 (header and schema), overwrite the pages holding the tables' rows."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [
            row[0]
            for row in conn.execute(
                "SELECT rootpage FROM sqlite_master WHERE name IN ('feeds', 'alerts', 'stories')"
            )
        ]
    conn.close()
    with db.open("r+b") as file:
        for page in roots:
            file.seek((page - 1) * page_size)
            file.write(b"\xa5" * page_size)


def invalid_utf8(db: Path) -> None:
    """Text columns holding bytes that are not UTF-8, written past sqlite3's checks."""
    bad = "CAST(x'ff41fe' AS TEXT)"
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE feeds SET name = {bad}, title = {bad}, etag = {bad}")
        conn.execute(f"UPDATE alerts SET title = {bad}")
        conn.execute(f"UPDATE stories SET title = {bad}")
    conn.close()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": garbage,
    "corrupt-pages": corrupt_pages,
    "invalid-utf8": invalid_utf8,
}


@pytest.fixture(scope="module")
def feeds_module() -> Iterator[FeedServer]:
    with feed_server() as server:
        yield server


@pytest.fixture(scope="module")
def healthy_database(
    tmp_path_factory: pytest.TempPathFactory, feeds_module: FeedServer
) -> tuple[Path, Path]:
    """A database with a feed, a story and an alert, made by a real `once`."""
    directory = tmp_path_factory.mktemp("healthy")
    url = feeds_module.serve("/damaged.xml", rss([seed_article_item()]))
    config = write_config(directory, feeds=[url])
    result = CliRunner().invoke(feed_monitor, ["once", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return directory, config


@pytest.fixture(params=sorted(DAMAGE))
def damaged(
    request: pytest.FixtureRequest, tmp_path: Path, healthy_database: tuple[Path, Path]
) -> Path:
    """A config whose database was damaged in one of the ways in DAMAGE."""
    directory, config = healthy_database
    for name in ("monitor.yaml", "monitor.db"):
        shutil.copy(directory / name, tmp_path / name)
    DAMAGE[request.param](tmp_path / "monitor.db")
    return tmp_path / config.name


def assert_clear_damage_error(exit_code: int, output: str, db: Path) -> None:
    assert "Traceback" not in output, output
    assert exit_code == 1, output
    assert f"database {db}: damaged" in output
    assert "backup" in output
    if "UTF-8" in output:  # .recover would copy the bad bytes: name the column instead
        assert "column 'name'" in output or "column 'etag'" in output or "column 'title'" in output
        assert "\ufffd" not in output  # the bad bytes themselves are not printed
    else:
        assert f'sqlite3 {db} ".recover"' in output


@pytest.mark.parametrize("command", ["once", "status", "alerts"])
def test_a_damaged_database_is_a_clear_error(damaged: Path, command: str) -> None:
    result = CliRunner().invoke(feed_monitor, [command, "--config", str(damaged)])
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert_clear_damage_error(result.exit_code, result.output, damaged.parent / "monitor.db")


def test_the_daemon_stops_on_a_damaged_database(damaged: Path) -> None:
    result = cli("run", "--config", damaged)
    assert_clear_damage_error(result.returncode, result.stderr, damaged.parent / "monitor.db")


# -- deleted or replaced under a running daemon ------------------------------------------


def delete(db: Path) -> None:
    db.unlink()


def replace(db: Path) -> None:
    other = db.with_name("other.db")
    sqlite3.connect(other).close()
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    os.replace(other, db)


@pytest.mark.parametrize("change", [delete, replace], ids=["deleted", "replaced"])
def test_the_daemon_stops_when_its_database_file_is_deleted_or_replaced(
    tmp_path: Path, feeds: FeedServer, change: Callable[[Path], None]
) -> None:
    url = feeds.serve("/f.xml", rss([seed_article_item()]))
    config = write_config(tmp_path, feeds=[url])
    db = tmp_path / "monitor.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FEED_MONITOR_CONFIG", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert daemon.stderr is not None
    try:
        for line in daemon.stderr:  # the first poll is stored: the database is in use
            if "1 new" in line:
                break
        else:
            pytest.fail("the daemon exited before its first poll")
        change(db)
        code = daemon.wait(10)  # it stops within 10 s (TimeoutExpired otherwise)
        rest = daemon.stderr.read()
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
    assert code == 1, rest
    assert "Traceback" not in rest
    assert f"database file {db} was deleted or replaced" in rest


# -- only the database's own verdicts count ----------------------------------------------


def test_only_real_damage_is_reported_as_damage(tmp_path: Path) -> None:
    from monitor.errors import DatabaseFault, StoreError
    from monitor.store import Store, damage

    db = tmp_path / "m.db"
    with Store.open(db) as store:
        # Bugs in our SQL or code keep their traceback: no fault is made of them.
        for statement in ("SELECT nosuch FROM feeds", "SELECT * FROM nosuch", "SELEC 1"):
            with pytest.raises(sqlite3.OperationalError) as bug:
                store.db.execute(statement)
            assert store.fault(bug.value) is None
        assert store.fault(ValueError("not a database error")) is None
    # Damage is recognized even under a StoreError that hid its cause ("from None").
    garbage(db)
    with pytest.raises(sqlite3.DatabaseError) as damaged:
        sqlite3.connect(db).execute("SELECT * FROM sqlite_master")
    try:
        raise StoreError("database write failed") from None
    except StoreError as wrapped:
        wrapped.__context__ = damaged.value
        fault = damage(wrapped, db)
    assert isinstance(fault, DatabaseFault) and f"database {db}: damaged" in str(fault)
