"""Errors the CLI turns into one-line messages and exit code 2 (no traceback).

What it is: the user-facing error types. What it is not: internal failures, which keep their
tracebacks.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: printed as one message, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid loop config; ``problems`` lists (yaml path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))
