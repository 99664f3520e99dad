"""The command line: check, once, run, status, alerts, feeds, backtest, search, matches,
story, test-notify, schema.

This is the one place where errors become messages and exit codes: 0 success, 1 a run
that could not happen (unusable database, failed test alert), 2 a bad config or usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from monitor import __version__
from monitor.config import (
    CONSOLE_TARGET,
    Config,
    check_notify_urls,
    config_schema,
    format_duration,
    load_config,
    parse_duration,
    resolve_config_path,
)
from monitor.delivery import send_with_deadline, stuck_sends
from monitor.errors import ConfigError, MonitorError
from monitor.match import Matcher, explain_terms, lint_watchlist, search_query
from monitor.models import Match
from monitor.pipeline import feed_display_name
from monitor.render import Rendered
from monitor.runtime import notifier_for, open_runtime, process_lock
from monitor.service import LogFormat, log_handler
from monitor.store import DELIVERY_STATES, Store, StoredStory

F = TypeVar("F", bound=Callable[..., Any])
ONCE_LOCK_WAIT = 600.0  # a second `once` waits this long for the first, then gives up


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo("error: invalid configuration", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            ctx.exit(2)
        except MonitorError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Config file. Default: $FEED_MONITOR_CONFIG, then config/monitor.yaml.",
    )(func)


def _since_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--since",
        default=default,
        show_default=True,
        callback=_parse_since,
        help="How far back to look (90s, 15m, 1h, 7d, ...).",
    )


def _parse_since(ctx: click.Context, param: click.Parameter, value: str) -> float:
    ctx.meta["since"] = value  # as typed, for messages
    try:
        return time.time() - parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="JSON output, for scripts.")(func)


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A progress bar on a terminal's stderr (never in pipes, logs or --json output);
    yields the function to call as each item is done."""
    if total < 2 or not sys.stderr.isatty():
        yield lambda: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def _load(config_path: Path | None) -> tuple[Path, Config]:
    path = resolve_config_path(config_path)
    return path, load_config(path)


def configure_logging(verbose: int, log_format: LogFormat = "text") -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, handlers=[log_handler(log_format)], force=True)
    # Client libraries may log request URLs at INFO (private feed URLs can carry tokens);
    # apprise is chatty. Their warnings still show.
    for noisy in ("aiohttp", "apprise", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="feed-monitor")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="FEED_MONITOR_LOG_FORMAT",
    show_default=True,
    help="Log lines as text (journald-friendly under systemd) or JSON objects.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, log_format: LogFormat) -> None:
    """Poll RSS/Atom feeds, match keyword watchlists, send alerts."""
    ctx.meta["log_format"] = log_format
    configure_logging(verbose, log_format)


@cli.command()
@config_option
@_json_option
def check(config_path: Path | None, as_json: bool) -> None:
    """Validate the config and print a summary."""
    path, config = _load(config_path)
    warnings = [warning for watchlist in config.watchlists for warning in lint_watchlist(watchlist)]
    targets = notifier_for(config).describe()
    if as_json:
        click.echo(json.dumps({
            "config": str(path), "database": str(config.database),
            "feeds": [{"url": f.url, "name": f.name, "interval": config.feed_interval(f)}
                      for f in config.feeds],
            "watchlists": [w.name for w in config.watchlists],
            "targets": targets, "warnings": warnings,
            "terms": {w.name: explain_terms(w) for w in config.watchlists},
        }, ensure_ascii=False, indent=2))  # fmt: skip
        return
    click.echo(f"{path}: OK")
    click.echo(f"database:   {config.database}")
    d = config.defaults
    click.echo(
        f"defaults:   every {format_duration(d.interval)}, timeout {format_duration(d.timeout)}, "
        f"alert on stories newer than {format_duration(d.max_age)}"
    )
    click.echo(f"feeds:      {len(config.feeds)}")
    for feed in config.feeds:
        click.echo(
            f"  - {feed_display_name(feed.url, feed.name)}  {feed.url}  "
            f"(every {format_duration(config.feed_interval(feed))})"
        )
    click.echo(f"watchlists: {len(config.watchlists)}")
    for watchlist in config.watchlists:
        route = ", ".join(watchlist.notify) if watchlist.notify else "all targets"
        click.echo(f"  - {watchlist.name}: {', '.join(watchlist.keywords)}  -> {route}")
        if watchlist.require:
            click.echo(f"      require: {', '.join(watchlist.require)}")
        if watchlist.exclude:
            click.echo(f"      exclude: {', '.join(watchlist.exclude)}")
        for explanation in explain_terms(watchlist):
            click.echo(f"      {explanation}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    label = "" if config.notify else " (no targets configured: alerts go to the console)"
    click.echo(f"notify:     {len(targets)}{label}")
    for target in targets:
        click.echo(f"  - {target}")


@cli.command()
@config_option
@click.option("--watchlist", "-w", "names", multiple=True, help="Only this watchlist (repeatable).")
@_since_option("30d")
@_json_option
def backtest(config_path: Path | None, names: tuple[str, ...], since: float, as_json: bool) -> None:
    """Replay stored stories against the watchlists; nothing is sent."""
    _, config = _load(config_path)
    known = {watchlist.name for watchlist in config.watchlists}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(
            f"no watchlist named {', '.join(unknown)} (known: {', '.join(sorted(known))})",
            param_hint="--watchlist",
        )
    watchlists = [w for w in config.watchlists if not names or w.name in names]
    matcher = Matcher(watchlists)
    checked = 0
    counts = dict.fromkeys((w.name for w in watchlists), 0)
    with (
        Store.open(config.database) as store,
        _progress(store.count_stories_since(since), "replaying stories") as step,
    ):
        for story in store.stories_since(since):
            step()
            checked += 1
            feed = feed_display_name(story.feed_url, story.feed_name, story.feed_title)
            for match in matcher.match(story.entry, feed):
                counts[match.watchlist] += 1
                _print_backtest_match(story, feed, match, as_json)
    if not as_json:
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        window = click.get_current_context().meta["since"]
        click.echo(f"{checked} stories first seen in the last {window}; matches: {summary}")


def _print_backtest_match(story: StoredStory, feed: str, match: Match, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "watchlist": match.watchlist,
                    "keywords": match.keywords,
                    "terms": match.terms,
                    "title": story.entry.title,
                    "link": story.entry.link,
                    "feed": feed,
                    "published": story.entry.published,
                    "first_seen": story.first_seen,
                    "snippet": match.snippet,
                },
                ensure_ascii=False,
            )
        )
        return
    start, end = match.highlight
    marked = f"{match.snippet[:start]}»{match.snippet[start:end]}«{match.snippet[end:]}"
    seen = time.strftime("%Y-%m-%d %H:%M", time.gmtime(story.first_seen))
    click.echo(f"{seen}  [{match.watchlist}]  {story.entry.title}")
    click.echo(f"    {feed}  {story.entry.link or ''}")
    click.echo(f"    matched {', '.join(match.keywords)} (as {', '.join(match.terms)})")
    click.echo(f"    {marked}\n")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp)) if stamp else "-"


@cli.command()
@config_option
@click.argument("query")
@_since_option("30d")
@click.option("--limit", default=20, show_default=True, help="At most this many stories.")
@_json_option
def search(config_path: Path | None, query: str, since: float, limit: int, as_json: bool) -> None:
    """Full-text search of stored stories (words, not syntax: S-400 and C++ work).

    Each word is read as a watchlist reads a term: S-400 also finds S400, F-35 also F-35A.
    """
    if search_query(query) is None:
        raise click.BadParameter(
            "search for at least one word or number (the query is words, not FTS syntax)",
            param_hint="QUERY",
        )
    _, config = _load(config_path)
    with Store.open(config.database) as store:
        hits = store.search(query, since, limit)
    for hit in hits:
        feed = feed_display_name(hit.feed_url, hit.feed_name, hit.feed_title)
        if as_json:
            click.echo(json.dumps({**dataclasses.asdict(hit), "feed": feed}, ensure_ascii=False))
        else:
            click.echo(f"{_when(hit.first_seen)}  #{hit.story_id}  {hit.title}")
            click.echo(f"    {feed}  {hit.link or ''}\n    {hit.snippet}\n")
    if not as_json:
        click.echo(f"{len(hits)} stories")


@cli.command()
@config_option
@_since_option("7d")
@click.option("--watchlist", "-w", "names", multiple=True, help="Only this watchlist (repeatable).")
@_json_option
def matches(config_path: Path | None, since: float, names: tuple[str, ...], as_json: bool) -> None:
    """Recent watchlist matches and the state of their alerts."""
    _, config = _load(config_path)
    with Store.open(config.database) as store:
        rows = store.recent_matches(since, names)
    for row in rows:
        feed = feed_display_name(row.feed_url, row.feed_name, row.feed_title)
        if as_json:
            click.echo(json.dumps({**dataclasses.asdict(row), "feed": feed}, ensure_ascii=False))
            continue
        state = row.alert_status
        if row.alert_status == "sent":
            state = f"sent {_when(row.sent_at)}"
        elif row.attempts:
            state += f" after {row.attempts} attempts: {row.last_error or ''}"
        click.echo(f"{_when(row.created_at)}  [{row.watchlist}]  #{row.story_id}  {row.title}")
        click.echo(f"    {feed}  {row.link or ''}")
        click.echo(f"    matched {', '.join(row.keywords)}  alert: {state}\n")
    if not as_json:
        click.echo(f"{len(rows)} matches")


@cli.command()
@config_option
@click.argument("story_id", type=int)
@_json_option
def story(config_path: Path | None, story_id: int, as_json: bool) -> None:
    """One stored story: every feed and link it was seen under, and its matches."""
    _, config = _load(config_path)
    with Store.open(config.database) as store:
        sources = store.story_sources(story_id)
        found = store.recent_matches(0, story_id=story_id)
    if not sources:
        raise click.ClickException(f"no story #{story_id}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "sources": [dataclasses.asdict(source) for source in sources],
                    "matches": [dataclasses.asdict(row) for row in found],
                },
                ensure_ascii=False,
            )
        )
        return
    click.echo(f"#{story_id}  seen in {len(sources)} places:")
    for source in sources:
        feed = feed_display_name(source.feed_url, source.feed_name, source.feed_title)
        click.echo(f"  {_when(source.first_seen)}  {feed}  {source.link or '(no link)'}")
    for row in found:
        click.echo(f"matched [{row.watchlist}] {', '.join(row.keywords)}: alert {row.alert_status}")


@cli.command()
@config_option
@_json_option
def once(config_path: Path | None, as_json: bool) -> None:
    """Poll every feed once, deliver alerts, and exit."""
    path = resolve_config_path(config_path)
    config = load_config(path, check_notify=False)
    with process_lock(config.database, "once", wait=ONCE_LOCK_WAIT):
        asyncio.run(_once(config, as_json))


async def _once(config: Config, as_json: bool) -> None:
    async with open_runtime(config) as runtime:
        store = runtime.store
        with store.batching(), _progress(len(config.feeds), "polling feeds") as step:
            outcomes = await runtime.poller.poll_all(lambda _: step())
        if store.has_undelivered():
            check_notify_urls(config)  # deferred by load_config: costly, often not needed
        delivered = await runtime.deliverer.deliver_due(ignore_backoff=True)
        runtime.poller.prune()
        store.index_pending()
    failed = [outcome for outcome in outcomes if not outcome.ok]  # each already logged
    if as_json:
        click.echo(json.dumps({
            "feeds": [dataclasses.asdict(outcome) for outcome in outcomes],
            "new_stories": sum(o.new_stories for o in outcomes),
            "alerts_queued": sum(o.alerts_queued for o in outcomes),
            "sent": delivered.sent, "failed_deliveries": delivered.failed,
        }, ensure_ascii=False))  # fmt: skip
        return
    click.echo(
        f"polled {len(outcomes)} feeds ({len(outcomes) - len(failed)} ok, {len(failed)} failed, "
        f"{sum(o.unchanged for o in outcomes)} unchanged), "
        f"{sum(o.new_stories for o in outcomes)} new stories, "
        f"{sum(o.alerts_queued for o in outcomes)} alerts queued, "
        f"{delivered.sent} sent, {delivered.failed} failed deliveries"
    )


@cli.command()
@config_option
def run(config_path: Path | None) -> None:
    """Run the daemon: poll feeds on their schedules until stopped."""
    from monitor.daemon import Daemon  # APScheduler is only needed here

    path, config = _load(config_path)
    if not logging.getLogger().isEnabledFor(logging.INFO):
        configure_logging(1, click.get_current_context().meta["log_format"])  # say what it does
    asyncio.run(Daemon(path, config).run())


@cli.group()
def feeds() -> None:
    """List the feeds, add or remove one, import or export OPML (comments are kept)."""


@feeds.command("list")
@config_option
@_json_option
def feeds_list(config_path: Path | None, as_json: bool) -> None:
    """The configured feeds, with their names and intervals."""
    path = resolve_config_path(config_path)
    config = load_config(path, check_notify=False)
    rows = [
        {"url": feed.url, "name": feed.name, "interval": config.feed_interval(feed)}
        for feed in config.feeds
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        name = row["name"] or feed_display_name(str(row["url"]), None)
        click.echo(f"{name}  {row['url']}  every {format_duration(float(row['interval'] or 0))}")
    click.echo(f"{len(rows)} feeds in {path}")


@feeds.command("add")
@config_option
@click.argument("url")
@click.option("--name", help="A display name (default: the feed's own title).")
def feeds_add(config_path: Path | None, url: str, name: str | None) -> None:
    """Add a feed to the config file."""
    from monitor.config_edit import NewFeed, add_feeds  # ruamel.yaml: only for edits

    path = resolve_config_path(config_path)
    added, _ = add_feeds(path, [NewFeed(url.strip(), name)])
    click.echo(f"added {url}" if added else f"{url} is already listed")


@feeds.command("remove")
@config_option
@click.argument("url")
def feeds_remove(config_path: Path | None, url: str) -> None:
    """Remove a feed from the config file (its stored stories are kept)."""
    from monitor.config_edit import remove_feed

    path = resolve_config_path(config_path)
    remove_feed(path, url.strip())
    click.echo(f"removed {url}")


@feeds.command("import-opml")
@config_option
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def feeds_import_opml(config_path: Path | None, opml_file: Path) -> None:
    """Add every feed of an OPML file (from any feed reader) not listed yet."""
    from monitor.config_edit import NewFeed, add_feeds
    from monitor.opml import read_opml

    path = resolve_config_path(config_path)
    outlines = read_opml(opml_file.read_bytes())
    usable = [o for o in outlines if urlsplit(o.url).scheme.lower() in ("http", "https")]
    added, skipped = add_feeds(path, [NewFeed(o.url, o.title) for o in usable])
    click.echo(
        f"added {len(added)} feeds, {len(skipped)} already listed"
        + (
            f", {len(outlines) - len(usable)} not http(s), left out"
            if len(usable) < len(outlines)
            else ""
        )
    )


@feeds.command("export-opml")
@config_option
def feeds_export_opml(config_path: Path | None) -> None:
    """Print the feeds as OPML, for any feed reader."""
    from monitor.opml import OutlineFeed, write_opml

    path = resolve_config_path(config_path)
    config = load_config(path, check_notify=False)
    click.echo(write_opml([OutlineFeed(feed.url, feed.name) for feed in config.feeds]), nl=False)


@cli.command()
def schema() -> None:
    """Print the config file's JSON Schema (also shipped as monitor/config.schema.json)."""
    click.echo(json.dumps(config_schema(), indent=2, ensure_ascii=False))


@cli.command("test-notify")
@config_option
@click.option("--tag", "tags", multiple=True, help="Only targets with this tag (repeatable).")
@_json_option
def test_notify(config_path: Path | None, tags: tuple[str, ...], as_json: bool) -> None:
    """Send a test alert and report each target's result."""
    _, config = _load(config_path)
    channels = notifier_for(config).channels
    wanted = {target.key for target in config.notify if not tags or set(target.tags) & set(tags)}
    text = f"This is a test alert from feed-monitor {__version__}. Delivery works."
    message = Rendered("feed-monitor test alert", text, "text")
    timeout = config.alerts.send_timeout
    failed = False
    for key, channel in channels.items():
        if config.notify and key not in wanted:
            continue
        outcome, _ = asyncio.run(send_with_deadline(channel, message, timeout))
        if as_json:
            click.echo(json.dumps({"target": channel.label, "ok": outcome.ok,
                                   "detail": outcome.detail}))  # fmt: skip
        else:
            click.echo(f"{channel.label}: {outcome.detail}")
        failed = failed or not outcome.ok
    if failed:
        raise click.exceptions.Exit(1)


def _ago(stamp: float | None, now: float) -> str:
    if stamp is None:
        return "never"
    delta = now - stamp
    seconds = abs(delta)
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 1.5 * size:
            text = f"{seconds / size:.0f}{unit}"
            break
    else:
        text = f"{seconds:.0f}s"
    return f"{text} ago" if delta > 0 else f"in {text}"


@cli.command()
@config_option
@_json_option
def status(config_path: Path | None, as_json: bool) -> None:
    """Show each feed's last poll, HTTP status, stories, last error and next poll."""
    path = resolve_config_path(config_path)
    config = load_config(path, check_notify=False)
    with Store.open(config.database) as store:
        configured = {feed.url for feed in config.feeds}
        feeds = [feed for feed in store.feed_status() if feed.url in configured]
        counts = store.delivery_counts()
    now = time.time()
    if as_json:
        names = {feed.url: feed_display_name(feed.url, feed.name, feed.title) for feed in feeds}
        report = {
            "feeds": [
                {**dataclasses.asdict(feed), "display_name": names[feed.url], "health": feed.health}
                for feed in feeds
            ],
            "deliveries": {key: counts.get(key, 0) for key in DELIVERY_STATES},
        }
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    rows = [("FEED", "LAST POLL", "HTTP", "STORIES", "INTERVAL", "NEXT POLL", "LAST ERROR")]
    moved: list[str] = []
    for feed in feeds:
        rows.append(
            (
                feed_display_name(feed.url, feed.name, feed.title),
                _ago(feed.last_polled_at, now),
                str(feed.last_status or "-"),
                str(feed.stories),
                format_duration(round(feed.interval)) if feed.interval else "-",
                "never (gone)"
                if feed.gone_at
                else _ago(feed.next_poll_at, now)
                if feed.last_polled_at
                else "-",
                (feed.last_error or "")[:80],
            )
        )
        if feed.effective_url and feed.effective_url != feed.url:
            moved.append(f"{feed.url} moved permanently to {feed.effective_url}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for line in moved:
        rows.append((f"  {line}", "", "", "", "", "", ""))
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    click.echo(
        f"\ndeliveries: {counts.get('sent', 0)} sent, {counts.get('pending', 0)} pending, "
        f"{counts.get('held', 0)} held for digests, {counts.get('failed', 0)} failed"
    )


@cli.group(invoke_without_command=True)
@config_option
@click.option("--failed", is_flag=True, help="Only alerts with a failed delivery.")
@click.option("--limit", default=50, show_default=True, help="How many, newest first.")
@_json_option
@click.pass_context
def alerts(
    ctx: click.Context, config_path: Path | None, failed: bool, limit: int, as_json: bool
) -> None:
    """List alerts and how each delivery stands (see also: alerts retry)."""
    if ctx.invoked_subcommand is not None:
        return
    _, config = _load(config_path)
    labels = _target_labels(config)
    with Store.open(config.database) as store:
        rows = store.alert_rows(failed_only=failed, limit=limit)
        trails = {d["id"]: store.attempts_of(d["id"]) for row in rows for d in row.deliveries}
    if as_json:
        out = []
        for row in rows:
            item = dataclasses.asdict(row)
            item["status"] = row.status
            for d in item["deliveries"]:
                d["target"] = labels.get(d["target"], d["target"])
                d["attempts_log"] = [
                    {"at": at, "target": target, "ok": ok, "detail": detail}
                    for at, target, ok, detail in trails[d["id"]]
                ]
            out.append(item)
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no alerts" + (" with failed deliveries" if failed else ""))
        return
    for row in rows:
        click.echo(
            f"#{row.id}  {_when(row.created_at)}  [{row.watchlist}] {row.title}  {row.status}"
        )
        for d in row.deliveries:
            note = f"  {d['last_error']}" if d["last_error"] and d["status"] != "sent" else ""
            held = f" ({d['reason']})" if d["reason"] else ""
            click.echo(
                f"    {labels.get(d['target'], d['target'])}: {d['status']}{held}, "
                f"{d['attempts']} attempts{note}"
            )


@alerts.command("retry")
@config_option
@click.argument("alert_ids", nargs=-1, type=int)
def alerts_retry(config_path: Path | None, alert_ids: tuple[int, ...]) -> None:
    """Queue failed deliveries again (of ALERT_IDS, or all); the daemon or `once` sends them."""
    _, config = _load(config_path)
    with Store.open(config.database) as store:
        count = store.retry_failed(list(alert_ids) or None, time.time())
    click.echo(f"{count} failed deliveries queued again")


def _target_labels(config: Config) -> dict[str, str]:
    """Outbox keys to masked target URLs, without loading Apprise when there is none."""
    if not config.notify:
        return {CONSOLE_TARGET: "console"}
    return {key: channel.label for key, channel in notifier_for(config).channels.items()}


def main() -> None:
    # The modules imported so far live until exit. Freezing them keeps the garbage
    # collector from walking them again, on every full collection and once more at exit
    # (~40 ms of a short `once` run; also less work for a long-running daemon).
    gc.freeze()
    try:
        cli(prog_name="feed-monitor")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if stuck := stuck_sends():
            # Apprise runs each send in a pool thread that the interpreter would wait for
            # at exit, forever if the target never answers: leave without waiting.
            logging.getLogger(__name__).warning(
                "exiting with %d sends still waiting for an answer (given up)", stuck
            )
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise
