"""The run config (monitor.run_config) and the cache of validated configs (monitor.config_load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import msgspec
import pytest
from pydantic import BaseModel

from monitor import config as models
from monitor import redact
from monitor.article import FullTextRule
from monitor.config_load import cache_directory, load_config
from monitor.errors import ConfigError
from monitor.run_config import (
    RunAlerts,
    RunConfig,
    RunDefaults,
    RunEvents,
    RunFeed,
    RunHealth,
    RunHTTP,
    RunRetention,
    RunTarget,
    RunTemplates,
    RunWatchlist,
    to_document,
)
from monitor.scrape import ScrapeRule

# Each model of the config contract and the struct the program runs on, with the fields
# only the struct has (facts about the load, not keys of the file).
MIRRORS: list[tuple[type[BaseModel], type[msgspec.Struct], set[str]]] = [
    (models.Config, RunConfig, {"targets_ready", "concurrency_set"}),
    (models.Defaults, RunDefaults, set()),
    (models.Retention, RunRetention, set()),
    (models.FeedConfig, RunFeed, set()),
    (models.Watchlist, RunWatchlist, set()),
    (models.NotifyTarget, RunTarget, {"line"}),
    (models.Templates, RunTemplates, set()),
    (models.AlertSettings, RunAlerts, set()),
    (models.HTTPSettings, RunHTTP, set()),
    (models.HealthSettings, RunHealth, set()),
    (models.EventSettings, RunEvents, set()),
    (models.FullTextSettings, FullTextRule, set()),
    (models.ScrapeSettings, ScrapeRule, set()),
]

FULL = """\
database: data/m.db
concurrency: 8
defaults: {interval: 10m, full_text: never}
retention: {story_text: 30d}
timezone: Europe/Berlin
alerts: {burst_limit: 3, templates: {title: "[$watchlist] $title"}}
http: {listen: "127.0.0.1:9999"}
health: {notify: [ops]}
events: {follow_up_at: 3}
feeds:
  - url: https://user:${FEED_PW}@wire.example/feed
    name: Wire
    interval: 5m
    full_text: {mode: always, select: article}
  - url: https://page.example/news
    scrape: {item: li.story}
watchlists:
  - name: turkey
    keywords: [S-400, CAATSA]
    aliases: {S-400: [S400]}
    require: [Turkey]
    exclude: [video game]
    fields: [title, summary]
    notify: [ops]
    every: 1h
    quiet_hours: 22:00-07:00
notify:
  - url: json://127.0.0.1:9/hook/${credential:hook-token}
    tags: [ops]
    format: markdown
    quiet_hours: 23:00-06:00
"""
FEED_PW = "Feed-Password-7731"
HOOK_TOKEN = "Hook-Token-4410"


def test_every_key_of_the_config_reaches_the_run_config() -> None:
    """A key added to a model and not to its struct would be validated and then dropped."""
    for model, struct, extra in MIRRORS:
        fields = {field.name for field in msgspec.structs.fields(struct)}
        assert set(model.model_fields) | extra == fields, (model.__name__, struct.__name__)


@pytest.fixture
def desk(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "hook-token").write_text(HOOK_TOKEN + "\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(FULL)
    environ = {
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FEED_PW": FEED_PW,
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    return config, environ


def cache_files(environ: dict[str, str]) -> list[Path]:
    directory = cache_directory(environ)
    assert directory is not None
    return sorted(directory.glob("*.json")) if directory.exists() else []


def test_a_cached_config_is_the_config_validation_gives(desk: tuple[Path, dict[str, str]]) -> None:
    path, environ = desk
    validated = load_config(path, environ, check_notify=False)
    assert len(cache_files(environ)) == 1
    cached = load_config(path, environ, check_notify=False)
    assert cached == validated
    assert to_document(cached) == to_document(validated)
    # Every part of the file is there, secrets filled in
    assert cached.feeds[0].url == f"https://user:{FEED_PW}@wire.example/feed"
    assert cached.notify[0].url == f"json://127.0.0.1:9/hook/{HOOK_TOKEN}"
    assert cached.notify[0].line == 28 and cached.concurrency_set
    assert cached.watchlists[0].digest_schedule is not None
    assert cached.delivery_policy() == validated.delivery_policy()
    assert cached.cadence(cached.feeds[1]) == validated.cadence(validated.feeds[1])


def test_the_cache_file_holds_no_secret_and_only_its_owner_reads_it(
    desk: tuple[Path, dict[str, str]],
) -> None:
    path, environ = desk
    load_config(path, environ, check_notify=False)
    [file] = cache_files(environ)
    data = file.read_bytes()
    assert FEED_PW.encode() not in data and HOOK_TOKEN.encode() not in data
    assert FEED_PW.lower().encode() not in data.lower()
    assert file.stat().st_mode & 0o777 == 0o600
    assert file.parent.stat().st_mode & 0o777 == 0o700


def test_a_config_read_from_the_cache_masks_its_secrets_as_validation_does(
    desk: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, environ = desk
    load_config(path, environ, check_notify=False)
    monkeypatch.setattr(redact, "_secrets", ())  # a new process knows no secret yet
    load_config(path, environ, check_notify=False)
    shown = redact.redact_text(f"failed: {FEED_PW} {HOOK_TOKEN}")
    assert FEED_PW not in shown and HOOK_TOKEN not in shown


@pytest.mark.parametrize(
    "change",
    ["file", "secret", "credential", "home", "how"],
)
def test_any_changed_input_is_validated_again(
    desk: tuple[Path, dict[str, str]], change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, environ = desk
    first = load_config(path, environ, check_notify=False)
    check_notify = False
    if change == "file":
        path.write_text(FULL.replace("interval: 5m", "interval: 7m"))
    elif change == "secret":
        environ["FEED_PW"] = "Other-Password-1"
    elif change == "credential":
        (Path(environ["CREDENTIALS_DIRECTORY"]) / "hook-token").write_text("Other-Token-2")
    elif change == "home":
        monkeypatch.setenv("HOME", str(path.parent))
        path.write_text(FULL.replace("data/m.db", "~/m.db"))
        load_config(path, environ, check_notify=False)
        monkeypatch.setenv("HOME", str(path.parent / "elsewhere"))
    else:
        check_notify = True
    again = load_config(path, environ, check_notify=check_notify)
    expected = {
        "file": lambda c: c.feeds[0].interval == 420,
        "secret": lambda c: "Other-Password-1" in c.feeds[0].url,
        "credential": lambda c: c.notify[0].url.endswith("/Other-Token-2"),
        "home": lambda c: c.database == path.parent / "elsewhere" / "m.db",
        "how": lambda c: c == first,
    }
    assert expected[change](again)
    if change == "how":  # each way of loading has its own file: they do not take turns
        assert len(cache_files(environ)) == 2


def test_a_config_made_invalid_is_refused_however_often_it_loaded(
    desk: tuple[Path, dict[str, str]],
) -> None:
    path, environ = desk
    load_config(path, environ, check_notify=False)
    load_config(path, environ, check_notify=False)
    path.write_text(FULL.replace("concurrency: 8", "concurrency: lots"))
    with pytest.raises(ConfigError, match=r"monitor.yaml:2: concurrency"):
        load_config(path, environ, check_notify=False)
    del environ["FEED_PW"]  # and a secret that is gone is missed, not taken from the cache
    path.write_text(FULL)
    with pytest.raises(ConfigError, match="FEED_PW is not set"):
        load_config(path, environ, check_notify=False)


@pytest.mark.parametrize(
    "damage",
    [b"", b"{", b"[1, 2]", b'{"key": "x", "salt": "y", "secrets": [], "config": {}}', b"\xff\xfe"],
)
def test_a_damaged_cache_file_is_ignored_and_replaced(
    desk: tuple[Path, dict[str, str]], damage: bytes
) -> None:
    path, environ = desk
    validated = load_config(path, environ, check_notify=False)
    [file] = cache_files(environ)
    file.write_bytes(damage)
    assert load_config(path, environ, check_notify=False) == validated
    assert file.read_bytes() != damage


def test_a_cache_file_changed_or_made_for_other_inputs_is_not_used(
    desk: tuple[Path, dict[str, str]],
) -> None:
    """Its key covers the inputs and what is stored: a changed setting (a flipped bit, an
    edit) or a file copied from another config is validated again, never run."""
    path, environ = desk
    load_config(path, environ, check_notify=False)
    [file] = cache_files(environ)
    data = file.read_bytes()
    assert b'"concurrency":8' in data
    file.write_bytes(data.replace(b'"concurrency":8', b'"concurrency":0', 1))
    assert load_config(path, environ, check_notify=False).concurrency == 8
    other = path.with_name("other.yaml")
    other.write_text(FULL.replace("concurrency: 8", "concurrency: 9"))
    load_config(other, environ, check_notify=False)
    for copied in cache_files(environ):
        if copied != file:
            file.write_bytes(copied.read_bytes())
    assert load_config(path, environ, check_notify=False).concurrency == 8


def test_a_cache_directory_others_may_write_to_is_not_read(
    desk: tuple[Path, dict[str, str]],
) -> None:
    path, environ = desk
    load_config(path, environ, check_notify=False)
    [file] = cache_files(environ)
    stored = json.loads(file.read_bytes())
    file.parent.chmod(0o777)
    # A file planted there with a right key would still be refused: it is not looked at.
    stored["config"] = "{}"
    file.write_text(json.dumps(stored))
    assert load_config(path, environ, check_notify=False).concurrency == 8


@pytest.mark.parametrize("kind", ["deep", "fifo", "endless", "directory", "huge"])
def test_a_cache_file_that_is_no_file_of_ours_is_passed_over(
    desk: tuple[Path, dict[str, str]], kind: str
) -> None:
    """Never a traceback, a hang or a read without end: the config is validated instead."""
    path, environ = desk
    validated = load_config(path, environ, check_notify=False)
    [file] = cache_files(environ)
    file.unlink()
    if kind == "deep":
        file.write_text('{"key": "k", "salt": "s", "secrets": [], "config": ' + "[" * 100_000)
    elif kind == "fifo":
        os.mkfifo(file)
    elif kind == "endless":
        file.symlink_to("/dev/zero")
    elif kind == "directory":
        file.mkdir()
    else:
        with file.open("wb") as out:
            out.truncate(100 * 2**20)  # sparse: 100 MB that take no disk
    assert load_config(path, environ, check_notify=False) == validated
    assert load_config(path, environ, check_notify=False) == validated
    assert not list(file.parent.glob("*.tmp"))  # nothing left behind by failed writes


def test_a_config_holding_a_credential_written_in_a_url_is_not_cached(tmp_path: Path) -> None:
    """The password would be copied from /etc/feed-monitor to a less guarded place."""
    path = tmp_path / "monitor.yaml"
    path.write_text("feeds:\n  - url: https://bob:Literal-Pw-8812@news.example/feed\n")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert load_config(path, environ).feeds[0].url.startswith("https://bob:")
    assert cache_files(environ) == []


@pytest.mark.parametrize(
    "spelling",
    ['"https://news.example/feed/\\x24{FEED_TOKEN}/rss"',  # YAML's escapes: a ${ that
     '"https://news.example/feed/$\\x7bFEED_TOKEN}/rss"'],  # only validation sees
)  # fmt: skip
def test_a_secret_named_where_only_validation_sees_it_is_not_cached(
    tmp_path: Path, spelling: str
) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(f"feeds:\n  - url: {spelling}\n")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "FEED_TOKEN": "Tok-AAAA-1111"}
    assert load_config(path, environ).feeds[0].url.endswith("/Tok-AAAA-1111/rss")
    assert cache_files(environ) == []
    environ["FEED_TOKEN"] = "Tok-BBBB-2222"  # a rotated token is used at once
    assert load_config(path, environ).feeds[0].url.endswith("/Tok-BBBB-2222/rss")
    del environ["FEED_TOKEN"]
    with pytest.raises(ConfigError, match="FEED_TOKEN is not set"):
        load_config(path, environ)


def test_a_secret_validation_trims_is_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("feeds:\n  - url: https://news.example/f?key=${TOK}\n    name: ${TOK}\n")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "TOK": "Sekr3t-Value "}
    assert load_config(path, environ).feeds[0].url.endswith("?key=Sekr3t-Value")
    assert cache_files(environ) == []


def test_a_value_that_cannot_be_written_as_utf8_is_loaded_uncached(tmp_path: Path) -> None:
    """An environment value with bytes that are not UTF-8 (Python keeps them as lone
    surrogates): `check` accepts the config, so every command must run on it."""
    path = tmp_path / "monitor.yaml"
    path.write_text("feeds:\n  - url: https://news.example/f\n    name: ${NAME}\n")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NAME": "ab\udcffcd"}
    assert load_config(path, environ).feeds[0].name == "ab\udcffcd"
    assert load_config(path, environ).feeds[0].name == "ab\udcffcd"


def test_a_secret_that_validation_respells_is_not_cached(tmp_path: Path) -> None:
    """A secret parsed into another form (here a time span) could not be hidden by a
    marker: such a config is validated every time instead."""
    path = tmp_path / "monitor.yaml"
    path.write_text("notify:\n  - url: json://127.0.0.1:9/\n    quiet_hours: ${QUIET}\n")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "QUIET": "1:00-6:00"}
    loaded = load_config(path, environ, check_notify=False)
    assert loaded.notify[0].quiet_hours is not None
    assert cache_files(environ) == []


def test_without_a_usable_cache_directory_the_config_still_loads(
    desk: tuple[Path, dict[str, str]],
) -> None:
    path, environ = desk
    blocker = path.parent / "not-a-directory"
    blocker.write_text("")
    environ["XDG_CACHE_HOME"] = str(blocker)
    assert load_config(path, environ, check_notify=False).concurrency == 8
    assert load_config(path, environ, check_notify=False).concurrency == 8
    del environ["XDG_CACHE_HOME"], environ["HOME"]
    assert cache_directory(environ) is None
    assert load_config(path, environ, check_notify=False).concurrency == 8


def test_systemd_cache_directory_is_used_when_set(desk: tuple[Path, dict[str, str]]) -> None:
    path, environ = desk
    environ["CACHE_DIRECTORY"] = str(path.parent / "state-cache")
    load_config(path, environ, check_notify=False)
    assert [file.parent for file in cache_files(environ)] == [path.parent / "state-cache"]


def test_a_run_with_an_unchanged_config_loads_neither_pydantic_nor_yaml(
    desk: tuple[Path, dict[str, str]],
) -> None:
    """The point of the cache: `once` from cron starts about a quarter faster."""
    path, environ = desk
    script = (
        "import sys; from monitor.config_load import load_config\n"
        "from monitor.run_config import to_document; import json\n"
        "config = load_config(sys.argv[1], check_notify=False)\n"
        "print(json.dumps([sorted({m.split('.')[0] for m in sys.modules}),"
        " to_document(config)], default=str))"
    )
    env = {**os.environ, **environ}

    def run() -> tuple[list[str], typing.Any]:
        out = subprocess.run([sys.executable, "-c", script, str(path)], env=env,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        modules, document = json.loads(out)
        return modules, document

    first_modules, first = run()
    again_modules, again = run()
    assert {"pydantic", "yaml"} <= set(first_modules)
    assert not {"pydantic", "yaml", "pydantic_core"} & set(again_modules)
    assert again == first


def test_the_command_line_loads_neither_pydantic_nor_yaml_until_it_validates() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, monitor.cli; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert not [name for name in loaded if name.split(".")[0] in ("pydantic", "yaml")]


def test_cache_files_of_configs_not_used_for_a_month_are_deleted(
    desk: tuple[Path, dict[str, str]],
) -> None:
    path, environ = desk
    load_config(path, environ, check_notify=False)
    [kept] = cache_files(environ)
    gone = kept.with_name("config-0123456789abcdef0123-01.json")
    gone.write_text("{}")
    month_ago = time.time() - 31 * 86400
    os.utime(gone, (month_ago, month_ago))
    # One read every day keeps a file in use: a hit touches it when it is a day old.
    os.utime(kept, (month_ago, month_ago))
    load_config(path, environ, check_notify=False)
    other = path.with_name("other.yaml")
    other.write_text(FULL)
    load_config(other, environ, check_notify=False)  # a write prunes
    assert not gone.exists() and kept.exists() and len(cache_files(environ)) == 2


@pytest.mark.parametrize(
    ("feed", "target"),
    [
        ("https://alice:hunter2@h.example/f", "json://127.0.0.1:9/hook/${HOOK}"),
        ("https://alice:p4ss@h.example/f", "json://127.0.0.1:9/hook/${HOOK}"),
        ("https://h.example/f?access_token=super-secret-token", "json://127.0.0.1:9/${HOOK}"),
        ("https://h.example/f?apikey=abc123", "json://127.0.0.1:9/${HOOK}"),
        ("https://TOKEN-AS-USER-77@h.example/f", "json://127.0.0.1:9/${HOOK}"),
        ("https://h.example/f", "json://h.example/hook/sunshinesecret"),
        ("https://h.example/f", "mailtos://alice:sunshine@mail.example"),
        ("https://h.example/f", "tgram://123456789:AAHtokentoken/12345"),
        ("https://h.example/f", "json://h.example/hook?token=abc"),
    ],
)
def test_a_credential_written_in_a_url_keeps_a_config_out_of_the_cache(
    tmp_path: Path, feed: str, target: str
) -> None:
    """The file would copy it from /etc/feed-monitor to a less guarded place: stricter
    than masking, which lets short and plain-word values be shown."""
    path = tmp_path / "monitor.yaml"
    path.write_text(f"feeds:\n  - url: {feed}\nnotify:\n  - {target}\n")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOOK": "Hook-Token-1"}
    for need_targets in (True, False):
        load_config(path, environ, check_notify=False, need_targets=need_targets)
    assert cache_files(environ) == []


@pytest.mark.parametrize(
    "target",
    ["json://127.0.0.1:9/hook/${HOOK_TOKEN}", "json://h.example/hook/${credential:hook-token}",
     "tgram://${BOT}/${CHAT}", "slack://${A}/${B}/${C}?format=markdown", "ntfy://ntfy.sh/${T}",
     # A user name with a ${VAR} password is no credential (the README's own example).
     "mailto://desk:${T}@smtp.example.org?to=desk@example.org",
     "json://desk:${HOOK_TOKEN}@127.0.0.1:8766/alerts"],
)  # fmt: skip
def test_targets_whose_secrets_are_placeholders_are_cached_for_every_command(
    desk: tuple[Path, dict[str, str]], target: str
) -> None:
    """Read-only commands leave the notify URLs as written, ${VAR} and all: no credential."""
    path, environ = desk
    path.write_text(f"feeds:\n  - url: https://h.example/f\nnotify:\n  - {target}\n")
    environ |= {"HOOK_TOKEN": "Hook-Token-12", "BOT": "123:AAH-bot-99", "CHAT": "-1001234",
                "A": "T0001", "B": "B0001", "C": "Slack-Token-7",
                "T": "topic-Secret-3"}  # fmt: skip
    for need_targets in (True, False):
        load_config(path, environ, check_notify=False, need_targets=need_targets)
    assert len(cache_files(environ)) == 2


def test_swapping_the_secrets_of_a_cache_file_makes_it_a_miss(
    desk: tuple[Path, dict[str, str]],
) -> None:
    """Else the hook's token could be filled into the feed's URL and sent to its host."""
    path, environ = desk
    validated = load_config(path, environ, check_notify=False)
    [file] = cache_files(environ)
    data = file.read_bytes()
    names = json.loads(data)["secrets"]
    assert len(names) == 2
    compact = {"separators": (",", ":")}
    swapped = data.replace(
        json.dumps(names, **compact).encode(),  # type: ignore[arg-type]
        json.dumps(names[::-1], **compact).encode(),
    )  # type: ignore[arg-type]
    assert swapped != data
    file.write_bytes(swapped)
    assert load_config(path, environ, check_notify=False) == validated


@pytest.mark.parametrize("kind", ["fifo", "endless", "huge"])
def test_a_credential_that_is_no_regular_file_is_missing_not_waited_for(
    desk: tuple[Path, dict[str, str]], kind: str
) -> None:
    path, environ = desk
    credential = Path(environ["CREDENTIALS_DIRECTORY"]) / "hook-token"
    credential.unlink()
    if kind == "fifo":
        os.mkfifo(credential)
    elif kind == "endless":
        credential.symlink_to("/dev/zero")
    else:
        credential.write_bytes(b"x" * (2**16 + 1))
    assert load_config(path, environ, check_notify=False, need_targets=False).feeds
    with pytest.raises(ConfigError, match="credential hook-token is not in"):
        load_config(path, environ, check_notify=False)


def test_a_cache_directory_others_may_write_to_is_not_written_either(
    desk: tuple[Path, dict[str, str]],
) -> None:
    path, environ = desk
    directory = cache_directory(environ)
    assert directory is not None
    directory.mkdir(parents=True, mode=0o775)
    directory.chmod(0o775)
    load_config(path, environ, check_notify=False)
    assert cache_files(environ) == []


def test_a_relative_xdg_cache_home_is_ignored(tmp_path: Path) -> None:
    """As the XDG spec says: it would be relative to wherever a command runs."""
    assert cache_directory({"XDG_CACHE_HOME": "relcache", "HOME": str(tmp_path)}) == (
        tmp_path / ".cache" / "feed-monitor"
    )
