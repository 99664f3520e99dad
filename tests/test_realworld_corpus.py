"""Real feeds captured from the wild (../shared/corpora/realworld, see its README) through
the whole pipeline, compared with plain feedparser on the same bytes (issue 12).

Every file is served by a local feed server and polled by one `once` run in process,
into a real SQLite file, with alerts sent to a real Apprise json:// receiver. Then, per
feed: every entry feedparser sees is stored; titles, links and dates are what
feedparser read (as plain text); no text gains mojibake feedparser did not have; distinct
guids stay distinct stories; and every alert that arrives is clean text.

feedparser does not read JSON Feed, so for those files the comparison is with the JSON
itself: every item is stored as a story of its own (monitor/parse.py reads them; the
field mapping is tested in test_jsonfeed.py). The files are read from ../shared, never
copied here.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import re
import sqlite3
import unicodedata
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.identity import shared_links, source_keys
from monitor.parse import parse_feed, safe_link, sane_timestamp
from monitor.text import html_to_text
from tests.servers import AlertSink, FeedServer

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "realworld"
# Under pytest-xdist, in one group with the kill -9 test (test_crash_safety.py), whose
# daemons must do some work between their start and a random kill: this test keeps both
# cores busy, so the two never run at the same time.
pytestmark = pytest.mark.xdist_group("heavy")

# Served as generic XML, so the document's own encoding declaration decides, for the
# pipeline and for plain feedparser alike.
CONTENT_TYPE = "application/xml"
KEYWORDS = ["NATO", "Google", "Linux", "police", "Obama", "London", "Paris", "EU", "Apple"]
# Text that was double-encoded UTF-8 ("Ã©", "â€™"), or undecodable (U+FFFD).
_MOJIBAKE_RE = re.compile("[\u00c3\u00c2][\u0080-\u00bf]|\u00e2\u20ac|\ufffd")
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    name: str  # relative to the corpus, as in the manifest
    format: str


def corpus_files() -> list[CorpusFile]:
    with (CORPUS / "manifest.tsv").open(encoding="utf-8", newline="") as manifest:
        rows = list(csv.DictReader(manifest, delimiter="\t"))
    return [CorpusFile(CORPUS / r["local_file"], r["local_file"], r["format_guess"]) for r in rows]


def is_json_feed(file: CorpusFile) -> bool:
    """The listed exception: JSON Feed is not read yet (feedparser 6 does not read it)."""
    return file.format.startswith("jsonfeed")


@dataclass(frozen=True)
class Expected:
    """One entry as plain feedparser reads it, in the form the store keeps it."""

    key: str  # the identity key the pipeline gives it (monitor.identity)
    guid: str | None
    title: str  # feedparser's title, as plain text
    link: str | None  # feedparser's link, resolved against the feed's address
    published: float | None  # feedparser's date (absurd ones count as none)
    title_mojibake: int  # mojibake already in feedparser's text
    summary_mojibake: int


def expected_entries(path: str, url: str, polled_at: float) -> list[Expected] | str:
    """What plain feedparser (all defaults) reads in a file, or why the counts disagree.
    Runs in a worker process."""
    body = Path(path).read_bytes()
    plain = feedparser.parse(io.BytesIO(body), response_headers={"content-type": CONTENT_TYPE})
    ours = parse_feed(body, url=url, content_type=CONTENT_TYPE, now=polled_at).entries
    if len(ours) != len(plain.entries):
        return f"{len(ours)} entries, feedparser {len(plain.entries)}"
    shared = shared_links(ours)
    out = []
    for raw, entry in zip(plain.entries, ours, strict=True):
        guid = raw.get("id")
        href = raw.get("link")
        out.append(
            Expected(
                key=source_keys(entry, shared).entry_key,
                guid=guid.strip() if isinstance(guid, str) and guid.strip() else None,
                title=html_to_text(raw.get("title", "")),
                link=safe_link(urljoin(url, href.strip()))
                if isinstance(href, str) and href
                else None,
                published=sane_timestamp(
                    raw.get("published_parsed") or raw.get("updated_parsed"), polled_at
                ),
                title_mojibake=mojibake(fold(raw.get("title", ""))),
                summary_mojibake=mojibake(html_to_text(raw.get("summary", ""))),
            )
        )
    return out


def mojibake(text: str) -> int:
    return len(_MOJIBAKE_RE.findall(text))


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@pytest.mark.skipif(
    not CORPUS.is_dir(), reason="the shared real-world corpus is not beside the repo"
)
def test_real_world_feeds_through_the_whole_pipeline(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    files = corpus_files()
    assert len(files) >= 240
    urls = {}
    for index, file in enumerate(files):
        urls[file.name] = feeds.serve(
            f"/{index}", file.path.read_bytes(), content_type=CONTENT_TYPE
        )
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "database: monitor.db\n"
        "defaults: {interval: 1h, timeout: 30s, max_age: 3650d, jitter: 0.1s, full_text: never}\n"
        "feeds:\n" + "".join(f"  - url: {urls[f.name]}\n" for f in files)
        + "watchlists:\n  - name: realworld\n"
        f"    keywords: [{', '.join(KEYWORDS)}]\n"
        f'notify:\n  - "{sink.url}"\n',
        encoding="utf-8",
    )  # fmt: skip
    result = CliRunner().invoke(cli, ["once", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    outcomes = {outcome["url"]: outcome for outcome in report["feeds"]}

    db = sqlite3.connect(tmp_path / "monitor.db")
    feed_ids = dict(db.execute("SELECT url, id FROM feeds").fetchall())
    sources: dict[int, dict[str, int]] = defaultdict(dict)  # feed → entry key → story
    for feed_id, key, story_id in db.execute(
        "SELECT feed_id, entry_key, story_id FROM story_sources"
    ):
        sources[feed_id][key] = story_id
    stories = {
        (feed_id, key): (title, link, published, summary)
        for feed_id, key, title, link, published, summary in db.execute(
            "SELECT feed_id, key, title, link, published, summary FROM stories"
        )
    }
    polled_at = db.execute("SELECT min(last_polled_at) FROM feeds").fetchone()[0]
    # What plain feedparser reads in each file, on both cores.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        wanted = [f for f in files if not is_json_feed(f)]
        paths, feed_urls = [str(f.path) for f in wanted], [urls[f.name] for f in wanted]
        found = pool.map(expected_entries, paths, feed_urls, [polled_at] * len(wanted))
        expectations = dict(zip((f.name for f in wanted), found, strict=True))

    problems: list[str] = []
    stored_titles: set[str] = set()
    for file in files:
        url, outcome = urls[file.name], outcomes[urls[file.name]]
        if is_json_feed(file):
            items = json.loads(file.path.read_bytes()).get("items", [])
            stored = len(set(sources[feed_ids[url]].values())) if outcome["ok"] else 0
            if stored != sum(isinstance(item, dict) for item in items):
                problems.append(f"{file.name}: {stored} stories from {len(items)} items")
            continue
        if not outcome["ok"]:
            problems.append(f"{file.name}: poll failed: {outcome['error']}")
            continue
        expected = expectations[file.name]
        if isinstance(expected, str):
            problems.append(f"{file.name}: {expected}")
            continue
        feed_id = feed_ids[url]
        guid_stories: dict[str, int] = {}
        compared = set()
        for want in expected:
            story_id = sources[feed_id].get(want.key)
            if story_id is None:
                problems.append(f"{file.name}: entry {want.key[:60]!r} was not stored")
                continue
            if want.guid:
                guid_stories[want.guid] = story_id
            if (feed_id, want.key) not in stories or want.key in compared:
                continue  # a copy of a story an earlier entry or another feed created
            compared.add(want.key)
            title, link, published, summary = stories[(feed_id, want.key)]
            stored_titles.add(title)
            if title != want.title:
                problems.append(f"{file.name}: title {title!r}, feedparser {want.title!r}")
            if mojibake(title) > want.title_mojibake or mojibake(summary) > want.summary_mojibake:
                problems.append(f"{file.name}: mojibake in {title!r} or its summary")
            if link != want.link:
                problems.append(f"{file.name}: link {link!r}, feedparser {want.link!r}")
            if published != want.published:
                problems.append(f"{file.name}: date {published}, feedparser {want.published}")
        merged = len(guid_stories) - len(set(guid_stories.values()))
        if merged:
            problems.append(f"{file.name}: {merged} distinct guids merged into other stories")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])

    # Alerts: every delivery arrived (one alert, or a burst summary) as clean text.
    alerted = sink.wait_for(report["sent"], timeout=60)
    assert report["alerts_queued"] > 50 and report["failed_deliveries"] == 0
    assert report["sent"] == len(alerted)
    summaries = [a for a in alerted if re.match(r"\[realworld\] \d+ matching stories", a["title"])]
    singles = [a for a in alerted if a not in summaries]
    assert singles and summaries
    for alert in alerted:
        text = alert["title"] + "\n" + alert["message"]
        assert not _CONTROL_RE.search(text), text[:300]
        assert "<p>" not in text and "&lt;" not in text and "&amp;" not in text, text[:300]
    stored_titles |= {title for title, *_ in stories.values()}  # JSON Feed's too
    for alert in singles:
        title = alert["title"].removeprefix("[realworld] ")
        assert any(stored.startswith(title.rstrip("…")) for stored in stored_titles), title
