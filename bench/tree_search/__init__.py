"""Tree-search benchmark: batched frontier expansion against node-by-node expansion (see run.py)."""
