"""Autodiscovery (issue 12, "Formats and sources"): `feeds add` fetches the address and,
for a web page, adds the feed the page links to (asking which when there are several);
a poll of a web page names the feeds it links to.

Real servers on 127.0.0.1 and the real CLI (click's CliRunner, with input= for the prompt).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli import cli
from monitor.discover import FeedLink, feed_links, looks_like_html
from monitor.errors import ParseError
from monitor.parse import parse_feed
from tests.helpers import rss, write_config
from tests.servers import FeedServer

HTML = "text/html; charset=utf-8"
AGENT = "DeskName-Monitor/1.0 (ops@example.org)"


def page(*links: str, body: str = "<p>Welcome</p>") -> str:
    return (
        "<!DOCTYPE html><html><head><title>Site</title>"
        + "".join(links)
        + f"</head><body>{body}</body></html>"
    )


def link(
    href: str, kind: str = "application/rss+xml", title: str = "", rel: str = "alternate"
) -> str:
    return f'<link rel="{rel}" type="{kind}" href="{href}" title="{title}">'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, feeds=[])
    path.write_text(path.read_text() + f'user_agent: "{AGENT}"\n')
    return path


def _add(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["feeds", "add", *args, "--config", str(config)], input=input)


def _listed(config: Path) -> list[str]:
    result = CliRunner().invoke(cli, ["feeds", "list", "--json", "--config", str(config)])
    return [row["url"] for row in json.loads(result.stdout)]


def test_feed_links_are_read_as_html_and_resolved_against_the_page() -> None:
    body = page(
        link("/feed.xml", title="All &amp; everything"),
        link("atom.xml", "application/atom+xml; charset=utf-8"),
        '<LINK REL="Alternate Home" TYPE="Application/Feed+JSON" HREF="//cdn.example/f.json">',
        link("/feed.xml"),  # the same feed again
        link("javascript:alert(1)"),  # never a feed link
        link("/style.css", "text/css", rel="stylesheet"),
        link("/other.html", "text/html"),  # alternate, but not a feed
        link("/comments.xml", rel="pingback"),
        body=link("/in-body.xml") + "<p>text</p>",
    ).encode()
    found = feed_links(body, "https://site.example/blog/", HTML)
    assert found == [
        FeedLink("https://site.example/feed.xml", "RSS", "All & everything"),
        FeedLink("https://site.example/blog/atom.xml", "Atom", ""),
        FeedLink("https://cdn.example/f.json", "JSON Feed", ""),
    ]
    based = page('<base href="https://static.example/x/">', link("feed"))
    assert [f.url for f in feed_links(based.encode(), "https://site.example/")] == [
        "https://static.example/x/feed"
    ]


def test_web_pages_are_told_from_feeds() -> None:
    assert looks_like_html(b"\xef\xbb\xbf\n<!-- hi -->\n<!doctype html><p>", None)
    assert looks_like_html(
        b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">', None
    )
    assert looks_like_html(b"<p>anything</p>", "text/html")
    assert not looks_like_html(rss([]).encode(), "application/rss+xml")
    assert not looks_like_html(b"<feed><html>no</html></feed>", None)


def test_a_polled_web_page_says_which_feeds_it_links_to() -> None:
    body = page(link("/feed.xml"), link("/atom.xml", "application/atom+xml")).encode()
    with pytest.raises(ParseError) as caught:
        parse_feed(body, url="https://site.example/", content_type=HTML)
    assert str(caught.value) == (
        "this is an HTML page, not a feed; it links to these feeds: "
        "https://site.example/feed.xml, https://site.example/atom.xml "
        "(use one of them as the feed's url)"
    )
    with pytest.raises(
        ParseError, match="this is an HTML page, not a feed, and it links to no feed"
    ):
        parse_feed(page().encode(), url="https://site.example/", content_type=None)


def test_a_feed_is_added_as_it_is_fetched_with_the_configs_user_agent(
    config: Path, feeds: FeedServer
) -> None:
    url = feeds.serve("/feed.xml", rss([], title="Desk Feed"))
    added = _add(config, url)
    assert added.exit_code == 0, added.output
    assert added.stdout == f"added {url} (Desk Feed)\n"
    assert _listed(config) == [url]
    assert [headers["user-agent"] for headers in feeds.hits("/feed.xml")] == [AGENT]
    again = _add(config, url)
    assert again.stdout == f"{url} is already listed\n"
    assert len(feeds.hits("/feed.xml")) == 1  # a listed feed is not fetched again


def test_a_web_page_with_one_feed_link_adds_that_feed(config: Path, feeds: FeedServer) -> None:
    feeds.serve("/news/feed.json", b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
                content_type="application/feed+json")  # fmt: skip
    site = feeds.serve(
        "/news/", page(link("feed.json", "application/feed+json")), content_type=HTML
    )
    added = _add(config, site, "--name", "News")
    assert added.exit_code == 0, added.output
    feed = feeds.url("/news/feed.json")
    assert added.stdout == (
        f"{site} is a web page; adding the feed it links to: {feed}\nadded {feed}\n"
    )
    assert _listed(config) == [feed]
    assert "name: News" in config.read_text()


@pytest.mark.parametrize("answer", ["2", "{url}/atom.xml"])
def test_several_feed_links_are_listed_and_the_chosen_one_is_added(
    config: Path, feeds: FeedServer, answer: str
) -> None:
    feeds.serve("/rss.xml", rss([], title="Posts (RSS)"))
    feeds.serve("/atom.xml", rss([], title="Posts"), content_type="application/atom+xml")
    site = feeds.serve(
        "/",
        page(link("/rss.xml", title="Posts"), link("/atom.xml", "application/atom+xml", "Posts"),
             link("/comments.xml", title="Comments")),
        content_type=HTML,
    )  # fmt: skip
    base = site.rstrip("/")
    added = _add(config, site, input="7\n" + answer.format(url=base) + "\n")  # 7: no such one
    assert added.exit_code == 0, added.output
    assert f"{site} is a web page that links to 3 feeds:" in added.stdout
    assert f"  1. {base}/rss.xml  (RSS: Posts)" in added.stdout
    assert f"  2. {base}/atom.xml  (Atom: Posts)" in added.stdout
    assert f"  3. {base}/comments.xml  (RSS: Comments)" in added.stdout
    assert "Which one?" in added.stdout and "not one of" in added.stdout  # asked again after 7
    assert added.stdout.endswith(f"added {base}/atom.xml (Posts)\n")
    assert _listed(config) == [f"{base}/atom.xml"]
    assert not feeds.hits("/rss.xml") and not feeds.hits("/comments.xml")


def test_without_an_answer_the_feeds_are_listed_and_nothing_is_written(
    config: Path, feeds: FeedServer
) -> None:
    site = feeds.serve("/", page(link("/a.xml"), link("/b.xml")), content_type=HTML)
    before = config.read_text()
    result = _add(config, site)  # no terminal: stdin is empty
    assert result.exit_code == 2
    base = site.rstrip("/")
    assert result.stderr == (
        f"error: {site} links to 2 feeds; run `feed-monitor feeds add URL` with the URL of "
        f"the one you want:\n  {base}/a.xml\n  {base}/b.xml\n"
    )
    assert config.read_text() == before


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/missing.xml", None, "HTTP 404"),
        ("/plain.html", page(), "this is an HTML page, not a feed, and it links to no feed"),
        ("/broken.xml", '<rss version="2.0"><channel><title>a</title></chan', "broken feed"),
        ("/dead-link.html", page(link("/gone.xml")), "/gone.xml: HTTP 404"),
        ("/to-page.html", page(link("/plain.html")), "is an HTML page too"),
    ],
)
def test_an_address_without_a_usable_feed_writes_nothing(
    config: Path, feeds: FeedServer, path: str, body: str | None, message: str
) -> None:
    feeds.serve("/plain.html", page(), content_type=HTML)
    if body is not None:
        feeds.serve(path, body, content_type=HTML if path.endswith(".html") else "text/xml")
    before = config.read_text()
    result = _add(config, feeds.url(path))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: cannot add {feeds.url(path)}: ")
    assert message in result.stderr and result.stderr.endswith("; the config is unchanged\n")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert config.read_text() == before


def test_an_unreachable_address_is_a_clear_error(config: Path) -> None:
    before = config.read_text()
    result = _add(config, "http://127.0.0.1:9/feed.xml")  # nothing listens on the discard port
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot add http://127.0.0.1:9/feed.xml: ")
    assert "cannot connect" in result.stderr and "Traceback" not in result.output
    assert config.read_text() == before


def test_a_bad_url_is_refused_before_any_request_and_no_check_skips_the_fetch(
    config: Path, feeds: FeedServer
) -> None:
    refused = _add(config, "ftp://127.0.0.1/feed")
    assert refused.exit_code == 2
    assert "'ftp://127.0.0.1/feed' is not an http:// or https:// URL" in refused.stderr
    unchecked = _add(config, feeds.url("/later.xml"), "--no-check")
    assert unchecked.exit_code == 0 and unchecked.stdout == f"added {feeds.url('/later.xml')}\n"
    assert feeds.requests == []
    assert _listed(config) == [feeds.url("/later.xml")]


def test_a_poll_of_a_web_page_reports_its_feed_links(tmp_path: Path, feeds: FeedServer) -> None:
    site = feeds.serve("/", page(link("/feed.xml")), content_type=HTML)
    config = write_config(tmp_path, feeds=[site])
    runner = CliRunner()
    polled = runner.invoke(cli, ["once", "--config", str(config)])
    assert polled.exit_code == 0, polled.output
    status = runner.invoke(cli, ["status", "--json", "--config", str(config)])
    [feed] = json.loads(status.stdout)["feeds"]
    assert feed["last_error"] == (
        f"this is an HTML page, not a feed; it links to these feeds: {feeds.url('/feed.xml')} "
        "(use one of them as the feed's url)"
    )
