"""The daemon's optional HTTP endpoint: ``/healthz`` and Prometheus ``/metrics``.

Off unless the config sets ``http: {listen: 127.0.0.1:9465}``; meant for localhost (a
reverse proxy or the Prometheus agent on the same host). Served by aiohttp on the
daemon's own event loop. The numbers come from the database (stories, matches, the
outbox) and from the poller's counters since start (polls and their outcomes). Feeds are
labelled by their masked URLs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from aiohttp import web

from monitor import __version__
from monitor.errors import ServiceError
from monitor.models import PollCounters
from monitor.redact import mask_url
from monitor.store import DELIVERY_STATES, Store
from monitor.units import parse_listen


def render_metrics(store: Store, counters: PollCounters, configured: Iterable[str]) -> str:
    """The Prometheus text exposition of the daemon's state."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP feed_monitor_{name} {help_text}")
        lines.append(f"# TYPE feed_monitor_{name} {kind}")
        lines.extend(f"feed_monitor_{name}{labels} {value:.17g}" for labels, value in samples)

    metric("info", "gauge", "Build information.", [(f'{{version="{__version__}"}}', 1)])
    metric("start_time_seconds", "gauge", "When the daemon started (Unix time).",
           [("", counters.started_at)])  # fmt: skip
    metric("polls_total", "counter", "Feed polls since start, by outcome.", [
        ('{outcome="ok"}', counters.ok), ('{outcome="unchanged"}', counters.unchanged),
        ('{outcome="error"}', counters.failed),
    ])  # fmt: skip
    stories, matches = store.totals()
    metric("stories", "gauge", "Stories stored.", [("", stories)])
    metric("matches_total", "counter", "Watchlist matches stored.", [("", matches)])
    counts = store.delivery_counts()
    metric("deliveries", "gauge", "Outbox deliveries by state (pending + held: the queue).",
           [(f'{{state="{state}"}}', counts.get(state, 0))
            for state in DELIVERY_STATES])  # fmt: skip
    wanted = set(configured)
    feeds = [feed for feed in store.feed_status() if feed.url in wanted]
    labels = _feed_labels([feed.url for feed in feeds])
    metric("feed_last_success_timestamp_seconds", "gauge",
           "When each feed was last polled successfully (Unix time).",
           [(labels[feed.url], feed.last_success_at or 0) for feed in feeds])  # fmt: skip
    metric("feed_consecutive_errors", "gauge", "Failed polls in a row, per feed.",
           [(labels[feed.url], feed.error_count) for feed in feeds])  # fmt: skip
    return "\n".join(lines) + "\n"


def _feed_labels(urls: list[str]) -> dict[str, str]:
    """Each feed's label set: its URL masked (``mask_url``: a scrape must not collect a
    feed's password or token). Two URLs that mask alike get ``#2``, ``#3``... appended, so
    that no two series share labels."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for url in urls:
        shown = mask_url(url)
        seen[shown] = seen.get(shown, 0) + 1
        if seen[shown] > 1:
            shown = f"{shown} #{seen[shown]}"
        out[url] = f'{{feed="{_label(shown)}"}}'
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def make_app(
    health: Callable[[], dict[str, object]], metrics: Callable[[], str]
) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        report = health()
        status = 200 if report.get("status") == "ok" else 503
        return web.Response(text=json.dumps(report), status=status, content_type="application/json")

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(text=metrics(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def serve(app: web.Application, listen: str) -> web.AppRunner:
    """Serve ``app`` on ``listen`` (``host:port``, validated by the config); a port in use
    or an address this machine does not have is a ``ServiceError``."""
    parsed = parse_listen(listen)
    if parsed is None:  # the config refuses it; here for the type checker
        raise ServiceError(f"http.listen {listen!r} is not host:port")
    host, port = parsed
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host or "127.0.0.1", port).start()
    except OSError as exc:  # in use, not an address of this machine, a name that fails
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        raise ServiceError(
            f"cannot serve /healthz and /metrics on {listen} (http.listen): {reason}"
        ) from exc
    return runner
