"""Rendering alerts from untrusted feed text, and the retry schedule."""

from __future__ import annotations

from monitor.alert import MAX_ATTEMPTS, defang, render_alert, retry_after
from monitor.models import Entry, Match


def test_mass_mentions_are_neutralized() -> None:
    for ping in ("@everyone", "@here", "@room", "<!channel>", "<!here>", "<@U123>", "<@&42>"):
        assert ping not in defang(f"hello {ping} world")
    assert defang("mail me at a@b.org") != "mail me at a@b.org"  # harmless, still broken
    assert defang("no pings here") == "no pings here"


def test_alert_names_story_terms_and_feed() -> None:
    entry = Entry(
        key="k",
        title="@everyone S-400 for Turkey",
        link="https://e.org/a",
        published=1_790_000_000.0,
    )
    match = Match("turkey", ("S-400",), ("S-400",), "… for S-400 for Turkey", (6, 11))
    message = render_alert("Feed <!channel>", entry, match, ("analysts",))
    assert message.title == "[turkey] @\u200beveryone S-400 for Turkey"
    assert message.tags == ("analysts",)
    assert "https://e.org/a" in message.body
    assert "Matched:   S-400 (as S-400)" in message.body
    assert "<!channel>" not in message.body
    assert "»S-400«" in message.body
    assert "2026-" in message.body


def test_overlong_titles_are_truncated() -> None:
    entry = Entry(key="k", title="S-400 " * 100, link=None)
    match = Match("w", ("S-400",), ("S-400",), "S-400", (0, 5))
    message = render_alert("f", entry, match, ())
    assert len(message.title) <= 200 and message.title.endswith("…")
    assert "(no link)" in message.body


def test_retry_backoff_grows_caps_and_gives_up() -> None:
    delays = [retry_after(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays[0] == 60 and delays[1] == 120
    assert all(d is not None and d <= 3600 for d in delays[:-1])
    assert delays[-1] is None
