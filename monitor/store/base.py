"""The database connection: opening and migrating it, transactions, batching, and telling
a damaged, deleted or replaced file from a bug.

The store talks to SQLite through ``Connection``, a few lines over the standard sqlite3
module; sqlite-utils is imported only when the database needs a migration (schema.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from monitor.errors import DatabaseFault, StoreError
from monitor.models import (
    AlertContent,
)
from monitor.store.schema import migrate

Parameters = Sequence[Any] | dict[str, Any]


class Connection:
    """One SQLite connection in autocommit mode and the calls the store makes on it.

    A statement outside a transaction commits at once; ``BEGIN`` opens one explicitly
    (sqlite3 itself never does, as ``isolation_level=None``). This is the subset of
    sqlite-utils' ``Database`` the store uses at run time, with the same behaviour:
    importing sqlite-utils (and what it imports) would be 60 ms of every start.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.isolation_level = None
        self.conn = conn
        self._savepoints = 0

    @classmethod
    def connect(cls, path: Path | str, timeout: float = 30) -> Connection:
        return cls(sqlite3.connect(str(path), timeout=timeout, isolation_level=None))

    def execute(self, sql: str, parameters: Parameters = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, parameters)

    def query(self, sql: str, parameters: Parameters = ()) -> Iterator[dict[str, Any]]:
        """The rows of ``sql`` as dictionaries by column name."""
        cursor = self.conn.execute(sql, parameters)
        names = [column[0] for column in cursor.description]
        return (dict(zip(names, row, strict=True)) for row in cursor)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All or nothing: a transaction, or a savepoint within the one already open."""
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
            try:
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a lock, a full disk) leaves the transaction open: every
                # later write would join it and never be committed. (A no-op if the error
                # already ended the transaction.)
                self.conn.rollback()
                raise
            return
        self._savepoints += 1
        name = f"atomic_{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # An error such as a full disk can end the whole transaction, savepoints
            # included: undoing it then would hide the error behind "no such savepoint".
            if self.conn.in_transaction:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1

    def close(self) -> None:
        self.conn.close()


class StoreBase:
    """The connection, its transactions and the file's identity; what every part of the
    store builds on."""

    def __init__(self, db: Connection, path: Path | None = None) -> None:
        self.db = db
        self.path = path
        # Which file was opened: sqlite3 has no accessor for its descriptor, so the path
        # is compared with it again (see verify_file).
        self._file_id = _file_id(path) if path is not None else None
        self._batch_seconds: float | None = None
        self._batch_started = 0.0
        self._depth = 0  # nested _writing blocks; the outermost one commits

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open (creating if needed) and migrate the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
            # Two processes opening a new (or older) database at once, the daemon and a
            # `once`, would both set it up: one failed on the other's WAL switch or
            # tables. One at a time; the second finds nothing left to do.
            with _setting_up(path):
                db = Connection.connect(path, timeout=30)
                db.execute("PRAGMA busy_timeout = 30000")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                # Checkpoint the WAL every ~40 MB instead of 4 MB: index pages written by
                # many polls in a row reach the database file once (bench_store.py).
                db.execute("PRAGMA wal_autocheckpoint = 10000")
                db.execute("PRAGMA foreign_keys = ON")
                migrate(db.conn)
            store = cls(db, path)  # the file surely exists now: remember which it is
        except (sqlite3.Error, OSError) as exc:
            fault = damage(exc, path)
            if fault is not None:
                raise DatabaseFault(f"cannot open {fault}") from exc
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        return store

    def close(self) -> None:
        self.db.close()

    def backup(self, destination: Path) -> int:
        """Write a consistent copy of the database to ``destination``; return its size.

        sqlite3's online backup reads the database as one snapshot, committed WAL pages
        included, while the daemon goes on writing (copying the file alone could miss the
        WAL or catch a half-written page). The copy is one self-contained file (rollback
        journal; feed-monitor turns WAL on again when it opens it), checked before it
        replaces ``destination`` atomically."""
        partial = destination.with_name(f".{destination.name}.partial")
        try:
            _create_private(partial)
            copy = sqlite3.connect(str(partial))
            try:
                self.db.conn.backup(copy)
                copy.execute("PRAGMA journal_mode = DELETE")
                [(verdict,)] = copy.execute("PRAGMA quick_check").fetchall()
            finally:
                copy.close()
            if verdict != "ok":
                raise StoreError(f"the copy of {self.path} failed its check: {verdict}")
            partial.replace(destination)
            return destination.stat().st_size
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot back up to {destination}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):  # its directory may be what failed
                partial.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: object,
    ) -> None:
        # A damaged file shows itself in whichever query reads the damaged page: say
        # so once, here, for every use of the store.
        fault = self.fault(exc) if exc is not None else None
        try:
            self.close()
        except sqlite3.Error:
            if fault is None and exc is None:
                raise
        if fault is not None:
            raise fault from exc

    def fault(self, exc: BaseException) -> DatabaseFault | None:
        """The ``DatabaseFault`` that ``exc`` (or what it wraps) shows, if it shows one."""
        return damage(exc, self.path) if self.path is not None else None

    def verify_file(self) -> None:
        """Raise ``DatabaseFault`` if the file at our path is not the one we opened.

        A deleted or replaced database would otherwise go unnoticed: writes would go on
        into the unlinked file, and the next start would find none of them (and alert
        everything again).
        """
        if self.path is None or self._file_id is None:
            return
        now = _file_id(self.path)
        if now != self._file_id:
            what = "deleted" if now is None else "replaced by another file"
            raise DatabaseFault(
                f"database file {self.path} was deleted or replaced while in use ({what}); "
                "stopping so that nothing more is written to a file no one will read. "
                "Restore the file, or start again to use the one now at that path."
            )

    @contextlib.contextmanager
    def batching(self, seconds: float = 1.0) -> Iterator[None]:
        """Group the writes of many polls into one transaction per ``seconds`` (bulk runs).

        Each write is still all-or-nothing (a savepoint). A crash loses at most the last
        ``seconds`` of polls, and loses nothing for good: their feed state (validators
        included) is lost with them, so the next run fetches and stores them again, and
        nothing they queued was delivered, since delivery calls ``flush`` first.

        Meanwhile SQLite keeps its temporary data in memory: a savepoint saves the pages
        it changes to a journal of its own, which would otherwise be a file, and a cold
        run of 400 feeds wrote 216 MB to it, 4 KB a system call (the journal of one
        savepoint is the size of one poll's changes).
        """
        self._batch_seconds = seconds
        self._temp_store("MEMORY")
        try:
            yield
        finally:
            try:
                self.flush()
            finally:
                self._batch_seconds = None
                self._temp_store("DEFAULT")

    def _temp_store(self, where: str) -> None:
        # SQLite refuses the change within a transaction (a failed commit can leave one
        # open): then it stays as it is, which is only slower or larger, never wrong.
        if not self.db.conn.in_transaction:
            self.db.execute(f"PRAGMA temp_store = {where}")

    def flush(self) -> None:
        """Commit what ``batching`` has written so far."""
        if self.db.conn.in_transaction:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"database write failed: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Reads and writes that must see no other process's writes in between (a poll's
        identity lookup and its save; routing alerts): one write transaction."""
        with self._writing():
            yield

    @contextlib.contextmanager
    def _writing(self, *, durable: bool = False) -> Iterator[None]:
        """One transaction (a savepoint within an enclosing one, or within a batch);
        SQLite failures become StoreError.

        Transactions begin IMMEDIATE, taking the write lock at once: a deferred one that
        read first and then wrote could fail at once with "database is locked" when
        another process wrote in between, whatever the busy timeout.

        A ``durable`` write is committed when it ends even within a batch (with the
        batch's writes before it): what records a send, before or after it, must
        survive a crash of the process a moment later, or the alert would be sent again.
        (Of the process, not of the machine: ``synchronous = NORMAL`` lets a power cut
        lose the last commits, which costs that one repeat.)"""
        self.verify_file()
        outermost = self._depth == 0
        self._depth += 1
        try:
            if not self.db.conn.in_transaction:
                self.db.execute("BEGIN IMMEDIATE")
                self._batch_started = time.monotonic()
            with self.db.atomic():
                yield
            if outermost and (
                durable
                or self._batch_seconds is None
                or time.monotonic() - self._batch_started > self._batch_seconds
            ):
                self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            # A failed commit can leave the transaction open: undone here, or the failed
            # write would be committed later with the next one. Within a batch only a
            # durable write's is (with the batch's polls since its last commit: their
            # feeds are fetched again by the next run, and nothing of theirs was sent).
            if (
                outermost
                and (durable or self._batch_seconds is None)
                and (self.db.conn.in_transaction)
            ):
                self.db.execute("ROLLBACK")
            raise StoreError(f"database write failed: {exc}") from exc
        finally:
            self._depth -= 1


@contextlib.contextmanager
def _setting_up(database: Path) -> Iterator[None]:
    """Hold the database's set-up lock (a byte of ``<database>.lock``, the file whose
    first bytes ``runtime.process_lock`` uses for its roles), waiting for a process that
    holds it; it dies with its process. Where the lock file cannot be made (a directory
    this user cannot write), neither can a database be set up: go on without it."""
    try:
        fd = os.open(lock_file(database), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        fd = None
    if fd is None:
        yield
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, _SET_UP_LOCK_BYTE)
        yield
    finally:
        os.close(fd)  # releases the lock


_SET_UP_LOCK_BYTE = 2  # runtime.process_lock: 0 the daemon, 1 `once`


def lock_file(database: Path) -> Path:
    """``<database>.lock``: the file whose bytes the processes on ``database`` lock
    (``runtime.process_lock``, ``_setting_up``)."""
    return database.with_name(database.name + ".lock")


def _create_private(path: Path) -> None:
    """Create ``path`` empty, readable by its owner only, unless it exists. The database
    holds the feed URLs as configured, credentials included; SQLite gives its -wal and
    -shm files the database file's mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _file_id(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None if there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


_SQLITE_HEADER = b"SQLite format 3\x00"


def database_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the database, or None (``check`` asks before any run does):
    a directory, something that is not a regular file, a file that is not SQLite, a
    parent that is not a directory. A missing file is fine: the first run creates it."""
    try:
        status = path.stat()
    except FileNotFoundError:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return None if parent.is_dir() else f"{parent} is not a directory"
    except OSError as exc:
        return f"cannot use {path}: {exc.strerror}"
    if path.is_dir():
        return f"{path} is a directory, not a database file"
    if not path.is_file():
        return f"{path} is not a regular file"
    if status.st_size == 0:
        return None  # SQLite makes an empty file a database
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    return None if head == _SQLITE_HEADER else f"{path} is not an SQLite database"


# SQLite's primary result codes that mean the file's content cannot be trusted.
_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# Python's sqlite3 reports a TEXT value that is not UTF-8 this way, with no result code.
_UNDECODABLE_RE = re.compile(r"Could not decode to UTF-8 column '([^']*)'")


def damage(exc: BaseException, path: Path) -> DatabaseFault | None:
    """A ``DatabaseFault`` naming ``path`` and how to recover, if ``exc`` (or an error it
    was raised from or during) says the database file is damaged; else None.

    Only SQLite's own verdicts count (a corrupt page, not a database, undecodable text),
    never an error in our SQL or code, which must stay a bug with its traceback.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DatabaseFault):
            return error
        if isinstance(error, sqlite3.DatabaseError):
            undecodable = _UNDECODABLE_RE.match(str(error))
            if undecodable:
                # .recover copies such bytes as they are; the value itself must change.
                # (The message leaves the bytes out: they could be terminal escapes.)
                return DatabaseFault(
                    f"database {path}: damaged (a value in column '{undecodable[1]}' is "
                    "not valid UTF-8 text). Stop feed-monitor, then restore a backup, or "
                    f"correct or delete that row with the sqlite3 shell (sqlite3 {path})."
                )
            if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES:
                return DatabaseFault(
                    f"database {path}: damaged ({error}). Stop feed-monitor, then either "
                    f'recover what can be read: sqlite3 {path} ".recover" | sqlite3 '
                    f"recovered.db and move recovered.db to {path} (removing any -wal and "
                    "-shm files beside it), or restore a backup."
                )
        error = error.__cause__ or error.__context__
    return None


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """SQLite limits the number of ? in one statement."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def _content(item: dict[str, Any]) -> AlertContent:
    return AlertContent(
        story_title=item["story_title"] or "",
        link=item["link"],
        feed=item["feed"] or "",
        published=item["published"],
        watchlist=item["watchlist"],
        keywords=tuple(item["keywords"]),
        terms=tuple(item["terms"]),
        snippet=item["snippet"] or "",
        highlight=(int(item["highlight"][0]), int(item["highlight"][1])),
        also_reported_by=tuple(item.get("also_reported_by") or ()),
    )
