"""Sandbox benchmark: isolated executions/s against a bare ``python -c`` per test (see run.py)."""
