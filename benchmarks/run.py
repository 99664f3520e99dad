"""Run every benchmark and print its table: ``make bench``."""

from __future__ import annotations

import sys
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
    for name, module in benchmarks:
        if not only or name in only:
            module.main()
            print()
