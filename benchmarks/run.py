"""Run every benchmark and print its table: ``make bench``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_match, bench_store

if __name__ == "__main__":
    bench_match.main()
    print()
    bench_store.main()
