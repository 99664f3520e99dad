"""One alert per event: the "same event" rule (monitor/events.py) and its SQLite index
(monitor/events_store.py), against the labelled pairs in tests/data/event_pairs.yaml.

Stated figures on the labelled set (54 pairs: 26 same event, 28 not; 35 reports of 15
events), asserted below:
- precision 1.0: no pair of different events is ever joined, in either order, and not in
  a stream of all the reports either;
- pairwise recall 20 of 26 (0.77). The six misses are each deliberate: a copy with a new
  intro against a trimmed copy of the original (they share one paragraph, as different
  events sharing a background paragraph do), a copy against a lightly edited copy (59 %
  overlap, under 60 %), and a headline or a headline with its first sentence against
  the full report (too little text to tell an event from its follow-up);
- in a stream, where the first report is there to match, every copy, trimmed and edited
  report joins its event (only the headline-only and one-sentence items stay apart).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from datasketch import MinHash, MinHashLSH

from monitor import events
from monitor.errors import StoreError
from monitor.events import EventIndex, fingerprint
from monitor.store.base import Connection
from monitor.store.events import EventStore
from monitor.store.schema import migrate

PAIRS: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "event_pairs.yaml").read_text(encoding="utf-8")
)
HOUR = 3600.0
# The pairs the rule does not join, on purpose (see the module docstring).
KNOWN_MISSES = {
    ("frigate-contract-copy", "frigate-contract-trimmed"),
    ("patriot-delivery-copy", "patriot-delivery-trimmed"),
    ("s400-radar-copy", "s400-radar-trimmed"),
    ("f35-milestone-copy", "f35-milestone-edited"),
    ("s400-missile-wire", "s400-missile-snippet"),
    ("s400-missile-wire", "s400-missile-headline"),
}


def report(name: str) -> tuple[str, str]:
    """Title and body of a report of the labelled set, made the way its outlet made it."""
    spec = PAIRS["stories"][name]
    if "from" not in spec:
        return spec["title"], spec["body"].strip()
    _, body = report(spec["from"])
    paragraphs = body.split("\n\n")
    if "intro" in spec:
        paragraphs[0] = spec["intro"]
    paragraphs = paragraphs[: spec.get("keep", len(paragraphs))]
    text = "\n\n".join(paragraphs)
    for old, new in spec.get("edits", []):
        assert old in text, f"{name}: edit {old!r} finds nothing"
        text = text.replace(old, new)
    if "append" in spec:
        text += "\n\n" + spec["append"]
    return spec["title"], text


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Connection]:
    database = Connection.connect(tmp_path / "events.db")
    migrate(database.conn)
    yield database
    database.close()


def test_labelled_set_is_well_formed() -> None:
    stories, pairs = PAIRS["stories"], PAIRS["pairs"]
    assert len(pairs) >= 40
    seen = set()
    for pair in pairs:
        assert pair["a"] in stories and pair["b"] in stories, pair
        assert pair["kind"] in {"copy", "trimmed", "edited", "update", "short", "topic",
                                "unrelated"}  # fmt: skip
        same_event = stories[pair["a"]]["event"] == stories[pair["b"]]["event"]
        assert pair["same"] == same_event, pair
        key = frozenset((pair["a"], pair["b"]))
        assert key not in seen, f"pair listed twice: {pair}"
        seen.add(key)
    for name in stories:
        report(name)  # every edit applies
    kinds = {pair["kind"] for pair in pairs if not pair["same"]}
    assert {"topic", "short"} <= kinds


def pair_outcomes(db: Connection, reverse: bool) -> dict[tuple[str, str], bool]:
    """Each pair through the persistent index: the first report, then the second one
    an hour later; whether the second joined the first's event. Pairs are 10 windows
    apart in time, so each meets only its own partner."""
    index = EventIndex(EventStore(db))
    outcomes = {}
    for n, pair in enumerate(PAIRS["pairs"]):
        first, second = (pair["b"], pair["a"]) if reverse else (pair["a"], pair["b"])
        now = n * 10 * events.WINDOW
        with db.atomic():
            a = index.assign(2 * n + 1, *report(first), now)
            b = index.assign(2 * n + 2, *report(second), now + HOUR)
        assert a.is_new
        outcomes[pair["a"], pair["b"]] = b.event_id == a.event_id
    return outcomes


@pytest.mark.parametrize("reverse", [False, True], ids=["in order", "reversed"])
def test_pairs_precision_one_and_recall_stated(db: Connection, reverse: bool) -> None:
    outcomes = pair_outcomes(db, reverse)
    labels = {(p["a"], p["b"]): p["same"] for p in PAIRS["pairs"]}
    wrongly_joined = [pair for pair, joined in outcomes.items() if joined and not labels[pair]]
    missed = {pair for pair, joined in outcomes.items() if not joined and labels[pair]}
    assert wrongly_joined == []  # precision 1.0
    assert missed == KNOWN_MISSES
    same = sum(labels.values())
    assert (same - len(missed), same) == (20, 26)  # recall 0.77, as stated above


def test_stream_of_all_reports_keeps_events_apart(db: Connection) -> None:
    """Every report, in file order, an hour apart within one window: the first report
    of each event is there for the later ones to match."""
    stories = PAIRS["stories"]
    index = EventIndex(EventStore(db), window=events.WINDOW * 100)
    event_of = {
        name: index.assign(n + 1, *report(name), n * HOUR).event_id
        for n, name in enumerate(stories)
    }
    for a, b in itertools.combinations(stories, 2):
        if stories[a]["event"] != stories[b]["event"]:
            assert event_of[a] != event_of[b], (a, b)
    # Every report joined the first report of its event, but the short items (the
    # second headline-only copy joined the first one instead).
    first: dict[str, str] = {}
    for name, spec in stories.items():
        first.setdefault(spec["event"], name)
    apart = [name for name, spec in stories.items()
             if event_of[name] != event_of[first[spec["event"]]]]  # fmt: skip
    assert apart == ["s400-missile-snippet", "s400-missile-headline",
                     "s400-missile-headline-again", "s400-radar-headline"]  # fmt: skip
    assert event_of["s400-missile-headline-again"] == event_of["s400-missile-headline"]


def test_follow_up_written_by_editing_the_first_story_is_kept_apart_by_its_facts() -> None:
    """76 % of the text is shared; only the facts check tells them apart."""
    first = fingerprint(*report("s400-missile-wire"))
    follow_up = fingerprint(*report("s400-second-missile-recap"))
    sim = events.similarity(first.shingles, follow_up.shingles)
    assert sim.overlap >= events.MIN_OVERLAP and sim.jaccard >= events.MIN_JACCARD
    assert not events.facts_agree(follow_up, first)
    assert not events.facts_agree(first, follow_up)
    copy = fingerprint(*report("s400-missile-daily"))
    assert events.facts_agree(copy, first) and events.facts_agree(first, copy)


def test_marks_read_numbers_days_and_ordinals() -> None:
    words = events.tokens("The 1,000th F-16s flew on Friday, the second time in May 2026.")
    assert events.marks(words) == {"1", "000", "16", "friday", "second", "2026"}


def test_short_texts_join_only_an_identical_text_of_eight_words_or_more(
    db: Connection,
) -> None:
    index = EventIndex(EventStore(db))
    headline = "Turkey test-fires S-400 missile for the first time"
    assert index.assign(1, headline, "", 0).is_new
    again = index.assign(2, headline, "", HOUR)
    assert (again.event_id, again.is_new) == (1, False)
    # A different short headline, and a generic one of three words seen twice, alert.
    assert index.assign(3, "Turkey tests S-400 radar", "", HOUR).is_new
    assert index.assign(4, "Defence news roundup", "", HOUR).is_new
    assert index.assign(5, "Defence news roundup", "", 2 * HOUR).is_new
    # A headline never joins the full report it heads, nor the reverse.
    title, body = report("s400-missile-wire")
    assert index.assign(6, title, body, 2 * HOUR).is_new
    assert index.assign(7, title, "", 3 * HOUR).event_id != 6


def test_index_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = Connection.connect(path)
    migrate(first.conn)
    EventIndex(EventStore(first)).assign(10, *report("s400-missile-wire"), 0)
    first.close()
    reopened = Connection.connect(path)
    migrate(reopened.conn)  # idempotent
    verdict = EventIndex(EventStore(reopened)).assign(11, *report("s400-missile-daily"), HOUR)
    assert (verdict.event_id, verdict.is_new, verdict.matched_story_id) == (10, False, 10)
    reopened.close()


def test_window_and_pruning(db: Connection) -> None:
    store = EventStore(db)
    index = EventIndex(store, window=48 * HOUR)
    index.assign(1, *report("s400-missile-wire"), 0)
    index.assign(2, *report("s400-missile-daily"), 40 * HOUR)
    late = index.assign(3, *report("s400-missile-edited"), 80 * HOUR)
    # The first report is out of its window, the second is not: it joins the event.
    assert (late.event_id, late.matched_story_id) == (1, 2)
    # A copy arriving after the window of every earlier report starts a new event.
    assert index.assign(4, *report("s400-missile-trimmed"), 200 * HOUR).is_new
    bands = db.execute("SELECT count(*) FROM event_bands").fetchone()[0]
    assert bands == 4 * events.BANDS

    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT story_id FROM event_stories "
        "WHERE seen_at < ? AND signature IS NOT NULL LIMIT 10",
        [0],
    ).fetchall()
    assert "event_stories_indexed" in str(plan)
    with db.atomic():
        assert index.prune(200 * HOUR, limit=2) == 3  # in two rounds
    assert db.execute("SELECT count(*) FROM event_bands").fetchone()[0] == events.BANDS
    assert index.prune(200 * HOUR) == 0
    # Membership stays after the fingerprints go.
    assert [r.story_id for r in store.reports(1)] == [1, 2, 3]
    assert store.event_of(3) == 1
    summaries = store.events_since(100 * HOUR)
    assert [(s.event_id, s.reports) for s in summaries] == [(4, 1)]
    assert [(s.event_id, s.reports) for s in store.events_since(0)] == [(4, 1), (1, 3)]


def test_assign_is_idempotent(db: Connection) -> None:
    index = EventIndex(EventStore(db))
    index.assign(1, *report("frigate-contract-wire"), 0)
    copy = report("frigate-contract-copy")
    assert index.assign(2, *copy, HOUR).event_id == 1
    again = index.assign(2, *copy, 2 * HOUR)
    assert (again.event_id, again.is_new) == (1, False)
    assert db.execute("SELECT count(*) FROM event_stories").fetchone()[0] == 2


def test_assign_writes_within_the_callers_transaction(db: Connection) -> None:
    """A poll whose transaction rolls back leaves no trace in the event tables."""
    index = EventIndex(EventStore(db))
    with pytest.raises(RuntimeError), db.atomic():
        index.assign(1, *report("f35-milestone-wire"), 0)
        raise RuntimeError("the poll's save failed")
    assert db.execute("SELECT count(*) FROM event_stories").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM event_bands").fetchone()[0] == 0


def test_sqlite_errors_become_store_errors_with_their_cause(tmp_path: Path) -> None:
    unmigrated = Connection.connect(tmp_path / "empty.db")
    with pytest.raises(StoreError, match="cannot read events") as caught:
        EventIndex(EventStore(unmigrated)).assign(1, "title", "body", 0)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)


def datasketch_minhash(signature: events.Signature) -> MinHash:
    values = np.array(signature, dtype=np.uint32)
    return MinHash(num_perm=events.NUM_PERM, hashvalues=values, scheme="affine32")


def test_signatures_are_datasketchs_minhash_with_the_same_permutations() -> None:
    """The plain-Python MinHash is datasketch's ``affine32`` MinHash (premix, then
    a·h + b mod 2³²), value for value, on every labelled report and on edge cases."""
    a, b = zip(*events.permutations(), strict=True)
    perms = (np.array(a, dtype=np.uint32), np.array(b, dtype=np.uint32))
    texts = [report(name) for name in PAIRS["stories"]]
    texts += [("", ""), ("one", ""), ("S-400", "Ankara " * 500)]
    for title, body in texts:
        hashes = events.shingles(events.tokens(f"{title}\n{body}"))
        reference = MinHash(num_perm=events.NUM_PERM, hashfunc=int, scheme="affine32",
                            permutations=perms)  # fmt: skip
        reference.update_batch(sorted(hashes))
        assert events.signature(hashes) == tuple(int(v) for v in reference.hashvalues), title
    assert len(set(a)) == events.NUM_PERM and all(value % 2 for value in a)


def test_band_index_finds_what_datasketch_lsh_finds(db: Connection) -> None:
    """The persistent bands are datasketch's banding: for each report, the candidates
    from SQLite are the keys MinHashLSH (same 42 × 3 parameters) returns."""
    store = EventStore(db)
    lsh = MinHashLSH(num_perm=events.NUM_PERM, params=(events.BANDS, events.ROWS))
    names = list(PAIRS["stories"])
    prints = {n + 1: fingerprint(*report(name)) for n, name in enumerate(names)}
    for story_id, fp in prints.items():
        store.add(story_id, story_id, 0, fp)
        if fp.indexable:
            minhash = datasketch_minhash(fp.signature)
            lsh.insert(story_id, minhash)
    shared_any = 0
    for story_id, fp in prints.items():
        if not fp.indexable:
            continue
        ours = {c.story_id for c in store.candidates(fp.bands, since=0)}
        minhash = datasketch_minhash(fp.signature)
        assert ours == set(lsh.query(minhash)), story_id
        shared_any += len(ours) > 1
    assert shared_any >= 10  # the comparison is not empty


def test_fingerprint_is_the_same_in_another_process() -> None:
    """Signatures are stored: the same text must give the same bytes in every process
    (no per-process hash seed in the shingles, fixed permutations)."""
    code = (
        "from monitor.events import fingerprint; "
        "print(fingerprint('Turkey test-fires S-400', 'Ankara said a missile hit a drone.')"
        ".signature)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    ours = fingerprint("Turkey test-fires S-400", "Ankara said a missile hit a drone.")
    assert other.stdout.strip() == str(ours.signature)
    assert len(ours.signature) == events.NUM_PERM
    assert all(0 <= value < 2**32 for value in ours.signature)


def test_decide_joins_the_most_similar_report_then_the_earliest() -> None:
    new = fingerprint(*report("s400-missile-update"))

    def candidate(name: str, story_id: int, seen_at: float) -> events.Candidate:
        fp = fingerprint(*report(name))
        return events.Candidate(story_id, story_id * 10, seen_at, fp.shingles, fp.marks,
                                fp.lead_marks, fp.words)  # fmt: skip

    daily, wire, wire_earlier = (candidate("s400-missile-daily", 1, 0),
                                 candidate("s400-missile-wire", 2, 5),
                                 candidate("s400-missile-wire", 3, 4))  # fmt: skip
    verdict = events.decide(99, new, [daily, wire, wire_earlier])
    assert (verdict.event_id, verdict.matched_story_id, verdict.is_new) == (30, 3, False)
    assert events.decide(99, new, [daily]).event_id == 10
    assert events.decide(99, new, []) == events.Verdict(99, is_new=True)


def test_look_alike_items_bound_the_candidates_a_story_is_compared_with(
    db: Connection,
) -> None:
    # A feed of one template with a changing number: every item shares bands with every
    # other. A new story is compared with at most MAX_CANDIDATES of them, its copy among
    # them (the copy shares the most bands).
    from monitor.store.events import MAX_CANDIDATES

    store = EventStore(db)
    index = EventIndex(store)
    template = (
        "The regiment said the move was routine and part of exercises planned for the season, "
        "officials told reporters at the base on the coast. Unit number {n} took part."
    )
    for n in range(200):
        index.assign(n + 1, f"Battery {n} moved to the border", template.format(n=n), n)
    title, body = report("s400-missile-wire")
    index.assign(1000, title, body, 300)
    copy_title, copy_body = report("s400-missile-daily")
    new = fingerprint(copy_title, copy_body)
    found = store.candidates(new.bands, since=0)
    assert len(found) <= MAX_CANDIDATES and 1000 in {c.story_id for c in found}
    look_alike = fingerprint("Battery 500 moved to the border", template.format(n=500))
    assert len(store.candidates(look_alike.bands, since=0)) == MAX_CANDIDATES


def test_a_huge_story_is_fingerprinted_by_its_beginning() -> None:
    # All of an 18 MB story took seconds of the event loop; its beginning tells a copy.
    body = "Ankara said the S-400 battery fired at a drone over Sinop. " * 300_000
    huge = fingerprint("Turkey test-fires S-400", body)
    same_start = fingerprint("Turkey test-fires S-400", body[: events.MAX_TEXT])
    assert huge.signature == same_start.signature and huge.words == same_start.words
