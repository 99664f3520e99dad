"""JSON Feed 1.0 and 1.1 are read like RSS and Atom (issue 12, "Formats and sources").

Every rule of the RSS path holds for them: plain text, http(s)-only links resolved
against the feed's URL, sane dates, the same identity keys; a broken JSON Feed is a
``ParseError`` on that feed alone. Real captures from ../shared are read too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.errors import ParseError
from monitor.parse import parse_feed
from tests.helpers import rss, seed_article_item, write_config
from tests.servers import AlertSink, FeedServer

NOW = 1_790_000_000.0  # a fixed "now" in 2026
REALWORLD = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "realworld"
V11 = "https://jsonfeed.org/version/1.1"


def json_feed(items: list[dict[str, Any]], version: str = V11, **feed: Any) -> bytes:
    document = {"version": version, "title": "Desk &amp; Co", **feed, "items": items}
    return json.dumps(document, ensure_ascii=False).encode()


def test_items_become_plain_text_entries_with_safe_resolved_links() -> None:
    body = json_feed(
        [
            {
                "id": "tag:desk,2026:1",
                "url": "/2026/s400",  # relative: resolved against the feed's URL
                "title": "S-400 &amp; <b>Turkey</b>",
                "content_html": "<p>First&nbsp;para</p><p>Second <script>x()</script>para</p>",
                "summary": "Short\n  summary",
                "date_published": "2026-09-01T12:00:00+02:00",
                "authors": [{"name": "Ann"}, {"name": "Bob"}, {"url": "https://no.name/"}],
            },
            {
                "id": 19317,  # a number is coerced to a string
                "url": "javascript:alert(1)",  # never a link; external_url is the fallback
                "external_url": "https://elsewhere.example/story",
                "title": "Numbered",
                "content_text": "a <plain> text   body",
                "date_modified": "2026-09-02 08:00:00",  # no offset: UTC
            },
            {
                "id": True,
                "title": "no usable id, no link",
                "date_published": "1600-01-01T00:00:00Z",
            },
            {"id": "future", "url": "file:///etc/passwd", "date_published": "2099-01-01T00:00:00Z"},
            "not an object",
            ["nor", "this"],
        ],
        author={"name": "Desk Editor"},  # 1.0's feed-level author, for items without one
    )
    parsed = parse_feed(body, url="https://news.example/feeds/all.json", now=NOW)
    assert parsed.title == "Desk & Co"
    first, second, third, fourth = parsed.entries
    assert first.key == "id:tag:desk,2026:1"
    assert first.title == "S-400 & Turkey"
    assert first.link == "https://news.example/2026/s400"
    assert first.content == "First para Second para"
    assert first.summary == "Short summary"
    assert first.published == 1_788_256_800.0  # 10:00 UTC
    assert first.author == "Ann, Bob"
    assert first.link_key == "https://news.example/2026/s400" and first.title_key == "s 400 turkey"
    assert second.key == "id:19317"
    assert second.link == "https://elsewhere.example/story"
    assert second.content == "a <plain> text body"  # plain text stays literal
    assert second.published == 1_788_336_000.0
    assert second.author == "Desk Editor"
    assert third.key.startswith("hash:") and third.link is None and third.published is None
    assert fourth.link is None and fourth.published == NOW  # the future is now


def test_the_same_story_in_rss_and_json_feed_is_the_same_entry() -> None:
    published = NOW - 3600
    item = seed_article_item("https://bulgarianmilitary.com/2020/08/s400-turkey/")
    item["published"] = published
    from_rss = parse_feed(rss([item]).encode(), url="https://bm.example/feed", now=NOW)
    from_json = parse_feed(
        json_feed(
            [
                {
                    "id": item["guid"],
                    "url": item["link"],
                    "title": item["title"],
                    "content_html": item["description"],
                    "date_published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(published)),
                }
            ]
        ),
        url="https://bm.example/feed.json",
        now=NOW,
    )
    [rss_entry], [json_entry] = from_rss.entries, from_json.entries
    # RSS has one description; JSON Feed calls the same text content_html.
    assert json_entry.content == rss_entry.summary and json_entry.content
    for field in ("key", "title", "link", "published", "title_key", "link_key", "opaque_link"):
        assert getattr(json_entry, field) == getattr(rss_entry, field), field


@pytest.mark.parametrize(
    ("content_type", "prefix"),
    [
        ("application/feed+json", b""),
        ("application/json; charset=utf-8", b"\n  "),
        ("text/plain", b"\xef\xbb\xbf"),  # a wrong type, a BOM: the body says JSON Feed
        (None, b" \r\n"),
    ],
)
def test_json_feeds_are_detected_by_type_or_by_body(
    content_type: str | None, prefix: bytes
) -> None:
    body = prefix + json_feed([{"id": "1", "title": "CAATSA waiver", "url": "https://e.org/1"}])
    parsed = parse_feed(body, url="https://e.org/feed", content_type=content_type, now=NOW)
    assert [entry.title for entry in parsed.entries] == ["CAATSA waiver"]


def test_rss_served_as_json_is_still_read_as_rss() -> None:
    body = rss([{"title": "F-35 news", "guid": "g", "link": "https://e.org/f35"}]).encode()
    parsed = parse_feed(body, url="https://e.org/feed", content_type="application/json", now=NOW)
    assert [entry.key for entry in parsed.entries] == ["id:g"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "broken JSON Feed"),
        (b"[" * 200_000 + b"]" * 200_000, "broken JSON Feed"),  # nesting beyond any stack
        (b'{"items": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}", "broken JSON Feed"),
        (b'{"title": "an API answer", "items": []}', "not a JSON Feed"),
        (b'{"version": "https://example.org/v2", "items": []}', "not a JSON Feed"),
        (b'{"version": {"nested": [1, 2]}, "items": []}', "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1"}', "no list of items"),
        (b'{"version": "https://jsonfeed.org/version/1", "items": {"a": 1}}', "no list of items"),
        (b'["https://jsonfeed.org/version/1"]', "not a JSON object"),
        (b'{"version": "https://jsonfeed.org/version/1", "n": ' + b"9" * 5000 + b"}", "broken"),
    ],
)
def test_a_malformed_json_feed_is_a_parse_error(body: bytes, message: str) -> None:
    # Labelled JSON, or (for an object) known by its first byte.
    for content_type in ["application/feed+json"] + ([None] if body.startswith(b"{") else []):
        with pytest.raises(ParseError, match=message):
            parse_feed(body, url="https://e.org/feed.json", content_type=content_type, now=NOW)


def test_undecodable_bytes_cost_a_character_not_the_feed() -> None:
    body = json_feed([{"id": "1", "title": "S-400 Türkiye"}]).replace(b"\xc3\xbc", b"\xfc")
    [entry] = parse_feed(body, url="https://e.org/feed.json", now=NOW).entries
    assert entry.title == "S-400 T\ufffdrkiye"


@pytest.mark.parametrize("href", ["http://[::1", "https://[zz]/x", "http://e.org:99999/"])
def test_a_link_that_cannot_be_resolved_is_dropped_in_every_format(href: str) -> None:
    from_rss = parse_feed(
        rss([{"title": "t", "guid": "g", "link": href}]).encode(), url="https://e.org/f", now=NOW
    )
    from_json = parse_feed(
        json_feed([{"id": "g", "title": "t", "url": href}]), url="https://e.org/f", now=NOW
    )
    for parsed in (from_rss, from_json):
        [entry] = parsed.entries
        assert entry.key == "id:g" and entry.link in (None, href)
        assert entry.link is None or entry.link_key is None or entry.link_key.startswith("https")


def _realworld_json_feeds() -> list[Path]:
    manifest = REALWORLD / "manifest.tsv"
    if not manifest.is_file():
        return []
    rows = [line.split("\t") for line in manifest.read_text(encoding="utf-8").splitlines()[1:]]
    return [REALWORLD / row[0] for row in rows if row[5].startswith("jsonfeed")]


@pytest.mark.skipif(not _realworld_json_feeds(), reason="../shared/corpora/realworld is absent")
@pytest.mark.parametrize("path", _realworld_json_feeds(), ids=lambda path: path.name)
def test_real_world_json_feeds_read_completely_and_cleanly(path: Path) -> None:
    document = json.loads(path.read_bytes())
    items = [item for item in document["items"] if isinstance(item, dict)]
    parsed = parse_feed(path.read_bytes(), url="https://example.org/feed.json", now=NOW)
    assert parsed.title == document["title"].replace("&amp;", "&")
    assert len(parsed.entries) == len(items)
    # Distinct ids stay distinct stories, and each key is the feed's own id.
    assert [entry.key for entry in parsed.entries] == [f"id:{item['id']}" for item in items]
    for item, entry in zip(items, parsed.entries, strict=True):
        assert entry.title and "<" not in entry.title
        assert entry.link == item.get("url", item.get("external_url"))
        assert entry.published is not None and entry.published < NOW
        assert entry.content or entry.summary
        for text in (entry.title, entry.summary, entry.content):
            assert "\ufffd" not in text and "Ã" not in text and "â€" not in text  # no mojibake


def test_a_json_feed_is_polled_stored_and_alerted_end_to_end(
    tmp_path: Path, feeds: FeedServer, sink: AlertSink
) -> None:
    item = seed_article_item()
    url = feeds.serve(
        "/feed.json",
        json_feed(
            [
                {
                    "id": item["guid"],
                    "url": item["link"],
                    "title": item["title"],
                    "content_html": item["description"],
                    "date_published": time.strftime(
                        "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(item["published"])
                    ),
                }
            ],
            title="BulgarianMilitary.com",
        ),
        content_type="application/feed+json",
    )
    config = write_config(tmp_path, feeds=[url], notify=[sink.url])
    runner = CliRunner()
    polled = runner.invoke(cli, ["once", "--config", str(config)])
    assert polled.exit_code == 0, polled.output
    [alert] = sink.wait_for(1)
    assert item["title"] in alert["title"]
    assert item["link"] in alert["message"] and "BulgarianMilitary.com" in alert["message"]
    status = runner.invoke(cli, ["status", "--json", "--config", str(config)])
    [feed] = json.loads(status.output)["feeds"]
    assert feed["last_error"] is None and feed["stories"] == 1
    assert feed["title"] == "BulgarianMilitary.com"
