"""A routing rule that cannot be applied affects its own watchlist or target only.

Issue 11, item 2: a digest schedule that never fires (``0 0 31 2 *``) made every
delivery pass raise, so no target received anything. ``check`` now refuses such a
line (tests/test_config_validation.py); these tests pin down that routing itself
survives any broken rule that gets past validation.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time

import pytest

from monitor.outbox import (
    DigestSchedule,
    HeldDelivery,
    Policy,
    QuietHours,
    Target,
    UnroutedAlert,
    WatchlistRules,
    release,
    route,
)

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC).timestamp()


def test_a_digest_that_never_fires_sends_its_alerts_now_and_routes_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = Policy(
        [Target("a")],
        {
            "never": WatchlistRules(DigestSchedule(cron="0 0 31 2 *")),
            "hourly": WatchlistRules(DigestSchedule(every=3600)),
        },
        zone=UTC,
    )
    alerts = [
        UnroutedAlert(1, "never", (), "b1"),
        UnroutedAlert(2, "hourly", (), "b1"),
        UnroutedAlert(3, "immediate", (), "b1"),
    ]
    with caplog.at_level(logging.ERROR, logger="monitor.outbox"):
        first = route(alerts, policy, NOW)
        second = route(alerts, policy, NOW + 60)  # the next delivery pass
    by_alert = {delivery.alert_ids: delivery for delivery in first}
    assert by_alert[(1,)].held_until is None  # sent now, not lost or held forever
    assert by_alert[(2,)].held_until == datetime(2026, 11, 25, 11, tzinfo=UTC).timestamp()
    assert by_alert[(3,)].held_until is None
    assert len(second) == 3
    [record] = caplog.records  # logged once, not on every pass
    assert "watchlist 'never'" in record.getMessage() and "never fires" in record.getMessage()


def test_a_broken_target_rule_releases_its_own_held_alerts_and_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = QuietHours(start="22:00", end=time(7))  # type: ignore[arg-type]
    quiet = QuietHours(time(10), time(11))  # 10:30 is inside
    policy = Policy([Target("broken", quiet_hours=broken), Target("quiet", quiet_hours=quiet),
                     Target("open")], zone=UTC)  # fmt: skip
    held = [
        HeldDelivery(1, "broken", "digest w", (10,)),
        HeldDelivery(2, "quiet", "digest w", (11,)),
        HeldDelivery(3, "open", "digest w", (12,)),
    ]
    with caplog.at_level(logging.ERROR, logger="monitor.outbox"):
        released = release(held, policy, NOW)
    assert sorted(r.target for r in released) == ["broken", "open"]
    assert len(caplog.records) == 1 and "target broken" in caplog.records[0].getMessage()
