"""Sampling: the sampler protocol, the model resolver and the request cache (no backends here)."""
