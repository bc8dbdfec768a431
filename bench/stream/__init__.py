"""Benchmark of streamed stages (see bench/stream/run.py); run ``python -m bench.stream``."""
