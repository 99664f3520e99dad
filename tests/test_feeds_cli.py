"""`feeds list|add|remove|import-opml|export-opml`: edits keep the user's comments and
layout; OPML round-trips files from several readers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from monitor.opml import read_opml
from tests.helpers import REPO, cli

OPML = REPO / "tests" / "data" / "opml"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    shutil.copy(REPO / "config" / "monitor.yaml", path)
    return path


def test_add_then_remove_leaves_the_file_exactly_as_it_was(config: Path) -> None:
    original = config.read_text()
    added = cli("feeds", "add", "https://example.org/new.xml", "--name", "New", "--no-check",
                "--config", config)  # fmt: skip
    assert added.returncode == 0, added.stderr
    text = config.read_text()
    assert "  - url: https://example.org/new.xml\n    name: New\n" in text
    # Every comment and line of the original is still there, in order.
    assert [line for line in text.splitlines() if "example.org/new.xml" not in line
            and line != "    name: New"] == original.splitlines()  # fmt: skip
    again = cli("feeds", "add", "https://example.org/new.xml", "--config", config)
    assert "already listed" in again.stdout
    removed = cli("feeds", "remove", "https://example.org/new.xml", "--config", config)
    assert removed.returncode == 0, removed.stderr
    assert config.read_text() == original


def test_an_edit_that_would_break_the_config_is_refused(config: Path) -> None:
    original = config.read_text()
    for url in ("ftp://example.org/feed", "not-a-url"):
        bad = cli("feeds", "add", url, "--config", config)
        assert bad.returncode == 2
        assert f"'{url}' is not an http:// or https:// URL" in bad.stderr
        # The user's config is fine: the message is about the argument, not the file.
        assert "invalid configuration" not in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("feeds", "remove", "https://nowhere.example/feed", "--config", config)
    assert missing.returncode == 2 and f"{config} lists no feed with url" in missing.stderr
    assert "invalid configuration" not in missing.stderr
    assert config.read_text() == original


@pytest.mark.parametrize(
    ("name", "urls"),
    [
        ("feedly.opml", ["https://breakingdefense.com/feed/",
                         "https://www.defensenews.com/arc/outboundfeeds/rss/?outputType=xml",
                         "https://www.dailysabah.com/rss/politics/defense"]),
        ("inoreader.opml", ["https://www.bellingcat.com/feed/", "https://www.twz.com/feed",
                            "https://example.org/feed?a=1&b=2"]),
        ("netnewswire.opml", ["https://www.armyrecognition.com/feed",
                              "https://www.navalnews.com/feed/"]),
        ("miniflux.opml", ["https://bulgarianmilitary.com/feed/"]),
    ],
)  # fmt: skip
def test_opml_from_other_readers_imports_and_round_trips(
    tmp_path: Path, name: str, urls: list[str]
) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("# my feeds\nfeeds: []\nwatchlists:\n  - name: w\n    keywords: [S-400]\n")
    imported = cli("feeds", "import-opml", OPML / name, "--config", config)
    assert imported.returncode == 0, imported.stderr
    assert f"added {len(urls)} feed{'s' if len(urls) != 1 else ''}," in imported.stdout
    listed = json.loads(cli("feeds", "list", "--json", "--config", config).stdout)
    assert [row["url"] for row in listed] == urls
    assert config.read_text().startswith("# my feeds\n")
    again = cli("feeds", "import-opml", OPML / name, "--config", config)
    assert f"added 0 feeds, {len(urls)} already listed" in again.stdout

    exported = cli("feeds", "export-opml", "--config", config)
    assert exported.returncode == 0, exported.stderr
    outlines = read_opml(exported.stdout.encode())
    original = {o.url: o.title for o in read_opml((OPML / name).read_bytes())}
    assert [(o.url, o.title) for o in outlines] == [(url, original[url]) for url in urls]


def test_non_http_outlines_are_left_out(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("feeds: []\n")
    result = cli("feeds", "import-opml", OPML / "miniflux.opml", "--config", config)
    assert "added 1 feed, 0 already listed, 1 not http(s), left out" in result.stdout


def test_a_hostile_opml_file_is_refused_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("feeds: []\n")
    bomb = tmp_path / "bomb.opml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<opml version="2.0"><body><outline text="&b;" xmlUrl="https://e.org/f"/></body></opml>'
    )
    result = cli("feeds", "import-opml", bomb, "--config", config)
    assert result.returncode == 1
    assert "not a readable OPML file" in result.stderr and "Traceback" not in result.stderr
    assert config.read_text() == "feeds: []\n"
    endless = cli("feeds", "import-opml", "/dev/zero", "--config", config)  # read forever
    assert endless.returncode == 2 and "larger than" in endless.stderr, endless.stderr
    assert config.read_text() == "feeds: []\n"


def test_argument_errors_do_not_echo_credentials(config: Path) -> None:
    secret_url = "ftp://reader:hunter22secret@e.org/f?token=AbcSecret999"
    for args in (("feeds", "add", secret_url),
                 ("feeds", "remove", secret_url.replace("ftp:", "https:"))):  # fmt: skip
        result = cli(*args, "--config", config)
        assert result.returncode == 2, result.stderr
        assert "hunter22secret" not in result.stderr + result.stdout
        assert "AbcSecret999" not in result.stderr + result.stdout
        assert "****@e.org" in result.stderr


def test_an_export_with_masked_credentials_is_not_imported_as_is(tmp_path: Path) -> None:
    source = tmp_path / "source.yaml"
    source.write_text("feeds:\n  - url: https://reader:pw-Secret-77@feeds.example/f.xml\n")
    exported = cli("feeds", "export-opml", "--config", source)
    assert exported.returncode == 0 and "****@feeds.example" in exported.stdout
    opml = tmp_path / "feeds.opml"
    opml.write_text(exported.stdout)
    target = tmp_path / "monitor.yaml"
    target.write_text("feeds: []\n")
    imported = cli("feeds", "import-opml", opml, "--config", target)
    assert imported.returncode == 0, imported.stderr
    assert "1 with a credential masked as **** (export with --with-secrets), left out" in (
        imported.stdout
    )
    assert "****" not in target.read_text()


def test_edits_write_through_a_symlink_and_refuse_what_is_no_config_file(
    tmp_path: Path, config: Path
) -> None:
    # Found by a sweep with hostile arguments: an edit replaced a symlinked config with a
    # file of its own (the real one unchanged), and a binary or deeply nested config
    # made a traceback where `check` gives a clear error.
    link = tmp_path / "link.yaml"
    link.symlink_to(config)
    added = cli("feeds", "add", "https://example.org/via-link.xml", "--no-check", "-c", link)
    assert added.returncode == 0, added.stderr
    assert link.is_symlink()
    assert "https://example.org/via-link.xml" in config.read_text()
    broken = {
        "utf16.yaml": "feeds: []\n".encode("utf-16"),
        "binary.yaml": bytes(range(256)),
        "deep.yaml": b"feeds: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    }
    for name, content in broken.items():
        path = tmp_path / name
        path.write_bytes(content)
        for args in (("add", "https://example.org/x.xml", "--no-check"),
                     ("remove", "https://example.org/x.xml")):  # fmt: skip
            result = cli("feeds", *args, "-c", path)
            assert result.returncode == 2, (name, args, result.stderr)
            assert "Traceback" not in result.stderr, (name, args)
            assert str(path) in result.stderr, (name, args)
        assert path.read_bytes() == content


def test_an_export_masks_a_secret_wherever_the_config_used_it(tmp_path: Path) -> None:
    # Found by the hostile-arguments sweep: a ${VAR} in a feed's name was exported whole.
    config = tmp_path / "monitor.yaml"
    config.write_text('feeds:\n  - url: https://feeds.example/f.xml\n    name: "Wire ${PW}"\n')
    exported = cli("feeds", "export-opml", "--config", config, env={"PW": "Sekrit-4411"})
    assert exported.returncode == 0, exported.stderr
    assert "Sekrit-4411" not in exported.stdout and "Wire ****" in exported.stdout
    whole = cli("feeds", "export-opml", "--with-secrets", "--config", config,
                env={"PW": "Sekrit-4411"})  # fmt: skip
    assert "Wire Sekrit-4411" in whole.stdout
