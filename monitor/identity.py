"""Story identity: which entries are the same real story. Pure logic, no I/O.

An entry is known by several keys, from most to least trustworthy:

1. its feed's guid for it (``Entry.guid``), unless the feed is caught regenerating guids;
2. its canonical link (``canonical_url``): one story, whatever tracking parameters,
   ``www.``, scheme, fragment or trailing slash an aggregator adds; unless the feed uses
   one link for all its items, or the link is an opaque redirect that names nothing;
3. its normalized title (``title_key``), used across feeds only for entries whose links
   say nothing (aggregator copies), and only within ``TITLE_WINDOW``. Titles are
   compared exactly after normalization, never fuzzily, so "… to Turkey" and "… to India"
   stay two stories;
4. within one feed, for entries with neither guid nor link: a hash of title and date.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.models import Entry

# Query parameters that only track where a click came from. Documented in the README.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "igshid", "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "hsctatracking",
        "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "wickedid", "rb_clickid",
        "s_cid", "cmpid", "ncid", "sr_share", "ocid", "ref_src", "ref_url", "spm",
        "guccounter", "guce_referrer", "guce_referrer_sig", "at_medium", "at_campaign",
        "at_custom1", "at_custom2", "at_custom3", "at_custom4", "share", "feature",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "itm_", "stm_", "__s")

# Hosts whose links are redirects or aggregator pages that say nothing of the story.
OPAQUE_HOSTS = frozenset(
    {
        "news.google.com", "feedproxy.google.com", "feeds.feedburner.com", "t.co", "bit.ly",
        "ow.ly", "buff.ly", "dlvr.it", "trib.al", "lnkd.in", "l.facebook.com", "flip.it",
        "apple.news", "msn.com", "tinyurl.com", "news.yahoo.com", "rss.app",
    }
)  # fmt: skip
# A path segment that is one long token (base64 ids, hashes) rather than words.
_OPAQUE_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_=-]{24,}$")
_SLUG_RE = re.compile(r"[a-z]{3,}[-_][a-z]{3,}", re.IGNORECASE)

# Aggregator copies are matched by title only within this many seconds of each other.
TITLE_WINDOW = 3 * 86400.0
# " - Reuters", " | Defense News": a trailing publisher name is at most this many words.
_PUBLISHER_SUFFIX_RE = re.compile(r"\s+[-–—|]\s+([^-–—|]{1,60})$")
_MAX_PUBLISHER_WORDS = 5
_PUNCTUATION_RE = re.compile(r"[^\w\s]+")
_SPACE_RE = re.compile(r"\s+")


def canonical_url(url: str | None) -> str | None:
    """The form of ``url`` shared by every copy of the same page, or None if not http(s).

    Lower-case host without ``www.`` and default port, no fragment, no trailing slash,
    no tracking parameters, the rest of the query sorted; http and https are the same.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    host = host.removeprefix("www.")
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in TRACKING_PARAMS and not key.lower().startswith(TRACKING_PREFIXES)
    )
    # "https" for all: the scheme never makes two stories different.
    return urlunsplit(("https", host, path, urlencode(query), ""))


def is_opaque_url(url: str | None) -> bool:
    """True when a link names no page of its own: a redirect or an aggregator's token."""
    return _is_opaque_canonical(canonical_url(url))


def _is_opaque_canonical(canonical: str | None) -> bool:
    if canonical is None:
        return True
    parts = urlsplit(canonical)
    host = parts.hostname or ""
    if host in OPAQUE_HOSTS or any(host.endswith("." + opaque) for opaque in OPAQUE_HOSTS):
        return True
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments and not parts.query:
        return True  # a site's front page is no story's address
    return any(_OPAQUE_SEGMENT_RE.match(s) and not _SLUG_RE.search(s) for s in segments)


def title_key(title: str) -> str:
    """A title reduced to what every copy of it shares.

    Case, punctuation and spacing are dropped, and so is a trailing " - Publisher" or
    " | Publisher" that aggregators append (when what remains is still a title).
    """
    text = unicodedata.normalize("NFKC", title).strip()
    suffix = _PUBLISHER_SUFFIX_RE.search(text)
    if suffix:
        remainder = text[: suffix.start()]
        if len(suffix.group(1).split()) <= _MAX_PUBLISHER_WORDS and len(remainder.split()) >= 4:
            text = remainder
    text = _PUNCTUATION_RE.sub(" ", text.casefold())
    return _SPACE_RE.sub(" ", text).strip()


def fingerprint(title: str, published: float | None) -> str:
    """Identity of an entry with neither guid nor link: its title and date."""
    digest = hashlib.sha256(f"{title_key(title)}\x00{published or ''}".encode()).hexdigest()
    return digest[:32]


def with_keys(entry: Entry) -> Entry:
    """``entry`` with its identity keys computed (parsing does this for every entry)."""
    if entry.title_key is not None:
        return entry
    link_key = canonical_url(entry.link)
    return replace(
        entry,
        title_key=title_key(entry.title),
        link_key=link_key,
        opaque_link=_is_opaque_canonical(link_key),
    )


def shared_links(entries: list[Entry]) -> set[str]:
    """Canonical links that a feed document uses for several different entries.

    A press-release page listed as the link of every item identifies none of them.
    """
    seen: dict[str, str | None] = {}
    shared = set()
    for entry in entries:
        if entry.link_key is None:
            continue
        if entry.link_key in seen and seen[entry.link_key] != entry.title_key:
            shared.add(entry.link_key)
        seen.setdefault(entry.link_key, entry.title_key)
    return shared


def entry_key(guid: str | None, link: str | None, title: str, published: float | None) -> str:
    """An entry's key within its feed: its guid, else its canonical link, else a hash."""
    if guid and guid.strip():
        return "id:" + guid.strip()
    if canonical := canonical_url(link):
        return "link:" + canonical
    return "hash:" + fingerprint(title, published)


@dataclass(frozen=True)
class SourceKeys:
    """The identity keys of one entry as one feed publishes it."""

    entry_key: str  # unique within the feed
    link: str | None  # as published, for display
    link_key: str | None  # canonical form of the link, whatever it is worth
    canonical_link: str | None  # the same, or None when the link identifies nothing
    title_key: str
    opaque: bool  # the link says nothing of the story: title matching may apply
    content_hash: str  # changes when the publisher edits the entry


def source_keys(entry: Entry, shared: set[str]) -> SourceKeys:
    """The keys of ``entry``; ``shared`` are the links its feed uses for several entries."""
    entry = with_keys(entry)
    canonical = entry.link_key
    is_shared = canonical in shared
    opaque = bool(entry.opaque_link) or is_shared
    key = entry.key
    if is_shared and key.startswith("link:"):
        key = "hash:" + fingerprint(entry.title, entry.published)
    text = "\x00".join((entry.title, entry.summary, entry.content))
    return SourceKeys(
        entry_key=key,
        link=entry.link,
        link_key=canonical,
        canonical_link=None if opaque else canonical,
        title_key=entry.title_key or "",
        opaque=opaque,
        content_hash=hashlib.sha256(text.encode()).hexdigest()[:16],
    )
