"""Rendering alerts from untrusted feed text, per format, and the outbox's decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from msgspec.structs import replace

from monitor.models import AlertContent
from monitor.outbox import (
    DigestSchedule,
    HeldDelivery,
    Policy,
    QuietHours,
    Target,
    UnroutedAlert,
    WatchlistRules,
    release,
    retry_delay,
    route,
)
from monitor.render import check_template, defang, render_alert, render_delivery

CONTENT = AlertContent(
    story_title="@everyone S-400 for Turkey <script>alert(1)</script> **bold** [x](y)",
    link="https://e.org/a?b=1&c=2",
    feed="Feed <!channel>",
    published=1_790_000_000.0,
    watchlist="turkey",
    keywords=("S-400",),
    terms=("S-400",),
    snippet="… deliveries of the S-400 to Turkey @here",
    highlight=(20, 25),
)


def test_mass_mentions_are_neutralized() -> None:
    for ping in ("@everyone", "@here", "@room", "<!channel>", "<!here>", "<@U123>", "<@&42>"):
        assert ping not in defang(f"hello {ping} world")
    assert defang("no pings here") == "no pings here"


def test_text_alert_names_story_terms_and_feed() -> None:
    message = render_alert(CONTENT, "text")
    assert message.title.startswith("[turkey] @\u200beveryone S-400 for Turkey")
    assert "https://e.org/a?b=1&c=2" in message.body
    assert "Matched:   S-400 (as S-400)" in message.body
    assert "»S-400«" in message.body and "2026-" in message.body
    assert "<!channel>" not in message.body and "@here" not in message.body


def test_html_escapes_feed_text_and_highlights() -> None:
    message = render_alert(CONTENT, "html")
    assert "<script>" not in message.body and "&lt;script&gt;" in message.body
    assert "<b>S-400</b>" in message.body
    assert 'href="https://e.org/a?b=1&amp;c=2"' in message.body
    assert "<script>" in message.title  # a plain-text title (an email subject) stays literal
    inside = render_alert(CONTENT, "html", title_in_body=True)
    assert "<script>" not in inside.title


def test_markdown_escapes_markup_from_the_feed() -> None:
    message = render_alert(CONTENT, "markdown")
    assert "\\*\\*bold\\*\\*" in message.body and "\\[x\\](y)" in message.body
    assert "**S-400**" in message.body


@pytest.mark.parametrize("link", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x"])
def test_only_http_links_are_rendered(link: str) -> None:
    content = replace(CONTENT, link=link)
    for fmt in ("text", "markdown", "html"):
        message = render_alert(content, fmt)  # type: ignore[arg-type]
        assert link not in message.body and link.split(":")[0] + ":" not in message.body


def test_overlong_titles_are_truncated_and_control_characters_dropped() -> None:
    content = replace(CONTENT, story_title="S-400\u202e\x00 " * 100)
    message = render_alert(content, "text")
    assert len(message.title) <= 200 and message.title.endswith("…")
    assert "\u202e" not in message.title and "\x00" not in message.body


def test_user_templates_and_their_checks() -> None:
    message = render_alert(CONTENT, "text", {"text": "$watchlist: $title <$link>"})
    assert message.body.startswith("turkey: @\u200beveryone S-400")
    assert check_template("$title by $author") == (
        "unknown placeholder $author; known: $title, $link, $feed, $published, $watchlist, "
        "$keywords, $terms, $snippet"
    )
    assert "invalid template" in (check_template("costs $") or "")


def test_digest_lists_every_story_once() -> None:
    other = replace(CONTENT, story_title="CAATSA waiver", link=None)
    digest = render_delivery("digest", "digest turkey", [CONTENT, other], "markdown")
    assert digest.title == "[turkey] digest: 2 matching stories"
    assert digest.body.count("\n- ") + digest.body.startswith("- ") == 2
    assert "[@\u200beveryone S-400" in digest.body
    summary = render_delivery("summary", None, [CONTENT] * 7, "text")
    assert summary.title == "[turkey] 7 matching stories in one poll of Feed <!channel>"


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()
A, B = Target("a", frozenset({"analysts"})), Target("b", frozenset({"ops"}))


def alerts(n: int, watchlist: str = "w", tags: tuple[str, ...] = (), batch: str = "p1") -> list:
    return [UnroutedAlert(i, watchlist, tags, batch) for i in range(1, n + 1)]


def test_routing_by_tags_and_the_burst_guard() -> None:
    policy = Policy([A, B], burst_limit=3, zone=UTC)
    routed = route(alerts(2, tags=("analysts",)), policy, NOW)
    assert [(d.target, d.kind, d.alert_ids) for d in routed] == [
        ("a", "alert", (1,)),
        ("a", "alert", (2,)),
    ]
    burst = route(alerts(5), policy, NOW)
    assert [(d.target, d.kind, len(d.alert_ids)) for d in burst] == [
        ("a", "summary", 5),
        ("b", "summary", 5),
    ]
    # Three alerts from each of two polls stay separate alerts: the guard is per poll.
    two_polls = route(alerts(3, batch="p1") + alerts(3, batch="p2"), policy, NOW)
    assert {d.kind for d in two_polls} == {"alert"} and len(two_polls) == 12


def test_digests_and_quiet_hours_hold_until_their_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    daily = Policy([A], {"w": WatchlistRules(DigestSchedule(cron="0 8 * * *"))}, zone=berlin)
    [held] = route(alerts(1), daily, NOW)
    assert held.held_until == datetime(2026, 11, 25, 8, 0, tzinfo=berlin).timestamp()
    hourly = Policy([A], {"w": WatchlistRules(DigestSchedule(every=3600))}, zone=UTC)
    assert route(alerts(1), hourly, NOW + 60)[0].held_until == NOW + 3600

    night = Target("a", quiet_hours=QuietHours.parse("22:00-07:00"))
    policy = Policy([night], zone=UTC)
    late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC).timestamp()
    [quiet] = route(alerts(1), policy, late)
    assert quiet.reason == "quiet hours"
    assert quiet.held_until == datetime(2026, 11, 25, 7, 0, tzinfo=UTC).timestamp()
    assert route(alerts(1), policy, NOW)[0].held_until is None  # noon is not quiet

    held_rows = [
        HeldDelivery(1, "a", "quiet hours", (1,)),
        HeldDelivery(2, "a", "quiet hours", (2,)),
    ]
    assert release(held_rows, policy, late) == []  # still quiet: wait
    [morning] = release(held_rows, policy, quiet.held_until or 0)
    assert morning.held_ids == (1, 2) and morning.alert_ids == (1, 2)


def test_retry_backoff_grows_caps_and_gives_up() -> None:
    policy = Policy([A], max_attempts=12, retry_after=60, max_retry_after=3600)
    delays = [retry_delay(n, policy) for n in range(1, 13)]
    assert delays[0] == 60 and delays[1] == 120 and delays[6] == 3600
    assert all(d is not None and d <= 3600 for d in delays[:-1])
    assert delays[-1] is None


def test_the_secret_parts_of_notify_urls_are_found_for_masking() -> None:
    from monitor.alert import secrets_of

    url = "mailto://user:pa55word@smtp.example.org?to=desk@example.org"
    masked = "mailto://user:****@smtp.example.org/desk%40example.org?overflow=truncate"
    assert secrets_of(url, masked) == {"pa55word"}
    assert secrets_of("tgram://123456789:ABCdefGHIjkl/4242", "tgram://1...l/4242/") == {
        "123456789", "ABCdefGHIjkl"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45.4, "45s"), (60, "1m"), (346, "5m46s"), (1822, "30m22s"), (3600, "1h"),
     (7500, "2h5m"), (90061, "1d1h")],
)  # fmt: skip
def test_decided_intervals_are_shown_in_their_two_largest_units(seconds: float, shown: str) -> None:
    from monitor.render import format_interval

    assert format_interval(seconds) == shown
