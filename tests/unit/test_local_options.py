"""``backend.options`` of the local backend, validated before any model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.backends.base import parse_options
from ragcache.backends.local import LocalBackend, LocalOptions
from ragcache.config import BackendConfig
from ragcache.errors import ConfigError


def test_the_local_backend_declares_its_options_model() -> None:
    assert LocalBackend.Options is LocalOptions


def test_known_options_parse_and_defaults_follow_the_device() -> None:
    options = parse_options(LocalOptions, BackendConfig(options={"device": "cpu", "threads": 2}))
    assert (options.device, options.threads, options.resolved_dtype("cpu")) == ("cpu", 2, "float32")
    assert options.resolved_dtype("cuda") == "bfloat16"
    assert parse_options(LocalOptions, BackendConfig(options={"dtype": "float16"})).resolved_dtype("cpu") == "float16"


def test_cuda_graphs_default_to_on_for_cuda_only_and_can_be_switched_off() -> None:
    default = parse_options(LocalOptions, BackendConfig())
    off = parse_options(LocalOptions, BackendConfig(options={"cuda_graphs": False}))
    asked = parse_options(LocalOptions, BackendConfig(options={"cuda_graphs": True}))
    assert [o.resolved_cuda_graphs("cuda") for o in (default, off, asked)] == [True, False, True]
    assert [o.resolved_cuda_graphs("cuda:1") for o in (default, off, asked)] == [True, False, True]
    assert [o.resolved_cuda_graphs("cpu") for o in (default, off, asked)] == [False, False, False]


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"devise": "cpu"}, "backend.options.devise: unknown key"),
        ({"threads": 0}, "backend.options.threads"),
        ({"dtype": "float8"}, "backend.options.dtype"),
        ({"cuda_graphs": "sometimes"}, "backend.options.cuda_graphs"),
    ],
)
def test_a_bad_option_is_a_config_error_naming_the_key_and_the_file(options: dict, names: str) -> None:
    config = BackendConfig(options=options, source=Path("/etc/ragcache/local.yaml"))
    with pytest.raises(ConfigError) as error:
        parse_options(LocalOptions, config)
    assert str(error.value).startswith("/etc/ragcache/local.yaml: ") and names in str(error.value)
