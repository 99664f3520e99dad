"""The masking and neutralizing rules of ``monitor.redact``, one case per rule."""

from __future__ import annotations

import pytest

from monitor.redact import mask_url, redact_text, remember_secret, safe_json, terminal_safe


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@h.example/feed", "https://****@h.example/feed"),
        ("https://h.example/f?a=1&api_key=k&Signature=s&page=2",
         "https://h.example/f?a=1&api_key=****&Signature=****&page=2"),
        ("https://h.example/f?X-Amz-Credential=c&author=bob", "https://h.example/f?X-Amz-Credential=****&author=bob"),
        ("http://[::1", "http://[::1"),
        ("https://h.example/feed", "https://h.example/feed"),
    ],
)  # fmt: skip
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_terminal_safe_keeps_text_and_drops_what_a_terminal_acts_on() -> None:
    assert terminal_safe("a\x1b]0;x\x07b\nc\u202ed\x9be") == "a\ufffd]0;x\ufffdb cd\ufffde"
    assert redact_text("see https://a:b@h/x and more") == "see https://****@h/x and more"


def test_known_secrets_are_masked_anywhere_but_short_values_are_not() -> None:
    remember_secret("a-Known-Secret")
    remember_secret("on")  # too short to be a secret: masking it would garble every line
    assert redact_text("path /x/a-Known-Secret/y is on") == "path /x/****/y is on"
    assert mask_url("https://h.example/a-Known-Secret/feed") == "https://h.example/****/feed"


def test_safe_json_keeps_the_data_and_escapes_what_a_terminal_acts_on() -> None:
    text = safe_json({"title": "x\x9b2J\u202ey\x1b", "url": "https://u:p@h/"})
    assert "\x9b" not in text and "\u202e" not in text and "\x1b" not in text
    assert text == '{"title": "x\\u009b2J\\u202ey\\u001b", "url": "https://****@h/"}'


def test_literal_credentials_are_remembered_but_not_ordinary_words_or_numbers() -> None:
    from monitor.redact import remember_credentials

    remember_credentials("https://bob:Pw-Lit3ral@feeds.example/f?apikey=Key-Lit3ral-99&s=1")
    remember_credentials("https://feeds.example/f?session=2024&auth=public&token=abc")
    line = "POST /f?x=1 by Pw-Lit3ral with Key-Lit3ral-99, in 2024, public feed abc"
    assert redact_text(line) == "POST /f?x=1 by **** with ****, in 2024, public feed abc"
    # In a request line, every secret-looking parameter is masked, whatever its value.
    assert redact_text("GET /f?session=2024&page=2") == "GET /f?session=****&page=2"


def test_header_and_malformed_urls_are_masked_and_ordinary_parameters_kept() -> None:
    from monitor.redact import remember_credentials

    header = "json://127.0.0.1:9/hook?+Authorization=Bearer%20s3cr3tT0kenValue"
    remember_credentials(header, target=True)
    assert mask_url(header) == "json://127.0.0.1:9/hook?+Authorization=****"
    assert "s3cr3tT0kenValue" not in redact_text("POST /hook Bearer%20s3cr3tT0kenValue failed")
    # A port out of range: urlsplit refuses it, the credentials are masked all the same.
    bad_port = "http://reader:pw123@127.0.0.1:80800/feed?token=abc"
    assert mask_url(bad_port) == "http://****@127.0.0.1:80800/feed?token=****"
    for url in ("https://e.org/s?keywords=S-400", "https://e.org/t?hashtag=osint",
                "https://e.org/d?design=x&assignee=y&author=z"):  # fmt: skip
        assert mask_url(url) == url
    # A URL in a sentence keeps the punctuation after it.
    assert redact_text("feed (https://e.org/f?token=abc): refused") == (
        "feed (https://e.org/f?token=****): refused"
    )


def test_words_in_urls_are_not_taken_for_secrets() -> None:
    from monitor.redact import remember_credentials

    remember_credentials("json://hooks.example/Breaking/Headlines/Xy7Qz9Lm2Kp", target=True)
    remember_credentials("https://reader:police@feeds.example/f")  # a word, however secret
    text = "Breaking: Headlines as police said"
    assert redact_text(text) == text
    assert redact_text("POST /Breaking/Headlines/Xy7Qz9Lm2Kp") == "POST /Breaking/Headlines/****"


def test_safe_json_masks_secrets_in_keys_too() -> None:
    # Found by the hostile-arguments sweep: `check --json` keys its "terms" by watchlist
    # name, and a name made from ${VAR} came out whole.
    remember_secret("Keyed-Sekrit-9931")
    text = safe_json({"wKeyed-Sekrit-9931": ["Keyed-Sekrit-9931"], "plain": 1})
    assert "Keyed-Sekrit-9931" not in text
    assert '"plain": 1' in text


def test_a_secret_is_masked_lowercased_too_as_a_host_name_shows_it() -> None:
    """`https://${TENANT}.example.com/feed` is listed with its host lowercased."""
    remember_secret("Tenant-Secret-X9")
    shown = redact_text("polled https://tenant-secret-x9.example.com/feed")
    assert "tenant-secret-x9" not in shown.lower()
