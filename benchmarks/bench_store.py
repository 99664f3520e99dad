"""Store throughput: new stories per second through the real poll path, by database size.

For 10 thousand, 100 thousand and 1 million stored stories, new stories arrive as polls
of 25 entries (half of each poll already known, as in a real re-poll): identity keys,
``Store.lookup``, the pure ``plan_poll`` (with the S-400 watchlist) and one
``Store.save_poll`` transaction. Beside it, the obvious implementation: for each entry a
SELECT by key and an INSERT, each committed on its own (sqlite-utils' default).
Also: how long one poll's lookup takes, and the database size per million stories.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import sqlite_utils

from monitor.config import Watchlist
from monitor.identity import TITLE_WINDOW, canonical_url, source_keys
from monitor.match import Matcher
from monitor.models import Entry, PollRecord
from monitor.pipeline import plan_poll
from monitor.store import Store

WORDS = (
    "defense", "ministry", "contract", "frigate", "radar", "missile", "battery", "drone",
    "army", "navy", "deal", "ankara", "moscow", "washington", "sanctions", "delivery",
    "battalion", "exercise", "border", "airspace",
)  # fmt: skip
SIZES = (10_000, 100_000, 1_000_000)
POLL = 25
MATCHER = Matcher([Watchlist(name="w", keywords=["S-400", "CAATSA", "F-35"])])


def make_entry(n: int) -> Entry:
    """Story number ``n``: the same every time it is made, as a re-polled entry is."""
    rng = random.Random(n)
    title = " ".join(rng.choice(WORDS) for _ in range(9)).capitalize() + f" {n}"
    summary = " ".join(rng.choice(WORDS) for _ in range(60))
    link = f"https://news{n % 50}.example/{2026 - n % 5}/story-{n}-{rng.choice(WORDS)}/"
    return Entry(key=f"id:urn:story:{n}", title=title, link=link, summary=summary,
                 published=1_790_000_000.0 - rng.randint(0, 86400))  # fmt: skip


def prefill(store: Store, start: int, stop: int) -> None:
    """Add stories ``start`` to ``stop`` quickly (10,000 a transaction), in plain SQL."""
    db = store.db
    feeds = store.sync_feeds([(f"https://feed{i}.example/rss", None) for i in range(200)], 0)
    feed_ids = [state.id for state in feeds.values()]
    now = time.time() - 30 * 86400
    for chunk in range(start, stop, 10_000):
        with db.atomic():
            for n in range(chunk, min(stop, chunk + 10_000)):
                entry = make_entry(n)
                keys = source_keys(entry, set())
                feed_id = feed_ids[n % len(feed_ids)]
                story_id = db.execute(
                    "INSERT INTO stories (feed_id, key, title, link, summary, content, "
                    "published, first_seen) VALUES (?, ?, ?, ?, ?, '', ?, ?) RETURNING id",
                    [feed_id, keys.entry_key, entry.title, entry.link, entry.summary,
                     entry.published, now],
                ).fetchone()[0]  # fmt: skip
                db.execute(
                    "INSERT INTO story_sources (story_id, feed_id, entry_key, link, link_key, "
                    "canonical_link, title_key, opaque, content_hash, first_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [story_id, feed_id, keys.entry_key, keys.link, keys.link_key,
                     keys.canonical_link, keys.title_key, int(keys.opaque), keys.content_hash,
                     now],
                )  # fmt: skip


def feed_monitor_rate(store: Store, fresh: int, polls: int) -> tuple[float, float]:
    """New stories per second, and the median lookup time of one poll (ms)."""
    url = "https://bench.example/rss"
    feed_id = store.sync_feeds([(url, None)], 0)[url].id
    # A feed of 25 entries, polled after 12 new ones were published: half of each poll
    # was seen in the previous one. Made before the clock starts: only storing is timed.
    batches = [
        [make_entry(fresh + poll * (POLL // 2) + i) for i in range(POLL)] for poll in range(polls)
    ]
    lookups = []
    new = 0
    started = time.perf_counter()
    for batch in batches:
        now = time.time()
        keyed = [(entry, source_keys(entry, set())) for entry in batch]
        t0 = time.perf_counter()
        lookup = store.lookup(feed_id, [keys for _, keys in keyed], now - TITLE_WINDOW)
        lookups.append(time.perf_counter() - t0)
        plan = plan_poll(keyed, lookup, MATCHER, feed_id=feed_id, feed_name="Bench", now=now,
                         max_age=7 * 86400)  # fmt: skip
        store.save_poll(feed_id, PollRecord(now, now + 900, status=200), plan)
        new += len(plan.new)
    return new / (time.perf_counter() - started), statistics.median(lookups) * 1000


def naive_rate(path: Path, first: int, count: int) -> float:
    """The obvious way: look each entry up, insert it, one commit per story."""
    db = sqlite_utils.Database(path)
    table = db.table("naive_stories")
    if not table.exists():
        table.create({"id": int, "key": str, "title": str, "link": str, "summary": str},
                     pk="id")  # fmt: skip
        table.create_index(["key"], unique=True)
    entries = [make_entry(first + i) for i in range(count)]
    started = time.perf_counter()
    for entry in entries:
        if not db.execute("SELECT 1 FROM naive_stories WHERE key = ?", [entry.key]).fetchone():
            table.insert({"key": entry.key, "title": entry.title,
                          "link": canonical_url(entry.link), "summary": entry.summary})  # fmt: skip
    rate = count / (time.perf_counter() - started)
    db.close()
    return rate


def main() -> None:
    print("Store: new stories/s through lookup + plan + one transaction per poll of 25 "
          "(half of each poll seen in the previous one); median of 3 runs, one core")  # fmt: skip
    print()
    print("| stored stories | feed-monitor (new stories/s) | SELECT + INSERT per story, "
          "autocommit (stories/s) | ratio | lookup, one poll (ms) | database size |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = Store.open(path)
        stored = 0
        for size in SIZES:
            prefill(store, stored, size)
            store.index_pending()  # as the daemon does every 30 s; counted in the size
            stored = size
            megabytes = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 1e6
            runs = [feed_monitor_rate(store, 10_000_000 * (run + 1) + size, 80) for run in range(3)]
            rate = statistics.median(r for r, _ in runs)
            lookup_ms = statistics.median(ms for _, ms in runs)
            naive = naive_rate(path, 50_000_000 + size, 300)
            print(f"| {size:,} | {rate:,.0f} | {naive:,.0f} | {rate / naive:.1f}x | "
                  f"{lookup_ms:.2f} | {megabytes:,.0f} MB |")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
