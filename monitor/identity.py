"""Story identity: which entries are the same real story. Pure logic, no I/O.

Every identity rule lives here; the pipeline and the store only apply them. An entry is
known by several keys, from most to least trustworthy:

1. its feed's guid for it (``Entry.guid``). Within one feed, distinct guids are distinct
   stories unless there is positive evidence that the feed regenerated its guids: the
   same link that identifies one entry of that feed (``SourceKeys.own_link``) under the
   same title (``same_in_feed``);
2. its canonical link (``canonical_url``): one story, whatever tracking parameters,
   ``www.``, scheme, fragment or trailing slash an aggregator adds; unless the feed uses
   one link for several items, or the link is an opaque redirect or a front page;
3. its normalized title (``title_key``), only for copies across feeds whose links say
   nothing (aggregator copies), and only within ``TITLE_WINDOW`` (``title_copy``). Titles
   are compared exactly after normalization, never fuzzily, so "… to Turkey" and "… to
   India" stay two stories; a trailing " - X" is dropped only when X names a publisher
   (``publisher_names``: the feed's title or host, the entry's link host, an aggregator's
   source element), so "Lost Shows - Part 2" keeps its part number;
4. within one feed, for entries with neither guid nor link: a hash of the whole title and
   the date (``fingerprint``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from msgspec import Struct, field
from msgspec.structs import replace

from monitor.models import Entry
from monitor.text import fold_whitespace

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
# " - Reuters", " | Defense News", " — BBC News": a trailing name after a separator.
_SUFFIX_RE = re.compile(r"\s+[-–—|:]\s+([^-–—|]{1,80})$")
_PUNCTUATION_RE = re.compile(r"[^\w\s]+")
_NOT_ALNUM_RE = re.compile(r"[\W_]+")
# A feed title's own parts: "BBC News - World" is published by "BBC News".
_TITLE_PARTS_RE = re.compile(r"\s+[-–—|:]\s+")
# What earlier versions took for a publisher suffix (any short one): kept only to
# recognize the fingerprints they stored (``legacy_fingerprint``).
_LEGACY_SUFFIX_RE = re.compile(r"\s+[-–—|]\s+([^-–—|]{1,60})$")


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
    if _is_opaque_host(parts.hostname or ""):
        return True
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments and not parts.query:
        return True  # a site's front page is no story's address
    return any(_OPAQUE_SEGMENT_RE.match(s) and not _SLUG_RE.search(s) for s in segments)


@functools.lru_cache(maxsize=4096)  # a feed's entries share a few hosts
def _is_opaque_host(host: str) -> bool:
    return host in OPAQUE_HOSTS or any(host.endswith("." + opaque) for opaque in OPAQUE_HOSTS)


def _compact(name: str) -> str:
    """A name reduced to its letters and digits: "Defense News" and "defensenews" agree."""
    return _NOT_ALNUM_RE.sub("", unicodedata.normalize("NFKC", name).casefold())


def _host_names(url: str | None) -> set[str]:
    """Names a site's host goes by: "www.reuters.com" is "reuters.com" and "reuters"."""
    try:
        host = (urlsplit(url.strip()).hostname or "") if url else ""
    except ValueError:
        return set()
    return set(_names_of_host(host))


@functools.lru_cache(maxsize=4096)  # a feed's entries share a few hosts
def _names_of_host(host: str) -> frozenset[str]:
    labels = [label for label in host.removeprefix("www.").split(".") if label]
    if len(labels) < 2 or ":" in host or labels[-1].isdigit():
        return frozenset()  # an IP address names no publisher
    # The label before the public suffix: "reuters" in "reuters.com", and for a short
    # second level ("co" in "bbc.co.uk") the one before it too.
    names = {_compact(".".join(labels)), _compact(labels[-2])}
    if len(labels) >= 3 and len(labels[-2]) <= 3:
        names.add(_compact(labels[-3]))
    return frozenset(names)


def publisher_names(name: str | None, url: str | None) -> frozenset[str]:
    """The names a trailing " - X" of a title may give for the publisher ``name`` at ``url``.

    ``name`` is a feed's title or an aggregator's source element; a feed title with parts
    ("BBC News - World") names its publisher by each part.
    """
    names = _host_names(url)
    if name:
        names.add(_compact(name))
        names.update(_compact(part) for part in _TITLE_PARTS_RE.split(name.strip()))
    names.discard("")
    return frozenset(names)


def _plain(title: str) -> str:
    """A title without case, punctuation and spacing differences."""
    text = _PUNCTUATION_RE.sub(" ", unicodedata.normalize("NFKC", title).casefold())
    return fold_whitespace(text)


def title_key(title: str, publishers: frozenset[str] = frozenset()) -> str:
    """A title reduced to what every copy of it shares.

    Case, punctuation and spacing are dropped, and so is a trailing " - X", " | X" or
    " — X" when X is one of ``publishers`` (see ``publisher_names``): aggregators append
    the source's name; any other suffix ("Part 2", "Analysis") is part of the title.
    """
    text = unicodedata.normalize("NFKC", title).strip()
    suffix = _SUFFIX_RE.search(text)
    if suffix and text[: suffix.start()].strip() and _compact(suffix.group(1)) in publishers:
        text = text[: suffix.start()]
    return _plain(text)


def fingerprint(title: str, published: float | None) -> str:
    """Identity of an entry with neither guid nor link: its whole title and its date."""
    digest = hashlib.sha256(f"{_plain(title)}\x00{published or ''}".encode()).hexdigest()
    return digest[:32]


def legacy_fingerprint(title: str, published: float | None) -> str:
    """The fingerprint earlier versions stored: they dropped any short trailing " - X"
    from the title first. Still looked up, so an upgrade never alerts a story again."""
    text = unicodedata.normalize("NFKC", title).strip()
    suffix = _LEGACY_SUFFIX_RE.search(text)
    if suffix:
        remainder = text[: suffix.start()]
        if len(suffix.group(1).split()) <= 5 and len(remainder.split()) >= 4:
            text = remainder
    digest = hashlib.sha256(f"{_plain(text)}\x00{published or ''}".encode()).hexdigest()
    return digest[:32]


def with_keys(entry: Entry, publishers: frozenset[str] = frozenset()) -> Entry:
    """``entry`` with its identity keys computed (parsing does this for every entry, with
    the ``publishers`` its feed names: see ``publisher_names``)."""
    if entry.title_key is not None:
        return entry
    link_key = canonical_url(entry.link)
    opaque = _is_opaque_canonical(link_key)
    if not opaque:
        publishers = publishers | _host_names(link_key)  # "… - Naval News" at navalnews.com
    return replace(
        entry,
        title_key=title_key(entry.title, publishers),
        link_key=link_key,
        opaque_link=opaque,
    )


def shared_links(entries: list[Entry]) -> set[str]:
    """Canonical links, and guid keys ("id:..."), that a feed document uses for several
    different entries, so that they tell none of them apart.

    A press-release page listed as the link of every item identifies none of them; nor
    does a page whose items differ only by fragment ("entries.php#110", "#111"), even
    under one title; nor a guid the feed gives every item.
    """
    links: dict[str, tuple[str | None, str | None]] = {}
    guids: dict[str, str | None] = {}
    shared = set()
    for entry in entries:
        if entry.link_key is not None:
            seen = links.setdefault(entry.link_key, (entry.title_key, entry.link))
            if seen != (entry.title_key, entry.link):
                shared.add(entry.link_key)
        is_guid = entry.key.startswith("id:")
        if is_guid and guids.setdefault(entry.key, entry.title_key) != entry.title_key:
            shared.add(entry.key)
    return shared


def entry_key(guid: str | None, link: str | None, title: str, published: float | None) -> str:
    """An entry's key within its feed: its guid, else its canonical link, else a hash."""
    if guid and guid.strip():
        return "id:" + guid.strip()
    if canonical := canonical_url(link):
        return "link:" + canonical
    return "hash:" + fingerprint(title, published)


class SourceKeys(Struct, frozen=True):
    """The identity keys of one entry as one feed publishes it."""

    entry_key: str  # unique within the feed
    link: str | None  # as published, for display
    link_key: str | None  # canonical form of the link, whatever it is worth
    canonical_link: str | None  # the same, or None when the link identifies nothing
    title_key: str
    opaque: bool  # the link says nothing of the story: title matching may apply
    content_hash: str  # changes when the publisher edits the entry
    # The link when it tells this entry apart from the feed's others, even if it names
    # nothing outside the feed (a FeedBurner token); None for a shared link or front page.
    own_link: str | None = None
    published: float | None = None
    legacy_key: str | None = None  # the key an earlier version stored it under, if other


def _names_a_page(canonical: str | None) -> bool:
    """Whether a canonical link has a path or query: a front page tells no entry apart."""
    if canonical is None:
        return False
    if canonical.startswith("https://"):
        # canonical_url's form: the host, then a path with no trailing slash, then "?" and
        # the query. Read without urlsplit: this runs for every entry of every poll.
        host, _, path_and_query = canonical[len("https://") :].partition("/")
        return bool(path_and_query) or "?" in host
    parts = urlsplit(canonical)
    return bool(parts.path.strip("/") or parts.query)


def source_keys(entry: Entry, shared: set[str]) -> SourceKeys:
    """The keys of ``entry``; ``shared`` are the links and guids its feed uses for several
    entries (``shared_links``, and the store's memory of links told apart before)."""
    entry = with_keys(entry)
    canonical = entry.link_key
    is_shared = canonical in shared
    opaque = bool(entry.opaque_link) or is_shared
    key = entry.key
    if key in shared or (is_shared and key.startswith("link:")):
        # A guid or link the feed gives several entries: its link if that tells it
        # apart, else its title and date.
        if key.startswith("id:") and canonical and not opaque:
            key = f"link:{canonical}"
        else:
            key = "hash:" + fingerprint(entry.title, entry.published)
    legacy = None
    if key.startswith("hash:"):
        legacy = "hash:" + legacy_fingerprint(entry.title, entry.published)
        legacy = None if legacy == key else legacy
    text = "\x00".join((entry.title, entry.summary, entry.content))
    return SourceKeys(
        entry_key=key,
        link=entry.link,
        link_key=canonical,
        canonical_link=None if opaque else canonical,
        title_key=entry.title_key or "",
        opaque=opaque,
        content_hash=hashlib.sha256(text.encode()).hexdigest()[:16],
        own_link=canonical if _names_a_page(canonical) and not is_shared else None,
        published=entry.published,
        legacy_key=legacy,
    )


# Applying the rules ----------------------------------------------------------------------


class KnownSource(Struct, frozen=True):
    """A stored source of a story: a feed and the keys it was seen under there."""

    story_id: int
    feed_id: int
    title_key: str
    content_hash: str
    link_key: str | None = None
    opaque: bool = False
    published: float | None = None  # the story's publication date, when known
    first_seen: float = 0.0


class Lookup(Struct, frozen=True):
    """What the store knows that a poll's entries might be (``Store.lookup`` fills it)."""

    by_entry_key: dict[str, KnownSource]  # this feed's own entries (also by legacy key)
    by_link: dict[str, list[KnownSource]]  # any feed, by canonical link
    by_own_link: dict[str, list[KnownSource]] = field(default_factory=dict)  # this feed,
    # by a link that only tells entries apart within it (an opaque one)
    by_title: dict[str, list[KnownSource]] = field(default_factory=dict)  # other feeds,
    # recent, by title key


def same_in_feed(a: SourceKeys, b: SourceKeys | KnownSource) -> bool:
    """Whether two entries of one feed under different keys are one story: the feed
    regenerated its guid, and the link that tells its entries apart and the title agree."""
    link = b.own_link if isinstance(b, SourceKeys) else b.link_key
    return a.own_link is not None and a.own_link == link and a.title_key == b.title_key


def title_copy(entry: SourceKeys, known: KnownSource, feed_id: int) -> bool:
    """Whether ``known`` (a source first seen within the window) is the story ``entry``
    copies by title: another feed, a link that says nothing on either side, the same
    title, and publication dates (when both are known) within ``TITLE_WINDOW``."""
    if known.feed_id == feed_id or not entry.title_key or known.title_key != entry.title_key:
        return False
    if not (entry.opaque or known.opaque):
        return False
    if entry.published is not None and known.published is not None:
        return abs(entry.published - known.published) <= TITLE_WINDOW
    return True


def identify(keys: SourceKeys, lookup: Lookup, feed_id: int) -> tuple[int | None, bool]:
    """The stored story an entry is, if any, and whether its text may have been edited.

    In order: this feed's own key for it (or the key an earlier version stored); a
    regenerated guid in this feed (``same_in_feed``); another feed's entry with the same
    canonical link; a copy by title from another feed (``title_copy``).
    """
    own = lookup.by_entry_key.get(keys.entry_key)
    if own is not None:
        return own.story_id, own.content_hash != keys.content_hash
    if keys.legacy_key and (legacy := lookup.by_entry_key.get(keys.legacy_key)):
        return legacy.story_id, False
    for known in lookup.by_link.get(keys.canonical_link or "", ()):
        if known.feed_id != feed_id or same_in_feed(keys, known):
            return known.story_id, False
    for known in lookup.by_own_link.get(keys.own_link or "", ()):
        if known.feed_id == feed_id and same_in_feed(keys, known):
            return known.story_id, False
    for known in lookup.by_title.get(keys.title_key, ()):
        if title_copy(keys, known, feed_id):
            return known.story_id, False
    return None, False


def poll_keys(keys: SourceKeys) -> list[str]:
    """Keys under which two entries of one poll (one feed) are the same story: the same
    entry key, or a regenerated guid (``same_in_feed``). Titles alone never join them."""
    out = [f"key:{keys.entry_key}"]
    if keys.own_link:
        out.append(f"own:{keys.own_link}\x00{keys.title_key}")
    return out
