"""Prefix KV blocks on disk: a file is used only when it is whole and from the same model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from ragcache.backends.local.kvstore import KVBlock, KVStore
from ragcache.backends.local.persist import KVFiles, clear, disk_usage, resolve_dir

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
    assert "(removed)" in caplog.text and not path.exists()  # issue 26: a corrupt file is removed at once
    assert restarted.save(block("k", fill=3.0))  # the recomputed block
    assert restarted.stats.written == 1
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


def test_the_size_bound_evicts_the_least_recently_used_file(tmp_path: Path) -> None:
    """Issue 26: the KV folder stays under cache.persist_max_mb; a load makes a file most recently used."""
    probe = KVFiles(tmp_path / "probe", "model-a")
    probe.save(block("p"))
    one = probe.path("p").stat().st_size
    files = KVFiles(tmp_path / "kv", "model-a", max_bytes=2 * one + one // 2)  # room for two files
    for key in ("a", "b"):
        assert files.save(block(key))
    os.utime(files.path("a"), (1, 1))  # "a" older than "b" ...
    os.utime(files.path("b"), (2, 2))
    assert KVFiles(tmp_path / "kv", "model-a").load("a") is not None  # ... until a load uses it
    assert files.save(block("c"))
    assert sorted(p.stem for p in (tmp_path / "kv").glob("*.safetensors")) == ["a", "c"]  # "b" was evicted
    assert disk_usage(tmp_path / "kv").bytes <= files.max_bytes


def test_a_block_larger_than_the_bound_is_not_persisted(tmp_path: Path) -> None:
    files = KVFiles(tmp_path, "model-a", max_bytes=16)
    assert files.save(block("k")) is False and "k" in files.stats.not_persisted
    assert disk_usage(tmp_path).files == 0


def test_clear_empties_the_folder_and_says_what_it_removed(tmp_path: Path) -> None:
    files = KVFiles(tmp_path, "model-a")
    files.save(block("a"))
    files.save(block("b"))
    (tmp_path / ".b.tmp123").write_bytes(b"x")  # a writer's leftover temporary file
    before = disk_usage(tmp_path)
    assert before.files == 2 and before.bytes > 0
    assert clear(tmp_path) == before
    assert list(tmp_path.iterdir()) == [] and disk_usage(tmp_path).files == 0
    assert clear(tmp_path / "absent").files == 0  # nothing to clear is not an error


def test_the_folder_is_its_own_setting_apart_from_the_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAGCACHE_KV_DIR moves the KV folder without moving the converted model under RAGCACHE_HOME."""
    monkeypatch.delenv("RAGCACHE_KV_DIR", raising=False)
    monkeypatch.setenv("RAGCACHE_HOME", str(tmp_path / "home"))
    assert resolve_dir() == tmp_path / "home" / "kv"
    monkeypatch.setenv("RAGCACHE_KV_DIR", str(tmp_path / "kv"))
    assert resolve_dir() == tmp_path / "kv"
    assert resolve_dir(str(tmp_path / "configured")) == tmp_path / "configured"  # cache.persist_dir wins
