"""Events: deciding that a new story is another report of an event already seen.

An event is one piece of reporting that reaches us several times: a wire report
republished by other outlets under their own headlines and intros, trimmed, or lightly
edited. Two different events on the same topic (a radar test on Tuesday, a missile test
on Friday) share vocabulary and background paragraphs, and must stay apart: a wrong
grouping costs a missed story, a missed grouping only one extra alert. So the rule is
conservative, and this module owns it:

1. **Fingerprint** (pure). Title and body are normalised (NFKC, case-folded, words only)
   and cut into word 4-shingles, each hashed to 32 bits. A MinHash signature of 128
   permutations (the ``affine32`` scheme of datasketch 2: each hash is mixed by the
   MurmurHash3 finalizer, then mapped by ``a·h + b mod 2³²`` with ``a`` odd) is cut into
   42 bands of 3 rows; each band hashes to one 64-bit key. The signature is computed
   here with numpy (60 µs for a 200-word story), imported on the first fingerprint
   only: datasketch would add scipy, 113 MB installed and half a second of imports, for
   these few lines; tests/test_events.py checks the result against datasketch's own
   MinHash, value for value.
2. **Candidates** (I/O, ``events_store``): the stories seen within the window that share
   at least one band key. With 42 bands of 3 rows, a pair of Jaccard similarity J
   becomes a candidate with probability 1 - (1 - J³)⁴²: 0.996 at J = 0.5, 0.94 at 0.4,
   0.68 at 0.3 (the lowest the verdict accepts), 0.04 at 0.1 and 4e-5 at 0.01 (unrelated
   news that shares a stock phrase or two: some 40 candidates per million such stories,
   each checked exactly in microseconds).
   More bands of fewer rows (64 × 2) would find nearly every pair at 0.3 but make 1 in
   150 unrelated stories a candidate; fewer of more rows (32 × 4) miss 13 % at 0.5.
3. **Verdict** (pure, exact, on the stored shingles): a candidate is the same event when
   the shorter text shares at least ``MIN_OVERLAP`` of its shingles with the longer one,
   the two share at least ``MIN_SHARED`` shingles (a run of about 20 identical words),
   their Jaccard similarity is at least ``MIN_JACCARD``, and their facts agree
   (``facts_agree``: the numbers, days, months and ordinals of the shorter text all
   appear in the longer one, and neither lead names a day or ordinal the other
   contradicts: "Tuesday" against "Friday", "second missile" against "first").
   Texts of fewer than ``SHORT`` shingles (a headline with little or no body) join only
   an identical text of at least ``MIN_EXACT_TOKENS`` words: a headline alone cannot
   tell a new event from an old one, so it alerts.

Why these numbers: on the labelled pairs, with the facts check off, word 2- and
3-shingles let different events on one topic reach Jaccard 0.30-0.35 (the range of real
copies), because shared phrases of the topic ("the S-400 air defence system") look like
copied text; 4-shingles keep them at 0.28 or below while copies stay at 0.35 or above,
and find as many copies as 5- and 6-shingles (which lose more to light editing: one
changed word kills k shingles). The facts check is what keeps apart a follow-up written
by editing the first story (76 % of its text shared). The thresholds are pinned by
``tests/data/event_pairs.yaml`` (precision 1.0 asserted; recall stated in
``tests/test_events.py``).

``EventIndex`` is the one class with I/O: it asks an ``EventStore`` for candidates and
records the verdict.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import struct
import unicodedata
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from msgspec import Struct

if TYPE_CHECKING:
    from monitor.store.events import EventStore

SHINGLE_WORDS = 4  # words per shingle
NUM_PERM = 128  # MinHash permutations: the signature is 512 bytes
BANDS = 42  # LSH bands of ROWS rows each (126 of the 128 values are banded)
ROWS = 3
SEED = 1  # of the permutations; changing it (or the three above) needs a re-index
MIN_OVERLAP = 0.6  # of the shorter text's shingles found in the longer one
MIN_JACCARD = 0.3  # of the two shingle sets
MIN_SHARED = 17  # shingles in common: about 20 identical words in a row
SHORT = 20  # fewer shingles than this (about 23 words): a short text
LEAD_WORDS = 60  # the headline and first sentences: where a report states its news
MIN_EXACT_TOKENS = 8  # a short text joins only an identical one at least this long
WINDOW = 48 * 3600.0  # seconds: a report joins events seen this recently
MAX_TEXT = 60_000  # characters of a story's body fingerprinted: some 10,000 words

Shingles = frozenset[int]  # 32-bit hashes of the text's shingles
Signature = tuple[int, ...]  # NUM_PERM 32-bit minimums

_MASK32 = 0xFFFFFFFF

_WORD_RE = re.compile(r"\w+")
_DAYS = frozenset(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
# Not "may": far more often the verb than the month.
_MONTHS = frozenset((
    "january", "february", "march", "april", "june", "july", "august", "september",
    "october", "november", "december",
))  # fmt: skip
# Ordinals name a different fact when they differ ("second batch", "fourth frigate").
_ORDINALS = frozenset(
    ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
)
_DIGITS_RE = re.compile(r"\d+")


def tokens(text: str) -> list[str]:
    """The words of ``text``: NFKC-normalised, case-folded, punctuation dropped."""
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).casefold())


def marks(words: Sequence[str]) -> frozenset[str]:
    """The words that pin a report to one occasion: numbers (``16s`` and ``1,000th``
    count as 16 and 1 000), day and month names, ordinals."""
    found = set()
    for word in words:
        digits = _DIGITS_RE.match(word)
        if digits:
            found.add(digits.group())
        elif word in _DAYS or word in _MONTHS or word in _ORDINALS:
            found.add(word)
    return frozenset(found)


def shingles(words: Sequence[str]) -> Shingles:
    """Hashes of every run of ``SHINGLE_WORDS`` words (of the whole text, if shorter)."""
    if not words:
        return frozenset()
    k = min(SHINGLE_WORDS, len(words))
    runs = (" ".join(words[i : i + k]) for i in range(len(words) - k + 1))
    return frozenset(zlib.crc32(run.encode()) for run in runs)


def permutations(seed: int = SEED, count: int = NUM_PERM) -> tuple[tuple[int, int], ...]:
    """The (a, b) of each permutation ``h -> a·h + b mod 2³²``, ``a`` odd: fixed by the
    seed (``random.Random`` is the same generator on every platform and version)."""
    rng = random.Random(seed)
    return tuple((rng.getrandbits(31) * 2 + 1, rng.getrandbits(32)) for _ in range(count))


_PERMUTATIONS = permutations()


@functools.cache
def _permutation_arrays() -> tuple[Any, Any]:
    """``_PERMUTATIONS`` as two uint32 column vectors (numpy is imported here, on the
    first fingerprint: most runs never need it)."""
    import numpy as np

    a, b = zip(*_PERMUTATIONS, strict=True)
    return np.array(a, dtype=np.uint32)[:, None], np.array(b, dtype=np.uint32)[:, None]


def signature(hashes: Shingles) -> Signature:
    """The MinHash signature of a shingle set (all maximal when the set is empty)."""
    if not hashes:
        return (_MASK32,) * NUM_PERM
    import numpy as np

    a, b = _permutation_arrays()
    h = np.fromiter(hashes, dtype=np.uint32, count=len(hashes))
    # MurmurHash3's finalizer first, which spreads crc32's structure over all 32 bits;
    # uint32 arithmetic wraps, which is the modulo 2³² wanted.
    h ^= h >> 16
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> 13
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> 16
    return tuple((a * h + b).min(axis=1).tolist())


def pack(values: Sequence[int] | Shingles) -> bytes:
    """32-bit values as little-endian bytes (how signatures and shingles are stored);
    a set is packed in ascending order."""
    ordered = sorted(values) if isinstance(values, frozenset) else values
    return struct.pack(f"<{len(ordered)}I", *ordered)


def unpack(blob: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(blob) // 4}I", blob)


def band_keys(sig: Signature) -> list[int]:
    """One signed 64-bit key per band (SQLite's INTEGER), the band's number included."""
    raw = pack(sig)
    width = ROWS * 4
    return [
        int.from_bytes(
            hashlib.blake2b(raw[band * width : (band + 1) * width], digest_size=8,
                            salt=band.to_bytes(16, "little")).digest(),
            "little", signed=True,
        )
        for band in range(BANDS)
    ]  # fmt: skip


class Fingerprint(Struct, frozen=True):
    """What is kept of a story to recognise later reports of its event."""

    shingles: Shingles
    signature: Signature
    marks: frozenset[str]
    lead_marks: frozenset[str]  # the marks of its first LEAD_WORDS words
    words: int  # how many words the text has
    bands: list[int]  # band_keys(signature)

    @property
    def indexable(self) -> bool:
        """Whether any later report could join it (a text of a few words cannot)."""
        return self.words >= MIN_EXACT_TOKENS


def fingerprint(title: str, body: str) -> Fingerprint:
    """The fingerprint of a story's title and body text (plain text, not markup): of its
    first ``MAX_TEXT`` characters, which tell a copy as well as the whole does, and keep
    a 15 MB story from holding the event loop for seconds."""
    words = tokens(f"{title}\n{body[:MAX_TEXT]}")
    hashes = shingles(words)
    sig = signature(hashes)
    return Fingerprint(hashes, sig, marks(words), marks(words[:LEAD_WORDS]), len(words),
                       band_keys(sig))  # fmt: skip


class Candidate(Struct, frozen=True):
    """A recent story that shares a band with the new one."""

    story_id: int
    event_id: int
    seen_at: float
    shingles: Shingles
    marks: frozenset[str]
    lead_marks: frozenset[str]
    words: int


class Similarity(Struct, frozen=True):
    shared: int  # shingles in common
    overlap: float  # shared / the shorter text's shingles
    jaccard: float


def similarity(a: Shingles, b: Shingles) -> Similarity:
    shared = len(a & b)
    smaller = min(len(a), len(b))
    union = len(a) + len(b) - shared
    return Similarity(
        shared, shared / smaller if smaller else 0.0, shared / union if union else 0.0
    )


def _lead_conflicts(lead: frozenset[str], other: frozenset[str]) -> bool:
    """Whether a lead names a day (or an ordinal) where the other report names others."""
    return any(
        (lead & kind) - other and other & kind for kind in (_DAYS, _ORDINALS)
    )  # fmt: skip


def facts_agree(new: Fingerprint | Candidate, old: Fingerprint | Candidate) -> bool:
    """Whether two reports can be of one occasion.

    The shorter one states no number, day, month or ordinal that the longer one lacks (a
    copy may drop facts, it does not add any), and neither one's lead names a day or an
    ordinal where the other names only others (a follow-up states its new facts first:
    "a second missile on Saturday", however much of the first story it repeats)."""
    shorter, longer = (new, old) if len(new.shingles) <= len(old.shingles) else (old, new)
    return (
        shorter.marks <= longer.marks
        and not _lead_conflicts(new.lead_marks, old.marks)
        and not _lead_conflicts(old.lead_marks, new.marks)
    )


def same_event(new: Fingerprint, old: Candidate) -> Similarity | None:
    """The similarity of two reports judged to be of one event, else None."""
    sim = similarity(new.shingles, old.shingles)
    if min(len(new.shingles), len(old.shingles)) < SHORT:
        # A headline alone, or nearly: only the very same words, long enough to be specific.
        identical = sim.jaccard == 1.0 and new.words == old.words >= MIN_EXACT_TOKENS
        return sim if identical else None
    if sim.overlap < MIN_OVERLAP or sim.jaccard < MIN_JACCARD or sim.shared < MIN_SHARED:
        return None
    return sim if facts_agree(new, old) else None


class Verdict(Struct, frozen=True):
    """The event a new story joins (``matched_story_id`` None: it starts one)."""

    event_id: int
    is_new: bool
    matched_story_id: int | None = None
    similarity: Similarity | None = None


def decide(story_id: int, new: Fingerprint, candidates: Sequence[Candidate]) -> Verdict:
    """Join the event of the most similar candidate judged the same event (the earliest
    on a tie), or start a new event named after this story."""
    best: tuple[Candidate, Similarity] | None = None
    for candidate in candidates:
        if candidate.story_id == story_id:
            continue
        sim = same_event(new, candidate)
        if sim is None:
            continue
        if best is None or (sim.jaccard, -candidate.seen_at) > (best[1].jaccard, -best[0].seen_at):
            best = (candidate, sim)
    if best is None:
        return Verdict(story_id, is_new=True)
    return Verdict(best[0].event_id, is_new=False, matched_story_id=best[0].story_id,
                   similarity=best[1])  # fmt: skip


class EventIndex:
    """Assigns each new story to an event, through a persistent ``EventStore``."""

    def __init__(self, store: EventStore, window: float = WINDOW) -> None:
        self.store = store
        self.window = window

    def assign(self, story_id: int, title: str, body: str, now: float) -> Verdict:
        """The event of story ``story_id`` (already assigned: the same answer again).

        Call it once per new story, in the order stories are stored, inside the poll's
        transaction if there is one (it writes within a savepoint)."""
        known = self.store.event_of(story_id)
        if known is not None:
            return Verdict(known, is_new=known == story_id)
        new = fingerprint(title, body)
        candidates = (
            self.store.candidates(new.bands, since=now - self.window) if new.indexable else []
        )
        verdict = decide(story_id, new, candidates)
        self.store.add(story_id, verdict.event_id, now, new)
        return verdict

    def prune(self, now: float, limit: int = 10_000) -> int:
        """Forget the fingerprints of stories older than the window (membership stays),
        ``limit`` stories a savepoint; returns how many."""
        total = 0
        while True:
            done = self.store.forget_fingerprints(before=now - self.window, limit=limit)
            total += done
            if done < limit:
                return total


def follow_up_text(reports: Sequence[tuple[str, str, str | None]]) -> tuple[str, str]:
    """The follow-up message's title and plain body for an event's reports, each
    (outlet, title, link), first report first."""
    outlets = list(dict.fromkeys(outlet for outlet, _, _ in reports))
    first_title = reports[0][1]
    lines = [f"{len(outlets)} outlets now report: {first_title}", ""]
    lines += [f"- {outlet}: {title}" + (f"\n  {link}" if link else "")
              for outlet, title, link in reports]  # fmt: skip
    return f"[feed-monitor] {len(outlets)} outlets: {first_title}", "\n".join(lines)
