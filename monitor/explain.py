"""Why a story did or did not alert, watchlist by watchlist (``feed-monitor story ID``).

Pure: the story, the watchlists and what the outbox recorded come in as arguments. Two
questions, answered apart:

- ``judge_text``: does the story's text satisfy the watchlist as configured now? If so,
  which keywords, spelled how; if not, why not: no keyword, a ``require`` term missing,
  or an ``exclude`` term present (and how the story spelled it). It uses the matcher
  itself (``monitor.match.Matcher``), so the answer is the one polling would give.
- ``alert_lines``: what became of the match: too old to alert (``max_age``), held for a
  digest or quiet hours, folded into a burst summary, sent, pending or failed, per target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from msgspec import Struct
from msgspec.structs import replace

from monitor.match import Matcher
from monitor.models import Entry, WatchlistSpec
from monitor.render import count_of, format_time
from monitor.store import MatchRow, StoryDelivery
from monitor.units import format_duration


class TextVerdict(Struct, frozen=True):
    """Whether a story's text satisfies one watchlist, and why (not)."""

    watchlist: str
    matched: bool
    keywords: tuple[str, ...] = ()  # the keywords found (as the watchlist writes them)
    terms: tuple[str, ...] = ()  # how the story spells them
    missing: tuple[str, ...] = ()  # `require` terms not in the story
    excluded_by: tuple[tuple[str, str], ...] = ()  # (`exclude` term, as the story spells it)

    @property
    def summary(self) -> str:
        """One line for a person."""
        if self.matched:
            return f"matched {', '.join(self.keywords)} (as {', '.join(self.terms)})"
        if not self.keywords:
            return "no keyword in the story"
        reasons = []
        if self.missing:
            reasons.append(f"required {', '.join(self.missing)} not in the story")
        if self.excluded_by:
            shown = ", ".join(f"{term} (as {spelled})" for term, spelled in self.excluded_by)
            reasons.append(f"excluded by {shown}")
        found = f"has {', '.join(self.keywords)} (as {', '.join(self.terms)}) but "
        return found + "; ".join(reasons)


class WatchlistReport(Struct, frozen=True):
    """One watchlist's answer for one story: the text's verdict now, what was recorded
    when the story was first seen, and what became of the alert."""

    watchlist: str
    verdict: TextVerdict | None  # None: the watchlist is no longer configured
    matched_when_seen: tuple[str, ...] | None  # keywords of the stored match, if any
    alert: tuple[str, ...]  # one line per delivery, or why there was none

    @property
    def summary(self) -> str:
        if self.verdict is None:
            return f"matched {', '.join(self.matched_when_seen or ())}; no longer configured"
        if self.matched_when_seen and not self.verdict.matched:
            return (
                f"matched {', '.join(self.matched_when_seen)} when first seen; as configured "
                f"now: {self.verdict.summary}"
            )
        return self.verdict.summary


def explain_story(
    watchlists: Sequence[WatchlistSpec],
    entry: Entry,
    feed: str,
    recorded: Sequence[MatchRow],
    deliveries: Sequence[StoryDelivery],
    max_age: float,
    label: Callable[[str], str],
    event: str | None = None,
) -> list[WatchlistReport]:
    """Every configured watchlist's answer for a story, then any watchlist that matched it
    once and is no longer configured. ``recorded`` are the story's stored matches;
    ``event`` names the event it joined, if an earlier report started it."""
    by_name = {row.watchlist: row for row in recorded}
    verdicts = {v.watchlist: v for v in judge_text(watchlists, entry, feed)}
    reports = []
    for name in [*verdicts, *(name for name in by_name if name not in verdicts)]:
        verdict, row = verdicts.get(name), by_name.get(name)
        lines: list[str] = []
        if row is None:
            if verdict is not None and verdict.matched:
                lines.append("no match was recorded when first seen (the watchlist changed since)")
        elif row.alert_status == "not alerted":
            lines.append(not_alerted_reason(row.published, row.created_at, max_age, event))
        else:
            mine = [d for d in deliveries if d.watchlist == name]
            lines += alert_lines(mine, label) or [row.alert_status]
        reports.append(WatchlistReport(name, verdict, row.keywords if row else None, tuple(lines)))
    return reports


def judge_text(watchlists: Sequence[WatchlistSpec], entry: Entry, feed: str) -> list[TextVerdict]:
    """Each watchlist's verdict on ``entry`` (seen in the feed named ``feed``)."""
    return [_judge(watchlist, entry, feed) for watchlist in watchlists]


def _judge(watchlist: WatchlistSpec, entry: Entry, feed: str) -> TextVerdict:
    if full := Matcher([watchlist]).match(entry, feed):
        return TextVerdict(watchlist.name, True, full[0].keywords, full[0].terms)
    keywords_only = replace(watchlist, require=(), exclude=())
    found = Matcher([keywords_only]).match(entry, feed)
    if not found:
        return TextVerdict(watchlist.name, False)

    def spelled(term: str) -> str | None:
        probe = WatchlistSpec(name="probe", keywords=(term,), fields=watchlist.fields)
        hits = Matcher([probe]).match(entry, feed)
        return ", ".join(hits[0].terms) if hits else None

    missing = tuple(term for term in watchlist.require if spelled(term) is None)
    excluded = tuple(
        (term, spelling) for term in watchlist.exclude if (spelling := spelled(term)) is not None
    )
    return TextVerdict(watchlist.name, False, found[0].keywords, found[0].terms, missing, excluded)


def too_old(published: float | None, matched_at: float, max_age: float) -> bool:
    """Whether a story published at ``published`` was past ``max_age`` when matched (the
    rule of ``pipeline.is_alertable``: undated stories count as new)."""
    return published is not None and matched_at - published > max_age


def not_alerted_reason(
    published: float | None, matched_at: float, max_age: float, event: str | None = None
) -> str:
    """Why a stored match has no alert: too old, or (``event``) a report of an event this
    watchlist had already alerted on."""
    if too_old(published, matched_at, max_age):
        return (
            f"not alerted: published {format_time(published)}, more than max_age "
            f"({format_duration(max_age)}) before it was matched {format_time(matched_at)}"
        )
    if event is not None:
        return f"not alerted: another report of {event} was alerted already"
    return "not alerted: older than the max_age in force when it was matched"


def alert_lines(deliveries: Sequence[StoryDelivery], label: Callable[[str], str]) -> list[str]:
    """What became of a watchlist's alert, one line per delivery (``label`` names a
    target by its outbox key, secrets masked)."""
    lines = []
    for d in deliveries:
        target = label(d.target)
        if d.status == "released":
            state = "sent" if d.released_status == "sent" else d.released_status or "pending"
            when = f" {format_time(d.released_sent_at)}" if d.released_sent_at else ""
            lines.append(f"{target}: held for {_held_for(d.reason)}, then {state}{when}")
            continue
        if d.status == "held":
            why = _held_for(d.reason)
            lines.append(f"{target}: held for {why}")
            continue
        via = " in a burst summary (too many alerts from one poll)" if d.kind == "summary" else ""
        via = " in a digest" if d.kind == "digest" else via
        if d.status == "sent":
            lines.append(f"{target}: sent{via} {format_time(d.sent_at)}")
        elif d.status == "failed":
            lines.append(
                f"{target}: failed{via} after {count_of(d.attempts, 'attempt')}: "
                f"{d.last_error or ''}"
            )
        else:
            tried = f" ({count_of(d.attempts, 'attempt')}: {d.last_error})" if d.attempts else ""
            lines.append(f"{target}: {d.status}{via}{tried}")
    return lines


def _held_for(reason: str | None) -> str:
    """The outbox's reason for holding a delivery ("digest NAME", "quiet hours") in words."""
    if reason and reason.startswith("digest "):
        return f"the {reason.removeprefix('digest ')} digest"
    return reason or "a digest"
