"""Benchmark of the lineage store (see bench/lineage/README.md); run ``python -m bench.lineage``."""
