"""The benchmarks are not run by the tests (``make bench`` runs them), but they must keep
up with the code they measure: each one loads, with every name it imports."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = ["match", "store", "poll", "capacity", "idle", "article", "events"]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_loads(name: str) -> None:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    assert callable(module.main)


def test_the_runner_knows_every_benchmark() -> None:
    runner = importlib.import_module("benchmarks.run")
    source = runner.__file__
    assert source is not None
    text = Path(source).read_text(encoding="utf-8")
    assert all(f'("{name}", bench_{name})' in text for name in BENCHMARKS)
