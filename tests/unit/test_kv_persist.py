"""Prefix KV blocks on disk: a file is used only when it is whole and from the same model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from ragcache.backends.local.kvstore import KVBlock, KVStore
from ragcache.backends.local.persist import KVFiles

TOKENS = 4


def block(key: str = "k", parent: str | None = None, fill: float = 1.0) -> KVBlock:
    shape = (1, 2, TOKENS, 8)
    layers = tuple((torch.full(shape, fill + i), torch.full(shape, -fill - i)) for i in range(3))
    return KVBlock(key, parent, TOKENS, layers, persist=True)


def test_a_saved_block_loads_back_equal(tmp_path: Path) -> None:
    files = KVFiles(tmp_path, "model-a")
    files.save(block("k", parent="p", fill=2.0))
    loaded = files.load("k")
    assert loaded is not None and (loaded.key, loaded.parent, loaded.tokens, loaded.persist) == ("k", "p", TOKENS, True)
    for (k, v), (k0, v0) in zip(loaded.layers, block(fill=2.0).layers, strict=True):
        assert torch.equal(k, k0) and torch.equal(v, v0)
    assert files.load("absent") is None
    assert [p.name for p in tmp_path.iterdir()] == ["k.safetensors"]  # no temporary file left behind


def test_a_file_from_another_model_is_ignored_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    KVFiles(tmp_path, "model-a").save(block())
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        assert KVFiles(tmp_path, "model-b").load("k") is None
    assert "another model" in caplog.text and "k.safetensors" in caplog.text
    assert KVStore(1 << 20, files=KVFiles(tmp_path, "model-b")).match(["k"]).blocks == ()


def test_a_torn_file_is_ignored_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = KVFiles(tmp_path, "model-a")
    files.save(block())
    path = files.path("k")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a write cut short
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        assert files.load("k") is None
    assert "ignoring unreadable KV file" in caplog.text


def test_changed_tensor_bytes_fail_the_checksum(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = KVFiles(tmp_path, "model-a")
    files.save(block())
    path = files.path("k")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte belongs to the last tensor
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        assert files.load("k") is None
    assert "checksum mismatch" in caplog.text


def test_a_file_renamed_to_another_key_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = KVFiles(tmp_path, "model-a")
    files.save(block("k"))
    files.path("k").rename(files.path("other"))
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        assert files.load("other") is None
    assert "does not match" in caplog.text


def test_a_corrupt_file_is_a_miss_for_the_store(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    store = KVStore(1 << 20, files=KVFiles(tmp_path, "model-a"))
    assert store.match(["bad"]).blocks == () and len(store) == 0


def test_an_unwritable_folder_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    files = KVFiles(blocker / "kv", "model-a")  # a folder under a regular file cannot exist
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        files.save(block())
    assert "could not persist" in caplog.text
    assert KVStore(1 << 20, files=files).put(block("k2")).stored  # the store itself still works


def test_a_torn_file_is_replaced_on_the_next_save(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 27 item 4: a rejected file used to stay (save skipped any existing path), so every start recomputed."""
    files = KVFiles(tmp_path, "model-a")
    files.save(block("k", fill=3.0))
    path = files.path("k")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # torn: half the bytes
    restarted = KVFiles(tmp_path, "model-a")  # a new process: it knows nothing of the file
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.local.persist"):
        assert restarted.load("k") is None
    assert restarted.save(block("k", fill=3.0))  # the recomputed block
    assert restarted.stats.replaced == 1
    loaded = KVFiles(tmp_path, "model-a").load("k")
    assert loaded is not None and torch.equal(loaded.layers[0][0], block("k", fill=3.0).layers[0][0])


def test_a_corrupt_file_never_loaded_is_replaced_too(tmp_path: Path) -> None:
    """A save finding an unchecked file at the path checks it before keeping it."""
    files = KVFiles(tmp_path, "model-a")
    files.path("k").parent.mkdir(parents=True, exist_ok=True)
    files.path("k").write_bytes(b"not a safetensors file")
    assert files.save(block("k"))
    assert files.stats.replaced == 1 and KVFiles(tmp_path, "model-a").load("k") is not None
    assert KVFiles(tmp_path, "model-a").save(block("k")) and files.stats.written == 1  # a good file is kept
