"""Errors of the sampling layer that the CLI shows as one-line messages.

What it is: the user-facing failures of model resolution, backends and prompts. What it is not:
internal bugs of a backend, which keep their own exception types and tracebacks.
"""

from __future__ import annotations

from engine.errors import UserError


class ModelResolutionError(UserError):
    """A model alias, directory or hub id that cannot be turned into a local HF directory."""


class BackendMissingError(UserError):
    """A sampler backend whose Python package is not installed; the message names the extra."""

    def __init__(self, backend: str, module: str, extra: str) -> None:
        self.extra = extra
        super().__init__(f"the {backend!r} sampler needs the {module!r} package, which is not installed: "
                         f"pip install 'autodidact[{extra}]'")


class PromptTooLongError(UserError):
    """A prompt that does not fit the model's context with room for ``max_tokens``."""

    def __init__(self, index: int, prompt_tokens: int, max_tokens: int, context: int) -> None:
        self.index = index
        super().__init__(f"request {index}: prompt of {prompt_tokens} tokens + max_tokens {max_tokens} "
                         f"exceeds the model context of {context} tokens; shorten it, lower max_tokens, "
                         f"or set the sampler option truncation='left'")


class SamplerRequestError(RuntimeError):
    """A backend request that failed for good (after its retries), e.g. an HTTP 400 or a dead server."""
