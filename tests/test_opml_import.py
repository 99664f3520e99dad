"""Hostile OPML files and literal values (issue 11, items 11 and 14).

An imported file is untrusted: it may nest folders thousands deep, carry URLs that do not
parse, smuggle newlines into names and URLs to forge lines of output, or put a ``${VAR}``
in a URL so that the daemon would send an environment secret to whoever wrote it.
Imported and added values are literal; ``$${`` is how the config writes a literal ``${``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from monitor.cli import cli
from monitor.config_load import load_config
from tests.helpers import rss
from tests.servers import FeedServer

CONFIG = "feeds: []\nwatchlists:\n  - name: w\n    keywords: [S-400]\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text("database: monitor.db\n" + CONFIG, encoding="utf-8")
    return path


def _invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], env=env)


def _import(config: Path, outlines: str, env: dict[str, str] | None = None) -> Result:
    opml = config.parent / "import.opml"
    opml.write_text(
        f'<?xml version="1.0"?><opml version="2.0"><head/><body>{outlines}</body></opml>',
        encoding="utf-8",
    )
    return _invoke("feeds", "import-opml", opml, "--config", config, env=env)


def _listed(config: Path) -> list[dict[str, str]]:
    return list(YAML(typ="safe").load(config.read_text(encoding="utf-8"))["feeds"])


def test_deeply_nested_folders_import_without_recursion(config: Path) -> None:
    depth = 5000
    outlines = '<outline text="f">' * depth + '<outline text="Deep" xmlUrl="https://e.org/deep"/>'
    result = _import(config, outlines + "</outline>" * depth)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "added 1 feed" in result.stdout
    assert _listed(config) == [{"url": "https://e.org/deep", "name": "Deep"}]


def test_urls_that_do_not_parse_or_carry_control_characters_are_left_out(config: Path) -> None:
    result = _import(
        config,
        '<outline text="v6" xmlUrl="http://[::1"/>'
        '<outline text="port" xmlUrl="http://e.org:99999999/f"/>'
        '<outline text="nl" xmlUrl="https://e.org/a&#10;  - forged  https://evil.example/"/>'
        '<outline text="ok" xmlUrl="https://e.org/ok"/>',
    )
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "added 1 feed, 0 already listed, 2 not a valid URL, left out, " in result.stdout
    assert "1 with a control character or space, left out" in result.stdout
    assert "left out 'http://[::1': not a valid URL" in result.stdout
    assert [feed["url"] for feed in _listed(config)] == ["https://e.org/ok"]


def test_names_lose_their_control_characters_and_cannot_forge_lines(config: Path) -> None:
    result = _import(
        config,
        '<outline text="Real&#10;  - forged line&#13;&#9;x\u202eevil" xmlUrl="https://e.org/a"/>',
    )
    assert result.exit_code == 0, result.output
    [feed] = _listed(config)
    assert feed["name"] == "Real - forged line xevil"
    checked = _invoke("check", "--config", config)
    assert checked.exit_code == 0, checked.output
    assert not [line for line in checked.stdout.splitlines() if line.startswith("  - forged")]


def test_an_imported_placeholder_is_literal_and_never_fetches_a_secret(
    config: Path, feeds: FeedServer
) -> None:
    feeds.serve("/x.xml", rss([]))
    env = {"EXFIL_SECRET": "exfil-Secret-6"}
    url = feeds.url("/x.xml?exfil=${EXFIL_SECRET}")
    result = _import(config, f'<outline text="x" xmlUrl="{url}"/>', env=env)
    assert result.exit_code == 0, result.output
    assert "$${EXFIL_SECRET}" in config.read_text(encoding="utf-8")
    assert [f.url for f in load_config(config, env).feeds] == [url]  # read back literally
    polled = _invoke("once", "--config", config, env=env)
    assert polled.exit_code == 0, polled.output
    requested = [path for path, _ in feeds.requests]
    assert requested and all(path.startswith("/x.xml?exfil=$") for path in requested)
    assert not [path for path in requested if "exfil-Secret-6" in path]


def test_feeds_add_writes_values_literally_and_refuses_control_characters(config: Path) -> None:
    env = {"HOME_TOKEN": "home-Secret-8"}
    added = _invoke("feeds", "add", "https://e.org/f?q=${HOME_TOKEN}", "--name", "${HOME_TOKEN}",
                    "--no-check", "--config", config, env=env)  # fmt: skip
    assert added.exit_code == 0, added.output
    assert _listed(config) == [
        {"url": "https://e.org/f?q=$${HOME_TOKEN}", "name": "$${HOME_TOKEN}"}
    ]
    shown = _invoke("feeds", "list", "--config", config, env=env)
    assert "${HOME_TOKEN}  https://e.org/f?q=${HOME_TOKEN}" in shown.stdout
    again = _invoke("feeds", "add", "https://e.org/f?q=${HOME_TOKEN}", "--config", config, env=env)
    assert "already listed" in again.stdout
    before = config.read_text(encoding="utf-8")
    bad = _invoke("feeds", "add", "https://e.org/g", "--name", "a\nforged", "--config", config)
    assert bad.exit_code == 2 and "control character" in bad.stderr
    assert bad.exception is None or isinstance(bad.exception, SystemExit)
    assert config.read_text(encoding="utf-8") == before
    removed = _invoke("feeds", "remove", "https://e.org/f?q=${HOME_TOKEN}", "--config", config)
    assert removed.exit_code == 0, removed.output
    assert _listed(config) == []


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("https://e.org/?q=$${NOT_SET}", "https://e.org/?q=${NOT_SET}"),
        ("https://e.org/?q=$$${NOT_SET}", "https://e.org/?q=$${NOT_SET}"),
        ("https://e.org/?a=$$&b=${SET}", "https://e.org/?a=$$&b=value"),
        ("https://e.org/${SET}/$${SET}", "https://e.org/value/${SET}"),
    ],
)
def test_a_doubled_dollar_is_a_literal_placeholder(tmp_path: Path, written: str, read: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(f'feeds:\n  - url: "{written}"\n', encoding="utf-8")
    assert [feed.url for feed in load_config(path, {"SET": "value"}).feeds] == [read]
