"""One error hierarchy for ragcache.

    RagCacheError
    ├── ConfigError            bad or unknown config key, bad env override
    ├── InvalidTextError       caller text no backend can take (lone surrogate, NUL)
    ├── CorpusError            unreadable / malformed corpus or build
    │   ├── EmptyCorpusError   a corpus with no documents
    │   └── CorpusNotFoundError  no served corpus by that name
    ├── ModelError             model missing or cannot be loaded
    ├── RoutingError           no route fits the budget
    ├── PortInUseError         ``serve``'s address is taken by another process
    └── BackendError           anything an engine or vendor API reports
        ├── AuthenticationError   missing or wrong API key
        ├── RateLimitError        429 / overloaded; retryable
        ├── ContextLengthError    prompt longer than the context window
        ├── BackendUnavailableError  endpoint down, timeout, 5xx; retryable
        └── UnsupportedError      the backend cannot do this (e.g. warm)

Lower-level errors (SDK, HTTP, OS) are mapped into these at one place per
module with ``raise ... from exc``; the CLI turns them into exit codes and the
server into HTTP statuses (``ragcache/server/errors.py``).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendUnavailableError",
    "ConfigError",
    "ContextLengthError",
    "CorpusError",
    "CorpusNotFoundError",
    "EmptyCorpusError",
    "InvalidTextError",
    "ModelError",
    "PortInUseError",
    "RagCacheError",
    "RateLimitError",
    "RoutingError",
    "UnsupportedError",
]


class RagCacheError(Exception):
    """Base of every error ragcache raises on purpose."""

    exit_code: int = 1
    code: str = "ragcache_error"


class ConfigError(RagCacheError):
    exit_code = 2
    code = "config_error"


class InvalidTextError(RagCacheError):
    """A question, message or context holds text ragcache refuses (ragcache/text.py); ``field`` names it."""

    exit_code = 2
    code = "invalid_text"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CorpusError(RagCacheError):
    exit_code = 3
    code = "corpus_error"


class EmptyCorpusError(CorpusError):
    code = "empty_corpus"


class CorpusNotFoundError(CorpusError):
    code = "corpus_not_found"


class ModelError(RagCacheError):
    exit_code = 4
    code = "model_error"


class RoutingError(RagCacheError):
    exit_code = 5
    code = "routing_error"


class PortInUseError(RagCacheError):
    """``serve`` cannot bind its host and port: another process listens there (its own exit code)."""

    exit_code = 7
    code = "port_in_use"


class BackendError(RagCacheError):
    """An engine or vendor failure.

    ``retryable``: waiting and trying again can help (class default, may be
    narrowed per error, e.g. a 429 for exhausted credit). ``safe_to_retry``: the
    request certainly did no billable work (refused connection, 429), so even a
    long generation may be re-sent. ``retry_after``: seconds the server asked for.
    """

    exit_code = 6
    code = "backend_error"
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        retryable: bool | None = None,
        safe_to_retry: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.safe_to_retry = safe_to_retry
        self.retry_after = retry_after


class AuthenticationError(BackendError):
    code = "authentication_error"


class RateLimitError(BackendError):
    code = "rate_limit_exceeded"
    retryable = True


class ContextLengthError(BackendError):
    code = "context_length_exceeded"


class BackendUnavailableError(BackendError):
    code = "backend_unavailable"
    retryable = True


class UnsupportedError(BackendError):
    code = "unsupported"
