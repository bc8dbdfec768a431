"""Errors the CLI turns into one-line messages and exit code 2 (no traceback).

What it is: the user-facing error types, and StageFailed (a stage that raised during a run, in
one line; exit code 1). What it is not: internal failures, which keep their
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


class RunFailed(Exception):
    """A run that stopped after it started (it is marked failed and can be resumed): one line
    saying why; ``run_dir`` is set by the run once known, for the resume hint. Exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        self.run_dir: str | None = None
        super().__init__(message)

    def summary(self) -> str:
        return str(self)


class StoreFailed(RunFailed):
    """The lineage store (or the run directory's disk) could not be written or reached mid-run: a
    full disk, a database server that went away. Nothing half-written stays: resume once fixed."""


class StageFailed(RunFailed):
    """A stage, trainer or evaluator raised while a run was going: where it happened, in one line.

    ``role`` is the loop role (``draft``, ``train:policy``, ``eval:humaneval``), ``stage`` and
    ``plugin`` the bound stage and the distribution that registered it, ``record`` the input
    record's id where one record was at fault, ``cause`` the first line of the original error.
    The run is marked failed and can be resumed once the cause is fixed (exit code 1).
    """

    def __init__(self, *, iteration: int, role: str, stage: str, plugin: str, cause: BaseException,
                 record: str | None = None) -> None:
        self.iteration, self.role, self.stage = iteration, role, stage
        self.plugin, self.record = plugin, record
        inner = getattr(cause, "cause", None)  # a remote error (Ray) carries the original
        cause = inner if isinstance(inner, BaseException) else cause
        text = str(cause).strip().splitlines()
        self.cause = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
        super().__init__(self.summary())

    def summary(self) -> str:
        on = f" on record {self.record}" if self.record else ""
        return (f"iteration {self.iteration}, role {self.role!r}: stage {self.stage!r} "
                f"(plugin {self.plugin}) failed{on}: {self.cause}")
