"""``backend.options`` of the remote backends: pydantic models with ``extra="forbid"``.

Each backend is built from a real YAML file through ``load_config`` and the
registry, as the CLI does; building one opens no connection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.backends.anthropic.backend import AnthropicBackend, AnthropicOptions
from ragcache.backends.base import create_backend
from ragcache.backends.openai.backend import OpenAIBackend, OpenAIOptions
from ragcache.backends.vllm.backend import VllmBackend, VllmOptions
from ragcache.config import load_config
from ragcache.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"openai": OpenAIBackend, "vllm": VllmBackend, "anthropic": AnthropicBackend}


def write_config(tmp_path: Path, kind: str, options: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(f"backend:\n  kind: {kind}\n  base_url: http://127.0.0.1:9\n  options:\n{options}")
    return path


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_unknown_option_is_a_config_error_naming_the_key_and_the_file(tmp_path: Path, kind: str) -> None:
    path = write_config(tmp_path, kind, "    retry_unsafe: true\n    cache_keyy: false\n")
    config = load_config(path, environ={})
    with pytest.raises(ConfigError) as info:
        create_backend(config.backend, config.cache)
    assert str(info.value) == f"{path.resolve()}: backend.options.cache_keyy: unknown key"
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("kind", "options", "key"),
    [
        ("openai", "    api: soap\n", "backend.options.api"),
        ("openai", "    prompt_cache_retention: 1h\n", "backend.options.prompt_cache_retention"),
        ("vllm", "    load_factor: 0.5\n", "backend.options.load_factor"),
        ("vllm", "    prompt_format: text\n", "backend.options.prompt_format"),
        ("anthropic", "    ttl: 2h\n", "backend.options.ttl"),
        ("anthropic", "    count_tokens: exact\n", "backend.options.count_tokens"),
    ],
)
def test_a_bad_option_value_names_the_key_and_the_file(tmp_path: Path, kind: str, options: str, key: str) -> None:
    config = load_config(write_config(tmp_path, kind, options), environ={})
    with pytest.raises(ConfigError, match=rf"^{tmp_path}.*: {key}: "):
        create_backend(config.backend, config.cache)


@pytest.mark.parametrize(
    ("name", "model"), [("openai", OpenAIOptions), ("vllm", VllmOptions), ("anthropic", AnthropicOptions)]
)
def test_the_shipped_configs_parse_into_their_backend_options(name: str, model: type) -> None:
    config = load_config(ROOT / "configs" / f"{name}.yaml", environ={})
    backend = create_backend(config.backend, config.cache)
    assert type(backend) is KINDS[name] and type(backend).Options is model
    assert isinstance(backend.options, model)
    assert backend.options.model_dump(exclude_unset=True).keys() == config.backend.options.keys()
    backend.close()
