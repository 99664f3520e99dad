"""Benchmarks: run them all with ``make bench``."""
