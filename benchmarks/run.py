"""Run every benchmark and print its table: ``make bench``."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    bench_article,
    bench_capacity,
    bench_events,
    bench_idle,
    bench_match,
    bench_poll,
    bench_store,
)

if __name__ == "__main__":
    only = sys.argv[1:]  # e.g. `python benchmarks/run.py poll`
    benchmarks = (
        ("match", bench_match),
        ("store", bench_store),
        ("poll", bench_poll),
        ("capacity", bench_capacity),
        ("idle", bench_idle),
        ("article", bench_article),
        ("events", bench_events),
    )
    # The configs the benchmarks make are cached (monitor.config_load) where they run,
    # not in the user's ~/.cache, and go with them.
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        os.environ.pop("CACHE_DIRECTORY", None)
        for name, module in benchmarks:
            if not only or name in only:
                module.main()
                print()
