"""Robustness: feedparser's own 2,100 odd test feeds (in ../shared) never crash the parser.

Each must either parse, with entries that the matcher can read, or be refused with a
``ParseError`` naming the problem; no other exception, and none slow.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.config import Watchlist
from monitor.errors import ParseError
from monitor.match import Matcher
from monitor.parse import parse_feed

NOW = 1_790_000_000.0
CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "feedparser-tests"


@pytest.mark.skipif(
    not CORPUS.is_dir(), reason="the shared feedparser corpus is not beside the repo"
)
def test_every_corpus_feed_parses_or_is_refused_cleanly() -> None:
    matcher = Matcher([Watchlist(name="w", keywords=["S-400", "CAATSA", "F-35"])])
    files = [path for path in CORPUS.rglob("*") if path.is_file()]
    parsed = refused = 0
    for path in files:
        started = time.thread_time()  # CPU time, which other work on the machine leaves alone
        try:
            feed = parse_feed(path.read_bytes(), url="https://example.org/feed")
        except ParseError as exc:
            assert str(exc), path
            refused += 1
        else:
            for entry in feed.entries:
                matcher.match(entry)
                assert entry.link is None or entry.link.lower().startswith(("http://", "https://"))
            parsed += 1
        assert time.thread_time() - started < 2, f"{path} took too long"
    assert len(files) > 2000
    assert parsed > 1500 and parsed + refused == len(files)


def test_the_workers_speed_ups_parse_every_corpus_file_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parser workers let expat buffer text (``buffer_character_data``) and have
    feedparser copy text parameters shallowly (``copy_content_params_shallowly``), and
    every parse takes expat without looking for libxml2 (``parse_with_expat_only``):
    the same entries, titles and texts as feedparser as it comes, for every file of
    both corpora; and feedparser's own result, every ``*_detail`` included, is the same
    too."""
    import copy
    import io
    import xml.sax.expatreader

    import feedparser
    import feedparser.api
    import feedparser.mixin

    from monitor.parse import (
        buffer_character_data,
        copy_content_params_shallowly,
        parse_with_expat_only,
    )

    roots = [CORPUS, CORPUS.parent / "realworld"]
    files = [path for root in roots if root.is_dir() for path in sorted(root.rglob("*"))
             if path.is_file()]  # fmt: skip
    if not files:
        pytest.skip("../shared/corpora is not here")

    def parse_all() -> list[str]:
        results = []
        for path in files:
            try:
                parsed = parse_feed(path.read_bytes(), url="https://example.org/feed", now=NOW)
                results.append(repr(parsed))
            except ParseError as exc:
                results.append(f"ParseError: {exc}")
        return results

    def feedparser_all() -> list[object]:
        return [
            feedparser.parse(io.BytesIO(path.read_bytes()), sanitize_html=False,
                             resolve_relative_uris=False).get("entries")
            for path in files
        ]  # fmt: skip

    # feedparser as it comes first (parse_feed would set it again).
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", ["drv_libxml2"])
    plain_raw = feedparser_all()
    parse_with_expat_only()
    parse_with_expat_only()  # idempotent
    assert feedparser.api.PREFERRED_XML_PARSERS == []
    assert feedparser_all() == plain_raw
    plain = parse_all()
    # Restored after the test: these patches are meant for worker processes alone.
    expat = xml.sax.expatreader.ExpatParser
    monkeypatch.setattr(expat, "reset", expat.reset)
    monkeypatch.setattr(feedparser.mixin, "copy", feedparser.mixin.copy)
    for _ in range(2):  # idempotent
        buffer_character_data()
        copy_content_params_shallowly()
    assert feedparser.mixin.copy is not copy
    assert parse_all() == plain
    assert feedparser_all() == plain_raw
