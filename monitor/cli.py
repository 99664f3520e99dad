"""The command line: check, once, run, status, alerts, feeds, backtest, search, matches,
story, test-notify, backup, schema.

This is the one place where errors become messages and exit codes: 0 success, 1 a run
that could not happen (unusable database, failed test alert), 2 a bad config or usage.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from monitor import __version__
from monitor.config_load import (
    check_notify_urls,
    load_config,
    read_at_most,
    resolve_config_path,
    secret_value,
)
from monitor.delivery import DeliverySummary, send_with_deadline, stuck_sends
from monitor.errors import ConfigError, MonitorError
from monitor.explain import explain_story, not_alerted_reason
from monitor.match import Matcher, explain_terms, lint_watchlist, search_query
from monitor.models import Match
from monitor.pattern import PatternError
from monitor.pipeline import PollOutcome, feed_display_name
from monitor.redact import (
    RedactingFilter,
    mask_url,
    redact_text,
    safe_json,
    terminal_safe,
)
from monitor.render import Rendered, count_of, format_interval, format_time, shorten
from monitor.run_config import CONSOLE_TARGET, RunConfig, from_config
from monitor.runtime import notifier_for, open_runtime, process_lock
from monitor.service import LogFormat, log_handler
from monitor.store import DELIVERY_STATES, Store, StoredStory, database_problem
from monitor.text import safe_link
from monitor.units import format_duration, parse_duration

F = TypeVar("F", bound=Callable[..., Any])
EXCERPT_CHARS = 400  # of a story's text, in `story`
ONCE_LOCK_WAIT = 600.0  # a second `once` waits this long for the first, then gives up
ONCE_SEND_GRACE = 10.0  # a `once` stopped while sending lets the send in flight end this long


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            _say("error: invalid configuration", *(f"  {p}" for p in exc.problems), err=True)
            ctx.exit(2)
        except MonitorError as exc:
            first, *rest = str(exc).splitlines() or [""]
            _say(f"error: {first}", *rest, err=True)
            ctx.exit(1)


MAX_OPML_BYTES = 64 * 2**20  # 100,000 feeds take about 20 MB of OPML

# Story and alert ids, and how many rows to show: SQLite's integers are 64-bit, and a
# larger number given on the command line would reach it as an OverflowError.
_POSITIVE_INT64 = click.IntRange(1, 2**63 - 1)


def _say(*lines: str, err: bool = False) -> None:
    """Print ``lines`` for a person, each on one line of its own: URLs and known secrets
    masked, control characters neutralized (feed text reaches here, and a title must not
    retitle the terminal, clear it or forge a line). Every line a command prints goes
    through here or ``_say_json``."""
    for line in lines:
        click.echo(_shown(line), err=err)


def _shown(text: str) -> str:
    return terminal_safe(redact_text(text))


def _say_json(value: object, indent: int | None = None) -> None:
    """Print ``value`` as JSON for scripts: the data exact, but secrets masked and no
    character a terminal acts on left raw."""
    click.echo(safe_json(value, indent=indent))


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="RunConfig file. Default: $FEED_MONITOR_CONFIG, then config/monitor.yaml.",
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


def _duration(value: str, floor: float = 0.0) -> float:
    try:
        return parse_duration(value, floor)
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


def _load(config_path: Path | None) -> tuple[Path, RunConfig]:
    """The config for a command that sends (or checks the targets): secrets filled in."""
    path = resolve_config_path(config_path)
    return path, load_config(path)


def _load_for_reading(config_path: Path | None) -> tuple[Path, RunConfig]:
    """The config for a command that sends nothing: the notify URLs' secrets (``${VAR}``,
    ``${credential:...}``) are neither needed nor read, so it runs outside the service's
    environment too."""
    path = resolve_config_path(config_path)
    return path, load_config(path, need_targets=False)


def _require_database(config: RunConfig) -> None:
    """A command that reads the database refuses a missing one rather than create it: a
    mistyped path would print an empty table, exit 0 and leave a file behind."""
    if not config.database.exists():
        raise MonitorError(
            f"no database at {config.database}: nothing has been polled yet "
            "(`feed-monitor once` or the daemon creates it)"
        )


def _open_for_reading(config: RunConfig) -> Store:
    """The database of a command that reads it (``_require_database``)."""
    _require_database(config)
    return Store.open(config.database)


def configure_logging(verbose: int, log_format: LogFormat = "text") -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = log_handler(log_format)
    # Client libraries may log request URLs at INFO (private feed URLs can carry tokens);
    # apprise is chatty. Their warnings still show, and everything at -vv (Apprise's
    # logger itself stays at DEBUG: see ``alert.Notifier``).
    shown = logging.DEBUG if verbose > 1 else logging.WARNING
    handler.addFilter(_LibraryLevel(("aiohttp", "apprise", "apscheduler"), shown))
    # Every record that passes is masked (URLs, secrets, control characters) before
    # anything is written.
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("aiohttp", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _LibraryLevel(logging.Filter):
    """Lets a library's records through only from ``level`` up."""

    def __init__(self, libraries: tuple[str, ...], level: int) -> None:
        super().__init__()
        self.libraries, self.level = libraries, level

    def filter(self, record: logging.LogRecord) -> bool:
        library = record.name.partition(".")[0]
        return library not in self.libraries or record.levelno >= self.level


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
    # Validated from the file every time (no cache): check is how a config is judged.
    from monitor.config_file import interval_warnings, line_of, notify_lines, validate_config

    path = resolve_config_path(config_path)
    validated = validate_config(path)
    config = from_config(validated, target_lines=notify_lines(validated))
    if problem := database_problem(config.database):
        raise ConfigError([f"{path}:{line_of(validated, 'database')}: database: {problem}"])
    warnings = [warning for w in config.watchlists for warning in lint_watchlist(w.spec())]
    warnings += interval_warnings(validated)
    if not config.feeds:
        warnings.append(f"{path}: no feeds to poll: add one with `feed-monitor feeds add URL`")
    # An empty value is mostly a line `TOKEN=` left unfinished in an environment file.
    environ = dict(os.environ)
    warnings += [f"{path}: ${{{name}}} is empty" for name in sorted(validated.secret_names)
                 if not secret_value(name, environ)]  # fmt: skip
    targets = notifier_for(config).describe()
    if as_json:
        _say_json({
            "config": str(path), "database": str(config.database),
            "feeds": [{"url": f.url, "name": f.name, "interval": config.feed_interval(f)}
                      for f in config.feeds],
            "watchlists": [w.name for w in config.watchlists],
            "targets": targets, "warnings": warnings,
            "terms": {w.name: explain_terms(w.spec()) for w in config.watchlists},
        }, indent=2)  # fmt: skip
        return
    _say(f"{path}: OK")
    _say(f"database:   {config.database}")
    d = config.defaults
    _say(
        f"defaults:   every {format_duration(d.interval)}, timeout {format_duration(d.timeout)}, "
        f"alert on stories newer than {format_duration(d.max_age)}"
    )
    _say(f"feeds:      {len(config.feeds)}")
    for feed in config.feeds:
        _say(
            f"  - {feed_display_name(feed.url, feed.name)}  {feed.url}  "
            f"(every {format_duration(config.feed_interval(feed))})"
        )
    _say(f"watchlists: {len(config.watchlists)}")
    for watchlist in config.watchlists:
        route = ", ".join(watchlist.notify) if watchlist.notify else "all targets"
        _say(f"  - {watchlist.name}: {', '.join(watchlist.keywords)}  -> {route}")
        if watchlist.require:
            _say(f"      require: {', '.join(watchlist.require)}")
        if watchlist.exclude:
            _say(f"      exclude: {', '.join(watchlist.exclude)}")
        for explanation in explain_terms(watchlist.spec()):
            _say(f"      {explanation}")
    for warning in warnings:
        _say(f"warning: {warning}", err=True)
    if not config.notify:
        _say("notify:     none configured: alerts are printed on the console")
        return
    _say(f"notify:     {len(targets)}")
    for target in targets:
        _say(f"  - {target}")


@cli.command()
@config_option
@click.option("--watchlist", "-w", "names", multiple=True, help="Only this watchlist (repeatable).")
@_since_option("30d")
@_json_option
def backtest(config_path: Path | None, names: tuple[str, ...], since: float, as_json: bool) -> None:
    """Replay stored stories against the watchlists; nothing is sent."""
    _, config = _load_for_reading(config_path)
    _known_watchlists(config, names)
    watchlists = [w for w in config.watchlists if not names or w.name in names]
    matcher = Matcher(w.spec() for w in watchlists)
    checked = 0
    counts = dict.fromkeys((w.name for w in watchlists), 0)
    with (
        _open_for_reading(config) as store,
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
        stories = count_of(checked, "story", "stories")
        _say(f"{stories} first seen in the last {window}; matches: {summary}")


def _known_watchlists(config: RunConfig, names: Sequence[str]) -> None:
    """Refuse a --watchlist the config does not have: a typo must not look like "no match"."""
    _known_names("--watchlist", "watchlist", names, [w.name for w in config.watchlists])


def _known_names(option: str, what: str, names: Sequence[str], known: Iterable[str]) -> None:
    known = sorted(set(known))
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(known) if known else "none are configured"
        raise click.BadParameter(
            f"no {what} named {', '.join(unknown)} (known: {listed})",
            param_hint=option,
        )


def _print_backtest_match(story: StoredStory, feed: str, match: Match, as_json: bool) -> None:
    if as_json:
        _say_json(
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
        )
        return
    start, end = match.highlight
    marked = f"{match.snippet[:start]}»{match.snippet[start:end]}«{match.snippet[end:]}"
    seen = _when(story.first_seen)
    _say(f"{seen}  [{match.watchlist}]  {story.entry.title}")
    _say(f"    {feed}  {story.entry.link or ''}")
    _say(f"    matched {', '.join(match.keywords)} (as {', '.join(match.terms)})")
    _say(f"    {marked}", "")


def _when(stamp: float | None) -> str:
    """A moment in a table column (UTC, said in the column's heading or the README)."""
    return format_time(stamp, missing="-", zone=False)


@cli.command()
@config_option
@click.argument("query")
@_since_option("30d")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=_POSITIVE_INT64,
    help="At most this many stories.",
)
@_json_option
def search(config_path: Path | None, query: str, since: float, limit: int, as_json: bool) -> None:
    """Full-text search of stored stories (words, not syntax: S-400 and C++ work).

    Each word is read as a watchlist reads a term: S-400 also finds S400, F-35 also F-35A.
    """
    try:
        wanted = search_query(query)
    except PatternError as exc:
        raise click.BadParameter(str(exc), param_hint="QUERY") from None
    if wanted is None:
        raise click.BadParameter(
            "search for at least one word or number (the query is words, not FTS syntax)",
            param_hint="QUERY",
        )
    _, config = _load_for_reading(config_path)
    with _open_for_reading(config) as store:
        hits = store.search(query, since, limit)
    for hit in hits:
        feed = feed_display_name(hit.feed_url, hit.feed_name, hit.feed_title)
        if as_json:
            _say_json({**msgspec.to_builtins(hit), "feed": feed})
        else:
            _say(f"{_when(hit.first_seen)}  #{hit.story_id}  {hit.title}")
            _say(f"    {feed}  {hit.link or ''}", f"    {hit.snippet}", "")
    if not as_json:
        _say(count_of(len(hits), "story", "stories"))


@cli.command()
@config_option
@_since_option("7d")
@click.option("--watchlist", "-w", "names", multiple=True, help="Only this watchlist (repeatable).")
@_json_option
def matches(config_path: Path | None, since: float, names: tuple[str, ...], as_json: bool) -> None:
    """Recent watchlist matches and the state of their alerts."""
    _, config = _load_for_reading(config_path)
    _known_watchlists(config, names)
    with _open_for_reading(config) as store:
        rows = store.recent_matches(since, names)
        events = {row.story_id: store.event_of(row.story_id) for row in rows}
    for row in rows:
        feed = feed_display_name(row.feed_url, row.feed_name, row.feed_title)
        state = row.alert_status
        if row.alert_status == "not alerted":
            event_id = events[row.story_id]
            joined = f"event #{event_id}" if event_id not in (None, row.story_id) else None
            state = not_alerted_reason(
                row.published, row.created_at, config.defaults.max_age, joined
            )
        if as_json:
            _say_json({**msgspec.to_builtins(row), "feed": feed, "alert": state})
            continue
        if row.alert_status == "sent":
            state = f"sent {_when(row.sent_at)}"
        elif row.attempts:
            state += f" after {count_of(row.attempts, 'attempt')}: {row.last_error or ''}"
        _say(f"{_when(row.created_at)}  [{row.watchlist}]  #{row.story_id}  {row.title}")
        _say(f"    {feed}  {row.link or ''}")
        _say(f"    matched {', '.join(row.keywords)}  alert: {state}", "")
    if not as_json:
        _say(count_of(len(rows), "match", "matches"))


@cli.command()
@config_option
@click.argument("story_id", type=_POSITIVE_INT64)
@_json_option
def story(config_path: Path | None, story_id: int, as_json: bool) -> None:
    """One story: its text, every feed and link it was seen under, and for each watchlist
    why it did or did not alert."""
    _, config = _load_for_reading(config_path)
    with _open_for_reading(config) as store:
        stored = store.story(story_id)
        if stored is None:
            raise click.BadParameter(
                f"no story #{story_id} (`feed-monitor search` and `matches` show ids)",
                param_hint="STORY_ID",
            )
        sources = store.story_sources(story_id)
        recorded = store.recent_matches(0, story_id=story_id)
        deliveries = store.story_deliveries(story_id)
        labels = _target_labels(config, store)
        event_id = store.event_of(story_id)
        event = store.event_reports(event_id) if event_id is not None else []
    feed = feed_display_name(stored.feed_url, stored.feed_name, stored.feed_title)
    joined = f"event #{event_id}" if event_id is not None and event_id != story_id else None
    reports = explain_story(
        [w.spec() for w in config.watchlists], stored.entry, feed, recorded, deliveries,
        config.defaults.max_age,
        lambda key: labels.get(key, f"target {key}"), joined,
    )  # fmt: skip
    entry = stored.entry
    # The longer text: the article's, where its page was read (full_text).
    text = max(entry.summary, entry.content, key=len)
    excerpt = shorten(" ".join(text.split()), EXCERPT_CHARS)
    if as_json:
        _say_json({
            "id": stored.id, "title": entry.title, "link": entry.link, "feed": feed,
            "published": entry.published, "first_seen": stored.first_seen, "excerpt": excerpt,
            "sources": [msgspec.to_builtins(source) for source in sources],
            "watchlists": [
                {"watchlist": r.watchlist, "summary": r.summary,
                 "verdict": msgspec.to_builtins(r.verdict) if r.verdict else None,
                 "matched_when_seen": r.matched_when_seen, "alert": r.alert}
                for r in reports
            ],
            "event": None if event_id is None else {
                "id": event_id, "reports": [msgspec.to_builtins(r) for r in event],
            },
        })  # fmt: skip
        return
    _say(f"#{stored.id}  {entry.title}", f"    {entry.link or '(no link)'}")
    _say(
        f"    published {format_time(entry.published)}; "
        f"first seen {format_time(stored.first_seen)} in {feed}"
    )
    _say(f"    {excerpt or '(no text stored: none given, or dropped by retention)'}", "")
    _say(f"seen in {count_of(len(sources), 'place')}:")
    for source in sources:
        where = feed_display_name(source.feed_url, source.feed_name, source.feed_title)
        _say(f"  {_when(source.first_seen)}  {where}  {source.link or '(no link)'}")
    if len(event) > 1:
        _say("", f"event #{event_id}: reported by {count_of(len(event), 'story', 'stories')}:")
        for seen in event:
            mark = "  (this story)" if seen.story_id == stored.id else ""
            _say(f"  {_when(seen.first_seen)}  {seen.outlet}  #{seen.story_id} "
                 f"{seen.title}{mark}", f"      {seen.link or '(no link)'}")  # fmt: skip
    _say("", "watchlists:")
    for report in reports:
        _say(f"  [{report.watchlist}] {report.summary}")
        for line in report.alert:
            _say(f"      alert: {line}")


@cli.command()
@config_option
@_since_option("7d")
@_json_option
def events(config_path: Path | None, since: float, as_json: bool) -> None:
    """Recent events reported by more than one story, with every report."""
    _, config = _load_for_reading(config_path)
    with _open_for_reading(config) as store:
        found = store.events_since(since)
    if as_json:
        _say_json([
            {"id": event_id, "reports": [msgspec.to_builtins(r) for r in reports]}
            for event_id, reports in found
        ])  # fmt: skip
        return
    for event_id, reports in found:
        first = reports[0]
        outlets = len({report.outlet for report in reports})
        _say(f"event #{event_id}: {first.title}  ({count_of(outlets, 'outlet')})")
        for report in reports:
            _say(
                f"  {_when(report.first_seen)}  {report.outlet}  #{report.story_id} {report.title}"
            )
            _say(f"      {report.link or '(no link)'}")
    since_text = click.get_current_context().meta["since"]
    _say("", f"{count_of(len(found), 'event')} with more than one report in the last {since_text}")


@cli.command()
@config_option
@click.option(
    "--timeout",
    "deadline",
    default="30m",
    show_default=True,
    # At least a second, as every duration the daemon waits for (monitor.config).
    callback=lambda ctx, param, value: _duration(value, floor=1.0),
    help="Stop after this long (at least 1s), whatever is still running (what is done is kept).",
)
@_json_option
def once(config_path: Path | None, deadline: float, as_json: bool) -> None:
    """Poll every feed once, deliver alerts, and exit."""
    path = resolve_config_path(config_path)
    config = load_config(path, check_notify=False)
    with process_lock(config.database, "once", wait=min(ONCE_LOCK_WAIT, deadline)):
        try:
            asyncio.run(asyncio.wait_for(_once(config, as_json), deadline))
        except TimeoutError:
            raise MonitorError(
                f"once: stopped after its --timeout of {format_duration(deadline)}; what was "
                "polled and sent is kept, the rest is done by the next run"
            ) from None


async def _once(config: RunConfig, as_json: bool) -> None:
    async with open_runtime(config) as runtime:
        store, deliverer = runtime.store, runtime.deliverer
        # The notify URLs are checked (by Apprise, which takes a while to load) only when
        # something is to be sent: from the first poll that queues an alert, in a thread,
        # while the other feeds are polled. Then alerts are sent as polls queue them.
        polling: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sending: asyncio.Task[DeliverySummary] | None = None

        async def send_while_polling() -> DeliverySummary:
            await asyncio.to_thread(check_notify_urls, config)
            return await deliverer.deliver_while(polling)

        def polled(outcome: PollOutcome) -> None:
            nonlocal sending
            step()
            if outcome.alerts_queued:
                if sending is None:
                    sending = asyncio.create_task(send_while_polling())
                deliverer.nudge()

        try:
            with store.batching(), _progress(len(config.feeds), "polling feeds") as step:
                outcomes = await runtime.poll_all(polled)
                polling.set_result(None)
                # A bad notify URL is a ConfigError, as load_config would say.
                delivered = DeliverySummary() if sending is None else await sending
        except BaseException:
            if sending is not None:
                # Stopped while sending (Ctrl-C, --timeout, an error): no new send starts,
                # and the one in flight may finish and be recorded, or the next run would
                # send it again (cut short after the grace, it keeps its claim: retried
                # after its lease).
                await asyncio.shield(deliverer.close(min(ONCE_SEND_GRACE, deliverer.send_timeout)))
                sending.cancel()
            raise
        if sending is None and store.has_undelivered():
            check_notify_urls(config)  # alerts queued by an earlier run
        # What is left: alerts queued since the last pass, retries, earlier runs' backlog.
        delivered.add(await deliverer.deliver_due(ignore_backoff=True, skip=delivered.attempted))
        runtime.retention.run()
        store.index_pending()
    failed = [outcome for outcome in outcomes if not outcome.ok]  # each already logged
    if as_json:
        _say_json({
            "feeds": [msgspec.to_builtins(outcome) for outcome in outcomes],
            "new_stories": sum(o.new_stories for o in outcomes),
            "alerts_queued": sum(o.alerts_queued for o in outcomes),
            "sent": delivered.sent, "failed_deliveries": delivered.failed,
        })  # fmt: skip
        return
    _say(
        f"polled {count_of(len(outcomes), 'feed')} ({len(outcomes) - len(failed)} ok, "
        f"{len(failed)} failed, {sum(o.unchanged for o in outcomes)} unchanged), "
        f"{count_of(sum(o.new_stories for o in outcomes), 'new story', 'new stories')}, "
        f"{count_of(sum(o.alerts_queued for o in outcomes), 'alert')} queued, "
        f"{delivered.sent} sent, "
        f"{count_of(delivered.failed, 'failed delivery', 'failed deliveries')}"
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
    path, config = _load_for_reading(config_path)
    rows = [
        {"url": feed.url, "name": feed.name, "interval": config.feed_interval(feed)}
        for feed in config.feeds
    ]
    if as_json:
        _say_json(rows, indent=2)
        return
    for row in rows:
        name = row["name"] or feed_display_name(str(row["url"]), None)
        _say(f"{name}  {row['url']}  every {format_duration(float(row['interval'] or 0))}")
    _say(f"{count_of(len(rows), 'feed')} in {path}")


@feeds.command("add")
@config_option
@click.argument("url")
@click.option("--name", help="A display name (default: the feed's own title).")
@click.option(
    "--no-check",
    is_flag=True,
    help="Add the URL as given, without fetching it (a feed this machine cannot reach now).",
)
def feeds_add(config_path: Path | None, url: str, name: str | None, no_check: bool) -> None:
    """Add a feed to the config file.

    The address is fetched first (as a poll would fetch it). A feed is added as it is;
    for a web page, the feed the page links to is added, and when it links to several,
    you are asked which one (without a terminal: listed, and exit status 2). Nothing is
    written when the address cannot be fetched or holds no feed.
    """
    from monitor.config_edit import NewFeed, add_feeds  # ruamel.yaml: only for edits
    from monitor.discover import Discovered, FeedLink, find_feed
    from monitor.errors import FeedError
    from monitor.fetch import USER_AGENT, Fetcher, RedirectPolicy

    path = resolve_config_path(config_path)
    url = url.strip()
    if safe_link(url) is None:
        raise click.BadParameter(
            f"'{terminal_safe(mask_url(url))}' is not an http:// or https:// URL", param_hint="URL"
        )
    # Refuse what the edit would refuse (not http(s), a control character) before any
    # request is made, and skip the fetch for a feed already listed.
    _, listed = add_feeds(path, [NewFeed(url, name)], check_only=True)
    if no_check or listed:
        added, _ = add_feeds(path, [NewFeed(url, name)])
        _say(f"added {url}" if added else f"{url} is already listed")
        return
    config = load_config(path, need_targets=False)  # only its http settings are used

    def choose(links: tuple[FeedLink, ...]) -> FeedLink:
        _say(f"{url} is a web page that links to {len(links)} feeds:")
        for number, link in enumerate(links, 1):
            _say(f"  {number}. {link.describe()}")
        numbers = [str(number) for number in range(1, len(links) + 1)]
        try:
            answer = click.prompt(
                f"Which one? (1-{len(links)}, or its URL)",
                type=click.Choice(numbers + [link.url for link in links]),
                show_choices=False,
            )
        except click.Abort:  # no terminal (end of input), or Ctrl-C: nothing is written
            _say(
                f"error: {url} links to {len(links)} feeds; run `feed-monitor feeds add URL` "
                "with the URL of the one you want:",
                *(f"  {link.url}" for link in links),
                err=True,
            )
            raise click.exceptions.Exit(2) from None
        return (
            links[int(answer) - 1]
            if answer in numbers
            else next(link for link in links if link.url == answer)
        )

    async def discover() -> Discovered:
        async with Fetcher(
            user_agent=config.user_agent or USER_AGENT,
            redirect_policy=RedirectPolicy.from_config(config),
        ) as fetcher:
            return await find_feed(
                url, fetcher=fetcher, timeout=config.defaults.timeout, choose=choose
            )

    try:
        found = asyncio.run(discover())
    except FeedError as exc:
        raise FeedError(f"cannot add {url}: {exc}; the config is unchanged") from exc
    if found.page is not None:
        _say(f"{url} is a web page; adding the feed it links to: {found.url}")
    added, _ = add_feeds(path, [NewFeed(found.url, name)])
    title = f" ({found.title})" if found.title and not name else ""
    _say(f"added {found.url}{title}" if added else f"{found.url} is already listed")


@feeds.command("remove")
@config_option
@click.argument("url")
def feeds_remove(config_path: Path | None, url: str) -> None:
    """Remove a feed from the config file (its stored stories are kept)."""
    from monitor.config_edit import remove_feed

    path = resolve_config_path(config_path)
    if not remove_feed(path, url.strip()):
        raise click.BadParameter(
            f"{path} lists no feed with url {terminal_safe(mask_url(url))} "
            "(see: feed-monitor feeds list)",
            param_hint="URL",
        )
    _say(f"removed {url}")


@feeds.command("import-opml")
@config_option
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def feeds_import_opml(config_path: Path | None, opml_file: Path) -> None:
    """Add every feed of an OPML file (from any feed reader) not listed yet."""
    from monitor.config_edit import NewFeed, add_feeds
    from monitor.opml import read_opml, url_problem

    path = resolve_config_path(config_path)
    data = read_at_most(opml_file, MAX_OPML_BYTES)
    if data is None:
        raise click.BadParameter(
            f"larger than {MAX_OPML_BYTES // 2**20} MB: not an OPML file", param_hint="OPML_FILE"
        )
    outlines = read_opml(data)
    refused = [(o.url, problem) for o in outlines if (problem := url_problem(o.url))]
    usable = [o for o in outlines if not url_problem(o.url)]
    added, skipped = add_feeds(path, [NewFeed(o.url, o.title) for o in usable])
    reasons = collections.Counter(problem for _, problem in refused)
    _say(
        f"added {count_of(len(added), 'feed')}, {len(skipped)} already listed"
        + "".join(f", {count} {reason}, left out" for reason, count in reasons.items())
    )
    for url, problem in refused:
        _say(f"  left out {url!r}: {problem}")


@feeds.command("export-opml")
@config_option
@click.option(
    "--with-secrets",
    is_flag=True,
    help="Write feed URLs whole, passwords and tokens included (masked by default).",
)
def feeds_export_opml(config_path: Path | None, with_secrets: bool) -> None:
    """Print the feeds as OPML, for any feed reader."""
    from monitor.opml import OutlineFeed, write_opml

    _, config = _load_for_reading(config_path)
    # Like every output, the export shows no credential unless asked to: a URL's
    # password, token-like query values and whatever came from ${VAR} become ****.
    urls = [feed.url if with_secrets else mask_url(feed.url) for feed in config.feeds]
    masked = sum(url != feed.url for url, feed in zip(urls, config.feeds, strict=True))
    names = [feed.name if with_secrets or feed.name is None else redact_text(feed.name)
             for feed in config.feeds]  # fmt: skip
    feeds = [OutlineFeed(url, name) for url, name in zip(urls, names, strict=True)]
    click.echo(write_opml(feeds), nl=False)
    if masked:
        _say(
            f"{count_of(masked, 'feed URL')} with credentials shown as ****; "
            "--with-secrets writes them whole",
            err=True,
        )


@cli.command()
@config_option
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
def backup(config_path: Path | None, destination: Path, force: bool) -> None:
    """Copy the database to DESTINATION, consistently, even while the daemon runs."""
    _, config = _load_for_reading(config_path)
    _require_database(config)
    _check_backup_destination(destination, config.database, force)
    with Store.open(config.database) as store:
        size = store.backup(destination)
        stories = store.count_stories_since(0)
    _say(
        f"backed up {config.database} to {destination} "
        f"({count_of(stories, 'story', 'stories')}, {size / 1e6:.1f} MB)"
    )


def _check_backup_destination(destination: Path, database: Path, force: bool) -> None:
    """Refuse a destination the backup would harm or cannot write: the database and the
    files beside it, anything but a regular file, a directory that is not one."""
    try:
        target = destination.resolve()
        own = {database.resolve().with_name(database.name + suffix)
               for suffix in ("", "-wal", "-shm", "-journal", ".lock")}  # fmt: skip
        if target in own:
            raise click.BadParameter(
                f"{destination} is the database or one of its files", param_hint="DESTINATION"
            )
        if not target.parent.is_dir():
            raise click.BadParameter(
                f"{destination.parent} is not a directory", param_hint="DESTINATION"
            )
        if destination.is_symlink() or (destination.exists() and not destination.is_file()):
            raise click.BadParameter(
                f"{destination} is not a regular file: not replaced", param_hint="DESTINATION"
            )
        if destination.exists() and not force:
            raise click.BadParameter(
                f"{destination} exists (add --force to replace it)", param_hint="DESTINATION"
            )
    except OSError as exc:  # a name too long, a path through a file, no permission...
        raise click.BadParameter(
            f"{destination}: {exc.strerror}", param_hint="DESTINATION"
        ) from None


@cli.command()
def schema() -> None:
    """Print the config file's JSON Schema (also shipped as monitor/config.schema.json)."""
    from monitor.config import config_schema

    click.echo(json.dumps(config_schema(), indent=2, ensure_ascii=False))


@cli.command("test-notify")
@config_option
@click.option("--tag", "tags", multiple=True, help="Only targets with this tag (repeatable).")
@_json_option
def test_notify(config_path: Path | None, tags: tuple[str, ...], as_json: bool) -> None:
    """Send a test alert and report each target's result."""
    _, config = _load(config_path)
    _known_names("--tag", "tag", tags, (tag for target in config.notify for tag in target.tags))
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
            _say_json({"target": channel.label, "ok": outcome.ok, "detail": outcome.detail})
        else:
            _say(f"{channel.label}: {outcome.detail}")
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
    _, config = _load_for_reading(config_path)
    with _open_for_reading(config) as store:
        configured = {feed.url for feed in config.feeds}
        feeds = [feed for feed in store.feed_status() if feed.url in configured]
        counts = store.delivery_counts()
    now = time.time()
    if as_json:
        names = {feed.url: feed_display_name(feed.url, feed.name, feed.title) for feed in feeds}
        report = {
            "feeds": [
                {
                    **msgspec.to_builtins(feed),
                    "display_name": names[feed.url],
                    "health": feed.health,
                }
                for feed in feeds
            ],
            "deliveries": {key: counts.get(key, 0) for key in DELIVERY_STATES},
        }
        _say_json(report, indent=2)
        return
    rows = [("FEED", "LAST POLL", "HTTP", "STORIES", "INTERVAL", "NEXT POLL", "LAST ERROR")]
    moved: list[str] = []
    for feed in feeds:
        rows.append(
            (
                _shown(feed_display_name(feed.url, feed.name, feed.title)),
                _ago(feed.last_polled_at, now),
                str(feed.last_status or "-"),
                str(feed.stories),
                format_interval(feed.interval) if feed.interval else "-",
                "never (gone)"
                if feed.gone_at
                else _ago(feed.next_poll_at, now)
                if feed.last_polled_at
                else "-",
                shorten(_shown(feed.last_error or ""), 80),
            )
        )
        if feed.effective_url and feed.effective_url != feed.url:
            moved.append(f"{feed.url} moved permanently to {feed.effective_url}")
        if feed.article_failures:
            moved.append(
                f"{feed_display_name(feed.url, feed.name, feed.title)}: "
                f"{count_of(feed.article_failures, 'article page')} not read, last: "
                f"{feed.last_article_error}"
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for line in moved:
        rows.append((f"  {line}", "", "", "", "", "", ""))
    for row in rows:
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    _say(
        "",
        f"deliveries: {counts.get('sent', 0)} sent, {counts.get('pending', 0)} pending, "
        f"{counts.get('held', 0)} held for digests, {counts.get('failed', 0)} failed",
    )


@cli.group(invoke_without_command=True)
@config_option
@click.option("--failed", is_flag=True, help="Only alerts with a failed delivery.")
@click.option(
    "--limit", default=50, show_default=True, type=_POSITIVE_INT64, help="How many, newest first."
)
@_json_option
@click.pass_context
def alerts(
    ctx: click.Context, config_path: Path | None, failed: bool, limit: int, as_json: bool
) -> None:
    """List alerts and how each delivery stands (see also: alerts retry)."""
    if ctx.invoked_subcommand is not None:
        return
    _, config = _load_for_reading(config_path)
    with _open_for_reading(config) as store:
        labels = _target_labels(config, store)
        rows = store.alert_rows(failed_only=failed, limit=limit)
        trails = {d["id"]: store.attempts_of(d["id"]) for row in rows for d in row.deliveries}
    if as_json:
        out = []
        for row in rows:
            item = msgspec.to_builtins(row)
            item["status"] = row.status
            for d in item["deliveries"]:
                d["target"] = labels.get(d["target"], d["target"])
                d["attempts_log"] = [
                    {"at": at, "target": target, "ok": ok, "detail": detail}
                    for at, target, ok, detail in trails[d["id"]]
                ]
            out.append(item)
        _say_json(out, indent=2)
        return
    if not rows:
        _say("no alerts" + (" with failed deliveries" if failed else ""))
        return
    for row in rows:
        _say(f"#{row.id}  {_when(row.created_at)}  [{row.watchlist}] {row.title}  {row.status}")
        for d in row.deliveries:
            note = f"  {d['last_error']}" if d["last_error"] and d["status"] != "sent" else ""
            held = f" ({d['reason']})" if d["reason"] else ""
            _say(
                f"    {labels.get(d['target'], d['target'])}: {d['status']}{held}, "
                f"{count_of(d['attempts'], 'attempt')}{note}"
            )


@alerts.command("retry")
@config_option
@click.argument("alert_ids", nargs=-1, type=_POSITIVE_INT64)
def alerts_retry(config_path: Path | None, alert_ids: tuple[int, ...]) -> None:
    """Queue failed deliveries again (of ALERT_IDS, or all); the daemon or `once` sends them."""
    _, config = _load_for_reading(config_path)
    with _open_for_reading(config) as store:
        if unknown := sorted(set(alert_ids) - store.existing_alerts(alert_ids)):
            raise click.BadParameter(
                f"no alert {', '.join(f'#{alert_id}' for alert_id in unknown)} "
                "(`feed-monitor alerts` lists them)",
                param_hint="ALERT_IDS",
            )
        count = store.retry_failed(list(alert_ids) or None, time.time())
    which = f" of alert {', '.join(f'#{i}' for i in alert_ids)}" if alert_ids else ""
    _say(f"{count_of(count, 'failed delivery', 'failed deliveries')}{which} queued again")


def _target_labels(config: RunConfig, store: Store) -> dict[str, str]:
    """Outbox keys to masked target URLs, without the targets' secrets (or Apprise).

    A target's key is made from its full URL, secrets included, so a URL with ``${VAR}``
    in it is named as its last attempt recorded it; one without, by its masked URL."""
    labels = {CONSOLE_TARGET: "console"}
    labels |= {target.key: mask_url(target.url) for target in config.notify
               if "${" not in target.url}  # fmt: skip
    return labels | store.target_labels()


def main() -> None:
    # The modules imported so far live until exit. Freezing them keeps the garbage
    # collector from walking them again, on every full collection (less work for a
    # long-running daemon).
    gc.freeze()
    try:
        cli(prog_name="feed-monitor")
    except SystemExit as exit_:
        if stuck := stuck_sends():
            # Apprise runs each send in a pool thread that the interpreter would wait for
            # at exit, forever if the target never answers: leave without waiting.
            logging.getLogger(__name__).warning(
                "exiting with %d sends still waiting for an answer (given up)", stuck
            )
            code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
        # Everything alive now lives until exit too: frozen, the interpreter's last
        # collection skips it (walking the thousand modules a run loaded, Apprise's
        # plugins, numpy, pydantic, took 0.1 to 0.3 s of every run). Exit handlers still
        # run as usual (multiprocessing's, logging's).
        gc.freeze()
        raise
