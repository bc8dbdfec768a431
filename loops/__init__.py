"""Loop recipes, one module per loop; each registers itself through ``register_loops``.

A loop is a short composition of shared stages (looked up by role through the runner), never a
copy of a paper's scripts.
"""
