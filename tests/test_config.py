"""Config loading: the contract, env expansion, and errors that name file, line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from monitor.config_file import _read_yaml, validate_config
from monitor.config_load import load_config, resolve_config_path
from monitor.errors import ConfigError
from monitor.units import format_duration, parse_duration
from tests.helpers import REPO, cli, write_config

VALID = """\
database: data/monitor.db
defaults: {interval: 15m, timeout: 20s, max_age: 7d}
feeds:
  - url: https://example.org/feed/
    name: Example
    interval: 10m
  - url: https://example.net/rss
watchlists:
  - name: turkey-air-defense
    keywords: [S-400, CAATSA, F-35]
    require: [Turkey]
    exclude: [video game]
    notify: [analysts]
notify:
  - url: mailto://user:${SMTP_PASSWORD}@smtp.example.org?to=desk@example.org
    tags: [analysts]
  - "tgram://${TG_TOKEN}/${TG_CHAT}"
"""
ENV = {
    "SMTP_PASSWORD": "hunter2",
    "TG_TOKEN": "123456789:abcdefghijklmnopqrstuvwxyz",
    "TG_CHAT": "42",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV if environ is None else environ)
    return info.value.problems


def test_the_contract_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), environ=ENV)
    assert config.database == tmp_path / "data" / "monitor.db"
    assert config.defaults.interval == 900
    assert [config.feed_interval(feed) for feed in config.feeds] == [600, 900]
    assert config.feeds[0].name == "Example"
    watchlist = config.watchlists[0]
    assert watchlist.keywords == ("S-400", "CAATSA", "F-35")
    assert watchlist.require == ("Turkey",) and watchlist.exclude == ("video game",)
    assert config.notify[0].url.startswith("mailto://user:hunter2@")
    assert config.notify[0].tags == ("analysts",)
    assert config.notify[1].url == "tgram://123456789:abcdefghijklmnopqrstuvwxyz/42"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("1d", 86400),
        ("2w", 1209600),
        (30, 30),
        ("45", 45),
        ("0.5s", 0.5),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15 minutes", "-1m", "0", "m", True, None, "1y"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (1, 90, 900, 3600, 5400, 86400, 7 * 86400):
        assert parse_duration(format_duration(seconds)) == seconds


def test_mistyped_key_is_refused_by_name_and_line(tmp_path: Path) -> None:
    text = VALID.replace("    interval: 10m", "    intervall: 10m")
    [problem] = problems(tmp_path, text)
    assert problem == (
        f"{tmp_path / 'monitor.yaml'}:6: feeds[0].intervall: unknown key; did you mean 'interval'?"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        VALID.replace("interval: 15m", "interval: soon")
        .replace("https://example.net/rss", "ftp://example.net/rss")
        .replace("keywords: [S-400, CAATSA, F-35]", "keywords: []")
    )
    found = problems(tmp_path, text)
    assert any(":2: defaults.interval: 'soon' is not a duration" in p for p in found)
    assert any(":7: feeds[1].url: must be an http:// or https:// URL" in p for p in found)
    assert any(":10: watchlists[0].keywords:" in p for p in found)
    assert len(found) == 3


def test_missing_environment_variable_names_key_and_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID, environ={"TG_TOKEN": "x", "TG_CHAT": "1"})
    assert problem.endswith(":15: notify[0].url: environment variable SMTP_PASSWORD is not set")


def test_bad_notify_url_does_not_echo_secrets(tmp_path: Path) -> None:
    text = VALID.replace('"tgram://${TG_TOKEN}/${TG_CHAT}"', '"nosuch://secret-token@host"')
    [problem] = problems(tmp_path, text)
    assert ":17: notify[1].url: not a notification URL that Apprise can use" in problem
    assert "secret-token" not in problem


def test_check_names_a_bad_notify_url_without_logging_its_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path, feeds=[], notify=["nosuch://secret-token@host"])
    result = cli("check", "--config", config)
    assert result.returncode == 2
    assert f"{config}:8: notify[0].url: not a notification URL" in result.stderr
    assert "secret-token" not in result.stdout + result.stderr


def test_unknown_tag_is_refused(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("notify: [analysts]", "notify: [analyst]"))
    assert ":13: watchlists[0].notify: unknown tag 'analyst'" in problem
    assert "known tags: analysts" in problem


def test_wrong_type_and_missing_key(tmp_path: Path) -> None:
    text = VALID.replace("  - name: turkey-air-defense\n", "  - nam: turkey-air-defense\n")
    found = problems(tmp_path, text.replace("database: data/monitor.db", "database: [1, 2]"))
    assert any(":1: database:" in p for p in found)
    assert any(":9: watchlists[0].nam: unknown key; did you mean 'name'?" in p for p in found)
    assert any(":9: watchlists[0].name: this key is required" in p for p in found)


def test_duplicate_feed_and_yaml_syntax_errors(tmp_path: Path) -> None:
    text = VALID.replace("https://example.net/rss", "https://example.org/feed/")
    [problem] = problems(tmp_path, text)
    assert ":7: feeds[1].url: this feed is listed twice" in problem
    [problem] = problems(tmp_path, VALID.replace("[S-400, CAATSA, F-35]", "[S-400, CAATSA"))
    assert "invalid YAML" in problem and ":11:" in problem


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEED_MONITOR_CONFIG", raising=False)
    assert resolve_config_path(None) == Path("config/monitor.yaml")
    monkeypatch.setenv("FEED_MONITOR_CONFIG", "/etc/feed-monitor/monitor.yaml")
    assert resolve_config_path(None) == Path("/etc/feed-monitor/monitor.yaml")
    assert resolve_config_path("mine.yaml") == Path("mine.yaml")


def test_check_refuses_a_mistyped_key_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("keywords:", "keywrods:"))
    result = cli("check", "--config", path, env=ENV)
    assert result.returncode == 2
    assert "watchlists[0].keywrods: unknown key; did you mean 'keywords'?" in result.stderr
    assert f"{path}:10:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_check_summarizes_and_redacts_secrets(tmp_path: Path) -> None:
    result = cli("check", "--config", write(tmp_path, VALID), env=ENV)
    assert result.returncode == 0, result.stderr
    assert "feeds:      2" in result.stdout
    assert "turkey-air-defense: S-400, CAATSA, F-35  -> analysts" in result.stdout
    assert "hunter2" not in result.stdout
    assert "abcdefghijklmnopqrstuvwxyz" not in result.stdout


def test_shipped_config_is_valid_and_uses_the_console() -> None:
    result = cli("check", "--config", REPO / "config" / "monitor.yaml")
    assert result.returncode == 0, result.stderr
    assert "alerts are printed on the console" in result.stdout
    config = load_config(REPO / "config" / "monitor.yaml", environ={})
    assert len(config.feeds) >= 5
    assert config.watchlists[0].keywords == ("S-400", "CAATSA", "F-35")


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("check", "--config", tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_watchlist_aliases_fields_and_regex_terms(tmp_path: Path) -> None:
    text = VALID.replace(
        "    notify: [analysts]\n",
        "    notify: [analysts]\n"
        "    fields: [title, link]\n"
        '    aliases: {CAATSA: ["Countering America\'s Adversaries Through Sanctions Act"]}\n',
    )
    config = load_config(write(tmp_path, text), environ=ENV)
    assert config.watchlists[0].fields == ("title", "link")
    assert config.watchlists[0].aliases["CAATSA"][0].startswith("Countering")


def test_bad_watchlist_options_are_refused(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, VALID.replace("[S-400, CAATSA, F-35]", "[S-400, '/S-(4/']"))
    assert ":10: watchlists[0].keywords: /S-(4/ is not a valid regular expression" in problem
    bad_field = VALID.replace(
        "    notify: [analysts]\n", "    notify: [analysts]\n    fields: [body]\n"
    )
    [problem] = problems(tmp_path, bad_field)
    assert ":14: watchlists[0].fields[0]: Input should be 'title', 'summary'" in problem
    bad_alias = VALID.replace(
        "    notify: [analysts]\n", "    notify: [analysts]\n    aliases: {S-300: [Favorit]}\n"
    )
    [problem] = problems(tmp_path, bad_alias)
    assert "aliases: 'S-300' is not one of this watchlist's keywords" in problem


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    [problem] = problems(
        tmp_path, VALID.replace("    name: Example\n", "    name: Example\n    name: Again\n")
    )
    assert problem.endswith(":6: feeds[0].name: this key is given twice")


YAML_DOCUMENTS = [
    "a: 1\nb: [1.5, true, null, ~, 'x', \"y\"]\nc: {d: 2026-11-24, e: 0x1F}\n",
    "base: &base {interval: 15m, timeout: 5s}\nfeed:\n  <<: *base\n  timeout: 9s\n",
    "- &a [1, 2]\n- *a\n- {1: one, 2.5: two, null: three}\n",
    "multi: |\n  line one\n  line two\nfolded: >\n  a\n  b\nempty:\n",
    "",
]


@pytest.mark.parametrize("text", YAML_DOCUMENTS)
def test_config_yaml_reads_as_pyyaml_does(text: str) -> None:
    data, _ = _read_yaml(text)
    assert data == yaml.safe_load(text)


def test_self_referencing_and_exploding_aliases_are_refused(tmp_path: Path) -> None:
    [cycle] = problems(tmp_path, "feeds: &loop\n  - *loop\n")
    assert cycle.endswith(": an alias refers to a value that contains it")
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
    )
    [bomb] = problems(tmp_path, laughs)
    assert "too many values" in bomb


def test_delivery_settings_are_checked_by_key_and_line(tmp_path: Path) -> None:
    base = "watchlists:\n  - name: w\n    keywords: [S-400]\n"
    [cron] = problems(tmp_path, base + "    digest: 'at eight'\n")
    assert cron.endswith(":4: watchlists[0].digest: 'at eight' is not a crontab line such as "
                         "'0 8 * * *': Wrong number of fields; got 2, expected 5")  # fmt: skip
    [both] = problems(tmp_path, base + "    digest: '0 8 * * *'\n    every: 1h\n")
    assert ": watchlists[0]: give either digest (a crontab line) or every" in both
    [quiet] = problems(tmp_path, base + "    quiet_hours: 'late'\n")
    assert (
        ":4: watchlists[0].quiet_hours: 'late' is not a span of time such as 22:00-07:00" in quiet
    )
    [number] = problems(tmp_path, base + "    quiet_hours: 5\n")
    assert ":4: watchlists[0].quiet_hours: 5 is not a span of time such as 22:00-07:00" in number
    [template] = problems(tmp_path, "alerts:\n  templates:\n    text: 'by $author'\n")
    assert template.endswith(":3: alerts.templates.text: unknown placeholder $author; known: "
                             "$title, $link, $feed, $published, $watchlist, $keywords, $terms, "
                             "$snippet")  # fmt: skip
    [zone] = problems(tmp_path, "timezone: Mars/Olympus\n")
    assert ":1: timezone: unknown time zone 'Mars/Olympus'" in zone
    [fmt] = problems(tmp_path, "notify:\n  - url: json://127.0.0.1/x\n    format: rtf\n")
    assert ":3: notify[0].format: Input should be 'text', 'markdown' or 'html'" in fmt


def test_systemd_credentials_fill_in_secrets(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-password").write_text("s3cret\n")
    text = "notify:\n  - url: 'mailto://user:${credential:smtp-password}@smtp.example.org'\n"
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    config = load_config(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.notify[0].url == "mailto://user:s3cret@smtp.example.org"
    with pytest.raises(ConfigError) as refused:
        load_config(path, {})
    assert refused.value.problems == [
        f"{path}:2: notify[0].url: credential smtp-password: no $CREDENTIALS_DIRECTORY "
        "(set LoadCredential= in the systemd unit)"
    ]


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        ("feeds:\n\t- url: https://e.org/feed\n", 2, "a tab character: YAML indents with spaces"),
        ("defaults:\n  interval: 1h\n   timeout: 5s\n", 3, "check this line's indentation"),
        ("feeds:\n  - url: https://e.org/feed\n   name: x\n", 3, "check this line's indentation"),
        (
            "feeds:\n  - url: https://e.org/feed\n    name: Breaking: News\n",
            3,
            'a value with ": " in it needs quotes',
        ),
    ],
    ids=["tab", "key indented too far", "list item indented too far", "unquoted colon"],
)
def test_hand_editing_mistakes_in_yaml_are_explained(
    tmp_path: Path, text: str, line: int, hint: str
) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, need_targets=False)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: invalid YAML: ") and hint in message, message


def test_quiet_hours_load_from_text_and_dump_back_to_it(tmp_path: Path) -> None:
    config = validate_config(
        write(
            tmp_path,
            "watchlists:\n  - name: w\n    keywords: [S-400]\n    quiet_hours: '22:00-07:30'\n"
            "notify:\n  - url: json://127.0.0.1/x\n    quiet_hours: ' 1:00 - 6:00 '\n",
        ),
        environ=ENV,
        check_notify=False,
    )
    dumped = config.model_dump(mode="json")
    assert dumped["watchlists"][0]["quiet_hours"] == "22:00-07:30"
    assert dumped["notify"][0]["quiet_hours"] == "01:00-06:00"
    # what a dump says loads back to the same spans
    again = validate_config(write(tmp_path, json.dumps(dumped)), environ=ENV, check_notify=False)
    assert again.watchlists[0].quiet_hours == config.watchlists[0].quiet_hours
    assert again.notify[0].quiet_hours == config.notify[0].quiet_hours


def test_a_feed_url_the_fetcher_cannot_use_is_refused_by_check(tmp_path: Path) -> None:
    # `check` said OK, and every poll then failed ("Port out of range").
    for url in ("http://[::1]:99999/", "http://example.org:0x50/feed", "http://%zz/"):
        [problem] = problems(tmp_path, f"feeds:\n  - url: '{url}'\n")
        assert ":2: feeds[0].url:" in problem, problem


def test_a_config_that_never_ends_is_refused_not_read_forever(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Path("/dev/zero"), environ=ENV)
    [problem] = info.value.problems
    assert problem.startswith("/dev/zero: ") and "larger than" in problem
