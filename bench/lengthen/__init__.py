"""Extension benchmark: Self-Lengthen rounds batched across texts against one at a time (see run.py)."""
