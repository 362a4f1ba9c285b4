"""The prefix KV store: insert results, LRU by bytes, TTL, descendants, private copies, threads, persistence."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from ragcache.backends.local.kvstore import InsertResult, KVBlock, KVStore
from ragcache.backends.local.persist import KVFiles

LAYERS = 2
TOKENS = 4
# one block: 2 layers x (k, v) x [1, 1, TOKENS, 8] float32 = 2 * 2 * 4 * 8 * 4 bytes
BLOCK_BYTES = LAYERS * 2 * TOKENS * 8 * 4


def block(key: str, parent: str | None = None, fill: float = 1.0, persist: bool = False) -> KVBlock:
    layers = tuple((torch.full((1, 1, TOKENS, 8), fill), torch.full((1, 1, TOKENS, 8), -fill)) for _ in range(LAYERS))
    return KVBlock(key, parent, TOKENS, layers, persist=persist)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_block_bytes_are_counted() -> None:
    store = KVStore(10 * BLOCK_BYTES)
    assert store.put(block("a")).stored
    assert block("a").nbytes == BLOCK_BYTES
    assert store.nbytes == BLOCK_BYTES


def test_match_returns_the_longest_present_chain() -> None:
    store = KVStore(10 * BLOCK_BYTES)
    store.put(block("a"))
    store.put(block("b", "a"))
    assert [b.key for b in store.match(["a", "b", "c"]).blocks] == ["a", "b"]
    assert store.match(["a", "b", "c"]).tokens == 2 * TOKENS
    assert store.match(["x", "a"]).blocks == ()


def test_lru_evicts_the_least_recently_used_block_to_stay_in_budget() -> None:
    store = KVStore(2 * BLOCK_BYTES)
    store.put(block("a"))
    store.put(block("b"))
    store.match(["a"])  # a is now more recent than b
    assert store.put(block("c")).stored
    assert "a" in store and "c" in store and "b" not in store
    assert store.nbytes <= 2 * BLOCK_BYTES


def test_a_hot_root_outlives_the_leaves_hanging_off_it() -> None:
    store = KVStore(3 * BLOCK_BYTES)
    store.put(block("root"))
    store.put(block("turn1", "root"))
    store.put(block("turn2", "root"))
    store.put(block("other"))  # evicts the least recent: a leaf, never the root they share
    assert "root" in store
    assert "turn1" not in store


def test_evicting_a_parent_evicts_its_descendants() -> None:
    store = KVStore(3 * BLOCK_BYTES)
    store.put(block("a"))
    store.put(block("b", "a"))
    store._remove("a")  # as the LRU victim would be
    assert len(store) == 0 and store.nbytes == 0


def test_put_says_why_a_block_was_not_stored() -> None:
    assert KVStore(BLOCK_BYTES - 1).put(block("a")) == InsertResult("over-budget")
    assert KVStore(0).put(block("a")) == InsertResult("disabled")
    store = KVStore(10 * BLOCK_BYTES)
    assert store.put(block("b", parent="missing")) == InsertResult("orphaned")
    assert len(store) == 0
    first, again = store.put(block("a")), store.put(block("a", fill=2.0))
    assert (first.status, first.stored, first.present) == ("stored", True, True)
    assert (again.status, again.stored, again.present) == ("present", False, True)
    assert len(store) == 1 and store.nbytes == BLOCK_BYTES
    assert torch.equal(store.match(["a"]).blocks[0].layers[0][0], torch.ones(1, 1, TOKENS, 8))  # the first copy


def test_a_child_whose_chain_does_not_fit_the_budget_is_over_budget_and_leaves_nothing_behind() -> None:
    store = KVStore(BLOCK_BYTES + BLOCK_BYTES // 2)
    assert store.put(block("root")).stored
    assert store.put(block("leaf", "root")) == InsertResult("over-budget")
    assert "leaf" not in store and store.nbytes <= store.budget_bytes


def test_a_present_block_put_again_becomes_most_recently_used() -> None:
    store = KVStore(2 * BLOCK_BYTES)
    store.put(block("a"))
    store.put(block("b"))
    assert not store.put(block("a")).stored  # present: refreshed, so b is now the least recent
    store.put(block("c"))
    assert "a" in store and "b" not in store


def test_ttl_expires_idle_blocks_and_a_hit_refreshes_them() -> None:
    clock = Clock()
    store = KVStore(10 * BLOCK_BYTES, ttl_s=60, clock=clock)
    store.put(block("a"))
    store.put(block("b"))
    clock.now = 50
    assert store.match(["a"]).tokens == TOKENS  # refreshes a only
    clock.now = 100
    assert store.match(["b"]).blocks == ()
    assert store.match(["a"]).tokens == TOKENS
    clock.now = 200
    assert store.match(["a"]).blocks == ()
    assert len(store) == 0 and store.nbytes == 0


def test_put_keeps_a_private_copy() -> None:
    source = block("a")
    store = KVStore(10 * BLOCK_BYTES)
    store.put(source)
    source.layers[0][0].add_(100)  # the request's own tensors keep changing
    stored = store.match(["a"]).blocks[0]
    assert torch.equal(stored.layers[0][0], torch.ones(1, 1, TOKENS, 8))
    assert stored.layers[0][0].data_ptr() != source.layers[0][0].data_ptr()


def test_concurrent_puts_and_matches_keep_the_accounting_exact() -> None:
    store = KVStore(8 * BLOCK_BYTES)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                root = f"root{(n + i) % 5}"
                store.put(block(root))
                store.put(block(f"{root}/{n}/{i}", root))
                store.match([root, f"{root}/{n}/{i}"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = list(store._entries.values())
    assert store.nbytes == sum(e.block.nbytes for e in entries) <= 8 * BLOCK_BYTES
    assert all(e.block.parent is None or e.block.parent in store for e in entries)


def test_persisted_blocks_are_loaded_by_a_new_store(tmp_path: Path) -> None:
    first = KVStore(10 * BLOCK_BYTES, files=KVFiles(tmp_path, "model-a"))
    assert first.put(block("stable", fill=3.0, persist=True)).stored
    first.put(block("volatile", "stable"))  # not marked persist: memory only
    assert [p.name for p in tmp_path.iterdir()] == ["stable.safetensors"]
    restarted = KVStore(10 * BLOCK_BYTES, files=KVFiles(tmp_path, "model-a"))
    match = restarted.match(["stable", "volatile"])
    assert [b.key for b in match.blocks] == ["stable"]
    assert torch.equal(match.blocks[0].layers[1][1], torch.full((1, 1, TOKENS, 8), -3.0))
    assert restarted.nbytes == BLOCK_BYTES


def test_a_negative_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="budget_bytes"):
        KVStore(-1)
