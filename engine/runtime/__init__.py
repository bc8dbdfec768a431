"""The runtime: runs a resolved loop config as iterations of stage calls.

What it is: the runner (binds roles to stages, records every stage execution and its output
records in the lineage store, fires event hooks, resumes) and the run directory lifecycle. The
only package of the engine that may import ray. What it is not: a loop recipe; loops decide
what to call, the runtime decides how and where.
"""
