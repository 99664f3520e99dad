"""A run over hostile and broken feeds: each fails alone, nothing leaks, the good feed alerts."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli, rss, seed_article_item, write_config
from tests.servers import QuietHandler, serving

SECRET = "TOP-SECRET-LOCAL-FILE-CONTENT"


def hostile_documents(secret_file: Path, port: int) -> dict[str, tuple[int, dict[str, str], bytes]]:
    big_entity = f'<!ENTITY big "{"x" * 8000}">'
    laughs = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )

    def doc(subset: str, body: str) -> bytes:
        return (
            f'<?xml version="1.0"?><!DOCTYPE rss [{subset}]><rss version="2.0"><channel>'
            f"<title>t</title><item><title>Entity story {body}</title>"
            "<link>https://e.org/x</link></item></channel></rss>"
        ).encode()

    xml = {"Content-Type": "application/rss+xml"}
    return {
        "/good.xml": (200, xml, rss([seed_article_item()]).encode()),
        "/entity-file.xml": (200, xml, doc(f'<!ENTITY s SYSTEM "file://{secret_file}">', "&s;")),
        "/entity-http.xml": (
            200, xml, doc(f'<!ENTITY s SYSTEM "http://127.0.0.1:{port}/leak">', "&s;")
        ),
        "/big-entity.xml": (200, xml, doc(big_entity, "&big;" * 20_000)),
        "/laughs.xml": (200, xml, doc(laughs, "&l9;")),
        "/gzip-bomb.xml": (
            200, {**xml, "Content-Encoding": "gzip"}, gzip.compress(b"<" * (40 * 1024 * 1024))
        ),
        "/html.xml": (200, {"Content-Type": "text/html"}, b"<html><body>Hello</body></html>"),
        "/empty.xml": (200, xml, b""),
        "/latin1-lies.xml": (200, {"Content-Type": "text/xml; charset=utf-8"}, b"\xff\xfe\x00<rss"),
        "/error.xml": (500, {}, b"oops"),
    }  # fmt: skip


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    requested: list[str] = []
    documents: dict[str, tuple[int, dict[str, str], bytes]] = {}

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            status, headers, body = documents.get(self.path, (404, {}, b""))
            self.reply(status, body, headers)

    with serving(Handler) as port:
        documents.update(hostile_documents(secret_file, port))
        yield f"http://127.0.0.1:{port}", requested


def test_hostile_feeds_fail_alone_and_leak_nothing(
    tmp_path: Path, hostile: tuple[str, list[str]], sink: Any
) -> None:
    base, requested = hostile
    paths = list(hostile_documents(tmp_path / "secret.txt", 0))
    config = write_config(tmp_path, feeds=[base + path for path in paths], notify=[sink.url])

    result = cli("once", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    [alert] = sink.wait_for(1)
    assert "Russia announced the sale" in alert["title"]  # the good feed still alerts

    with sqlite3.connect(tmp_path / "monitor.db") as db:
        errors = dict(db.execute("SELECT url, last_error FROM feeds").fetchall())
        stored = " ".join(
            " ".join(row) for row in db.execute("SELECT title, summary, content FROM stories")
        )
    assert SECRET not in stored
    assert "/leak" not in requested  # no external entity was ever fetched
    assert errors[base + "/good.xml"] is None
    assert "larger than" in errors[base + "/gzip-bomb.xml"]
    assert "this is an HTML page, not a feed" in errors[base + "/html.xml"]
    assert "empty" in errors[base + "/empty.xml"]
    assert "HTTP 500" in errors[base + "/error.xml"]
    assert errors[base + "/latin1-lies.xml"]
    # Entity documents parse without expansion: stored, and small.
    assert len(stored) < 100_000
