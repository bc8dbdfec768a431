"""Episode benchmark: batched episode stepping, adapter hand-off, reinforce against GRPO (see run.py)."""
