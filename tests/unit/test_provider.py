"""The one key / base-URL / client-lifetime rule every hosted backend uses (ragcache.backends.provider)."""

from __future__ import annotations

import pytest

from ragcache.backends.anthropic.backend import AnthropicBackend
from ragcache.backends.gemini.backend import GeminiBackend
from ragcache.backends.openai.backend import OpenAIBackend
from ragcache.backends.provider import PLACEHOLDER_KEY, Provider
from ragcache.config import BackendConfig, CacheConfig
from ragcache.errors import AuthenticationError


class Client:
    def __init__(self, key: str, url: str | None) -> None:
        self.key, self.url, self.closed = key, url, False

    def close(self) -> None:
        self.closed = True


def provider(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **config: object) -> Provider:
    for name in ("ACME_KEY", "ACME_OTHER_KEY", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Provider(
        "acme",
        BackendConfig(kind="acme", **config),
        default_url="https://api.acme.example",
        key_envs=("ACME_KEY", "ACME_OTHER_KEY"),
        make=Client,
    )


def test_the_key_comes_from_the_configured_variable_else_the_vendors_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert provider(monkeypatch, {"ACME_OTHER_KEY": "k2"}).api_key() == "k2"
    assert provider(monkeypatch, {"ACME_KEY": "k1", "ACME_OTHER_KEY": "k2"}).api_key() == "k1"
    named = provider(monkeypatch, {"ACME_KEY": "k1", "MY_KEY": "mine"}, api_key_env="MY_KEY")
    assert (named.api_key(), named.key_env) == ("mine", "MY_KEY")


def test_no_key_fails_for_the_vendor_api_and_sends_a_placeholder_to_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthenticationError, match="acme: no API key; set the ACME_KEY or ACME_OTHER_KEY environment"):
        provider(monkeypatch, {}).client()
    server = provider(monkeypatch, {}, base_url="http://localhost:8000/v1")
    assert (server.client().key, server.client().url) == (PLACEHOLDER_KEY, "http://localhost:8000/v1")
    assert server.where == "acme at http://localhost:8000/v1"


def test_the_client_is_made_once_and_closed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider(monkeypatch, {"ACME_KEY": "k"})
    first = p.client()
    assert p.client() is first and p.where == "acme at https://api.acme.example"
    p.close()
    assert first.closed and p.client() is not first


@pytest.mark.parametrize(
    ("backend", "kind", "env"),
    [(AnthropicBackend, "anthropic", "ANTHROPIC_API_KEY"), (OpenAIBackend, "openai", "OPENAI_API_KEY")],
)
def test_hosted_backends_share_the_rule(monkeypatch: pytest.MonkeyPatch, backend: type, kind: str, env: str) -> None:
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(AuthenticationError, match=f"{kind}: no API key; set the {env} environment variable"):
        backend(BackendConfig(kind=kind), CacheConfig()).provider.client()


def test_gemini_reads_either_of_its_two_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    assert GeminiBackend(BackendConfig(kind="gemini"), CacheConfig()).provider.api_key() == "g"
