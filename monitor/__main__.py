"""``python -m monitor`` runs the feed-monitor command line."""

from monitor.cli import main

main()
