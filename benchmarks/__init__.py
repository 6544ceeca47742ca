"""Benchmarks, each runnable as ``python -m benchmarks.<name>`` (results in ``.bench-data/``)."""
