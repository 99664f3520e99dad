"""feed-monitor: poll RSS/Atom feeds, store each story once, match watchlists, send alerts."""

__version__ = "0.1.0"
