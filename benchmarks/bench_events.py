"""Event grouping: the cost of assigning one new story to an event, by index size.

For 10 thousand, 100 thousand and 1 million stories in the event index (all within the
window: the worst case; the daemon's index holds only the last 48 hours), new stories
arrive in polls of 25: half are copies of stored stories (a new headline, the first
sentence rewritten), half new stories. ``EventIndex.assign`` fingerprints each, looks
its 42 band keys up in SQLite, checks the candidates' shingles exactly and records it.

Beside it, comparing against every recent story directly: read every signature within
the window from SQLite and estimate the similarity to each (numpy, vectorised), and the
same with all signatures already in memory (no reading; a process would need 512 bytes
per story of RAM for it, and to load them at start). Stories are the store benchmark's
(``bench_store.make_entry``), fingerprinted by ``monitor.events``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_store import make_entry
from monitor.events import NUM_PERM, WINDOW, EventIndex, fingerprint, pack
from monitor.store.base import Connection
from monitor.store.events import EventStore
from monitor.store.schema import migrate

SIZES = (10_000, 100_000, 1_000_000)
POLL = 25
NOW = 1_790_000_000.0


def prefill(db: Connection, start: int, stop: int) -> None:
    """Index stories ``start`` to ``stop``, each its own event, seen within the last day
    (all inside the window): fingerprinted by ``monitor.events``, written in plain SQL
    10,000 a transaction, band rows sorted (quick to load; loading is not timed)."""
    for chunk in range(start, stop, 10_000):
        stories, bands = [], []
        for n in range(chunk, min(stop, chunk + 10_000)):
            entry = make_entry(n)
            fp = fingerprint(entry.title, entry.summary)
            seen = NOW - 86400 * (n % 1000) / 1000
            stories.append((n + 1, n + 1, seen, fp.words, pack(fp.signature),
                            pack(fp.shingles), " ".join(sorted(fp.marks)),
                            " ".join(sorted(fp.lead_marks))))  # fmt: skip
            bands.extend((key, n + 1) for key in fp.bands)
        bands.sort()
        with db.atomic():
            db.conn.executemany(
                "INSERT INTO event_stories (story_id, event_id, seen_at, words, signature, "
                "shingles, marks, lead_marks) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                stories,
            )
            db.conn.executemany("INSERT INTO event_bands VALUES (?, ?)", bands)


def arrivals(stored: int, first_id: int, count: int) -> list[tuple[int, str, str]]:
    """New stories: even ones copy a stored story under a new headline with its first
    sentence rewritten, odd ones are new."""
    stories = []
    for i in range(count):
        story_id = first_id + i
        if i % 2 == 0:
            original = make_entry((i * 7919) % stored)
            words = original.summary.split()
            body = "Officials said on background that " + " ".join(words[6:])
            stories.append((story_id, "Exclusive: what we know so far", body))
        else:
            entry = make_entry(story_id)
            stories.append((story_id, entry.title, entry.summary))
    return stories


def index_cost(db: Connection, stories: list[tuple[int, str, str]]) -> tuple[float, int]:
    """Milliseconds per story through ``EventIndex.assign`` (one transaction per poll of
    25), and how many of the copies joined their original's event."""
    index = EventIndex(EventStore(db))
    joined = 0
    started = time.perf_counter()
    for poll in range(0, len(stories), POLL):
        with db.atomic():
            for story_id, title, body in stories[poll : poll + POLL]:
                joined += not index.assign(story_id, title, body, NOW).is_new
    return (time.perf_counter() - started) * 1000 / len(stories), joined


def direct_from_sqlite(db: Connection, stories: list[tuple[int, str, str]]) -> float:
    """Milliseconds per story comparing its signature with every signature in the window,
    read from SQLite for each story."""
    started = time.perf_counter()
    for _, title, body in stories:
        sig = fingerprint(title, body).signature
        rows = db.execute(
            "SELECT story_id, signature FROM event_stories "
            "WHERE seen_at >= ? AND signature IS NOT NULL",
            [NOW - WINDOW],
        ).fetchall()
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<u4")
        estimates = (matrix.reshape(-1, NUM_PERM) == np.array(sig, dtype=np.uint32)).mean(axis=1)
        int(np.argmax(estimates))
    return (time.perf_counter() - started) * 1000 / len(stories)


def direct_in_memory(db: Connection, stories: list[tuple[int, str, str]]) -> float:
    """The same with every signature already loaded (loading is not timed)."""
    rows = db.execute(
        "SELECT signature FROM event_stories WHERE seen_at >= ? AND signature IS NOT NULL",
        [NOW - WINDOW],
    ).fetchall()
    matrix = np.frombuffer(b"".join(blob for (blob,) in rows), dtype="<u4").reshape(-1, NUM_PERM)
    started = time.perf_counter()
    for _, title, body in stories:
        sig = fingerprint(title, body).signature
        int(np.argmax((matrix == np.array(sig, dtype=np.uint32)).mean(axis=1)))
    return (time.perf_counter() - started) * 1000 / len(stories)


def main(sizes: tuple[int, ...] = SIZES) -> None:
    print("Events: cost of grouping one new story (ms), by stories in the event index; "
          "polls of 25, half copies of stored stories; median of 3 runs, one core")  # fmt: skip
    print()
    print("| stories in the index | EventIndex.assign | copies joined | every recent story, "
          "from SQLite | every recent story, in memory | index vs SQLite | database |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.db"
        db = Connection.connect(path)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        migrate(db.conn)
        stored = 0
        next_id = 50_000_000
        for size in sizes:
            prefill(db, stored, size)
            stored = size
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            megabytes = sum(p.stat().st_size for p in Path(tmp).glob("events.db*")) / 1e6
            runs = []
            for _ in range(3):
                stories = arrivals(stored, next_id, 200)
                next_id += len(stories)
                runs.append(index_cost(db, stories))
            assign_ms = statistics.median(ms for ms, _ in runs)
            joined = min(j for _, j in runs)
            few = arrivals(stored, next_id, 3 if size >= 1_000_000 else 10)
            sqlite_ms = direct_from_sqlite(db, few)
            memory_ms = direct_in_memory(db, arrivals(stored, next_id, 20))
            print(f"| {size:,} | {assign_ms:.2f} | {joined} of 100 | {sqlite_ms:,.0f} | "
                  f"{memory_ms:,.1f} | {sqlite_ms / assign_ms:,.0f}x | "
                  f"{megabytes:,.0f} MB |")  # fmt: skip
        db.close()


if __name__ == "__main__":
    main()
