"""Validation refuses, by file, line and key, every value that would crash or spin at run time.

Each hostile value below passed ``check`` once and then broke ``once`` or ``run``
(issue 11, items 2, 8 and 10): a digest that never fires, a non-finite or huge
duration, a sub-millisecond digest, a listen address that is not host:port, a NUL in
a path, and a regular expression that backtracks catastrophically.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config_load import load_config
from monitor.errors import ConfigError
from monitor.units import MAX_DURATION, parse_duration

BASE = """\
database: monitor.db
defaults: {interval: 15m, timeout: 20s}
feeds:
  - url: https://example.org/feed/
watchlists:
  - name: w
    keywords: [S-400]
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return info.value.problems


def only_problem(tmp_path: Path, text: str) -> str:
    [problem] = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'monitor.yaml'}:"), problem
    return problem


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (("interval: 15m", "interval: .nan"), ":2: defaults.interval:"),
        (("interval: 15m", "interval: .inf"), ":2: defaults.interval:"),
        (("interval: 15m", "interval: -.inf"), ":2: defaults.interval:"),
        (("interval: 15m", "interval: 99999999999999999999w"), ":2: defaults.interval:"),
        (("interval: 15m", "interval: 1e400"), ":2: defaults.interval:"),
        (("interval: 15m", f"interval: {10**400}"), ":2: defaults.interval:"),
        (("timeout: 20s", "timeout: .nan"), ":2: defaults.timeout:"),
        (("timeout: 20s", "timeout: 0.001s"), ":2: defaults.timeout:"),
        (("interval: 15m", "interval: 0.000001s"), ":2: defaults.interval:"),
        (("[S-400]", "[S-400]\n    every: 0.000001s"), ":8: watchlists[0].every:"),
        (("[S-400]", "[S-400]\n    every: .nan"), ":8: watchlists[0].every:"),
        (("database: monitor.db", 'database: "mon\\0itor.db"'), ":1: database:"),
        (("database: monitor.db", 'database: ""'), ":1: database:"),
    ],
)
def test_values_that_broke_the_daemon_are_refused_by_key_and_line(
    tmp_path: Path, edit: tuple[str, str], where: str
) -> None:
    problem = only_problem(tmp_path, BASE.replace(*edit))
    assert where in problem, problem


@pytest.mark.parametrize(
    "section",
    [
        "retention: {story_text: .nan}",
        "alerts: {retry_after: .inf}",
        "alerts: {max_retry_after: 1e300}",
        "health: {notify: [ops], failing_after: -.inf}",
        "health: {notify: [ops], min_silence: .nan}",
        "health: {notify: [ops], silence_factor: .inf}",
        "health: {notify: [ops], silence_factor: .nan}",
    ],
)
def test_every_duration_and_number_refuses_non_finite_values(tmp_path: Path, section: str) -> None:
    text = BASE + section + "\nnotify: [{url: 'json://127.0.0.1:1/x', tags: [ops]}]\n"
    problem = only_problem(tmp_path, text)
    key = section.split(":")[0]
    assert f":8: {key}." in problem, problem


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -1.0, 0, "1e400s", "99999999999999999999w", 10**400],
    ids=["nan", "inf", "negative", "zero", "exponent", "huge-weeks", "huge-int"],
)
def test_the_duration_parser_refuses_non_finite_negative_and_absurd_values(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_the_longest_duration_is_accepted_and_one_more_second_is_not() -> None:
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    with pytest.raises(ValueError, match="longer than"):
        parse_duration(MAX_DURATION + 1)


@pytest.mark.parametrize(
    "listen",
    [":::::18998", "::1:9465", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", ":9465",
     "[::1:9465", "bad host:9465", "127.0.0.1:9465:", "[nonsense]:9465", "127.0.0.1:+80",
     "127.0.0.1:٩٤٦٥"],
)  # fmt: skip
def test_a_listen_address_must_be_host_and_a_valid_port(tmp_path: Path, listen: str) -> None:
    problem = only_problem(tmp_path, BASE + f"http: {{listen: '{listen}'}}\n")
    assert ":8: http.listen:" in problem and "host:port" in problem, problem


@pytest.mark.parametrize("listen", ["127.0.0.1:9465", "[::1]:9465", "localhost:80", "0.0.0.0:1"])
def test_good_listen_addresses_load(tmp_path: Path, listen: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(BASE + f"http: {{listen: '{listen}'}}\n", encoding="utf-8")
    config = load_config(path, environ={})
    assert config.http is not None and config.http.listen == listen


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_digest_that_never_fires_is_refused(tmp_path: Path, cron: str) -> None:
    text = BASE.replace("keywords: [S-400]", f"keywords: [S-400]\n    digest: '{cron}'")
    problem = only_problem(tmp_path, text)
    assert ":8: watchlists[0].digest:" in problem and "never" in problem, problem


def test_a_leap_day_digest_is_rare_but_fires(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        BASE.replace("keywords: [S-400]", "keywords: [S-400]\n    digest: '0 8 29 2 *'"), "utf-8"
    )
    assert load_config(path, environ={}).watchlists[0].digest == "0 8 29 2 *"


@pytest.mark.parametrize(
    ("term", "explained"),
    [
        (r"/(a)\1/", "backreference"),
        (r"/(?P<x>a)(?P=x)/", "backreference"),
        (r"/S-400(?= deal)/", "lookahead"),
        (r"/(?<!F-)35/", "lookbehind"),
        (r"/(?>a+)b/", "atomic"),
        (r"/a++b/", "possessive"),
        (r"/(unclosed/", "missing )"),
    ],
)
def test_regex_terms_re2_cannot_run_are_refused_with_a_reason(
    tmp_path: Path, term: str, explained: str
) -> None:
    text = BASE.replace("keywords: [S-400]", f"keywords: ['{term}']")
    problem = only_problem(tmp_path, text)
    assert ":7: watchlists[0].keywords:" in problem, problem
    assert explained in problem, problem


def test_a_python_regex_with_python_only_escapes_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    terms = r"['/\bPAC-?[23]\b/', '/\u0421-400\Z/', '/\d+\s*tonnes/', '/[\w-]+ missile/']"
    path.write_text(BASE.replace("keywords: [S-400]", f"keywords: {terms}"), "utf-8")
    assert len(load_config(path, environ={}).watchlists[0].keywords) == 4


@pytest.mark.parametrize(
    ("section", "key", "hint"),
    [
        ("alerts: {max_attemps: 3}", "alerts.max_attemps", "did you mean 'max_attempts'?"),
        ("alerts: {templates: {titel: x}}", "alerts.templates.titel", "did you mean 'title'?"),
        ("http: {listne: '127.0.0.1:1'}", "http.listne", "did you mean 'listen'?"),
        ("health: {notify: [ops], failng_after: 1h}", "health.failng_after",
         "did you mean 'failing_after'?"),
        ("retention: {story_txt: 1d}", "retention.story_txt", "did you mean 'story_text'?"),
        ("notify: [{url: 'json://127.0.0.1:1/x', tgas: [ops]}]", "notify[0].tgas",
         "did you mean 'tags'?"),
        ("alerts: {zzz: 1}", "alerts.zzz", "known keys: max_attempts, retry_after"),
    ],
)  # fmt: skip
def test_unknown_keys_are_hinted_from_the_model_at_their_place(
    tmp_path: Path, section: str, key: str, hint: str
) -> None:
    text = BASE + section + "\n"
    if "notify:" not in section:
        text += "notify: [{url: 'json://127.0.0.1:1/x', tags: [ops]}]\n"
    found = problems(tmp_path, text)
    assert any(f"{key}: unknown key; {hint}" in problem for problem in found), found


@pytest.mark.parametrize(
    ("key", "yaml_value"),
    [("feeds[0].name", '"Desk \\e]0;owned\\a"'), ("feeds[0].name", '"a\\0b"'),
     ("watchlists[0].name", '"w\\e[2J"'), ("watchlists[0].name", '"two\\nlines"')],
)  # fmt: skip
def test_names_with_control_characters_are_refused(
    tmp_path: Path, key: str, yaml_value: str
) -> None:
    feed_name = yaml_value if key.startswith("feeds") else "Desk"
    list_name = yaml_value if key.startswith("watchlists") else "w"
    text = (
        f"feeds:\n  - url: https://e.org/f\n    name: {feed_name}\n"
        f"watchlists:\n  - name: {list_name}\n    keywords: [S-400]\n"
    )
    assert f"{key}: must not contain control characters" in only_problem(tmp_path, text)
