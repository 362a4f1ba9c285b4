"""Where a hosted backend sends requests and with which key: one rule for every vendor.

The rule (docs/architecture.md, "Layout": secrets only from the environment): the key
comes from ``backend.api_key_env`` or the vendor's variables, in order; with no key,
a request to the vendor's own API is an :class:`AuthenticationError` naming the
variable to set, while a server at ``base_url`` (vLLM, a gateway) gets a placeholder
key, since such servers usually take any. The SDK client is created on first use
(a missing key fails there, not at start-up), shared by the backend's threads and
closed once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragcache.errors import AuthenticationError

if TYPE_CHECKING:
    from ragcache.config import BackendConfig

__all__ = ["PLACEHOLDER_KEY", "Provider"]

PLACEHOLDER_KEY = "not-needed"  # what a self-hosted compatible server is sent when no key is set


class Provider:
    """A vendor endpoint: its key rule, base URL and one lazily created SDK client.

    ``make(key, base_url)`` builds the client; ``client`` (tests, fakes of a vendor API)
    is used as is and never closed by anyone but its owner's :meth:`close`.
    """

    def __init__(
        self,
        vendor: str,
        config: BackendConfig,
        *,
        default_url: str,
        key_envs: tuple[str, ...],
        make: Callable[[str, str | None], Any],
        client: Any = None,
    ) -> None:
        self.vendor = vendor
        self.config = config
        self.default_url = default_url
        self.key_envs = key_envs
        self._make = make
        self._client = client
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str | None:
        """The configured server, or None for the vendor's own API."""
        return self.config.base_url

    @property
    def where(self) -> str:
        """``vendor at URL``, for messages."""
        return f"{self.vendor} at {self.base_url or self.default_url}"

    @property
    def key_env(self) -> str:
        """The variable the key is read from first (what error messages tell the user to set)."""
        return self.config.api_key_env or self.key_envs[0]

    def api_key(self) -> str:
        """The key by the rule of the module docstring."""
        names = (self.config.api_key_env,) if self.config.api_key_env else self.key_envs
        key = next((os.environ[n] for n in names if os.environ.get(n)), None)
        if key:
            return key
        if self.base_url is None:
            wanted = " or ".join(names)
            raise AuthenticationError(f"{self.vendor}: no API key; set the {wanted} environment variable")
        return PLACEHOLDER_KEY

    def client(self) -> Any:
        """The SDK client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make(self.api_key(), self.base_url)
            return self._client

    def close(self) -> None:
        """Close the client (a later request creates a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
