"""The edit-locality bench's verdicts (docs/architecture.md "Topics that stay put").

Pure checks of block ids as ``blocks.py`` names them (``category:<ids>/<topic>-<part>``); the
builds themselves are tested in tests/unit/test_topic_lock.py.
"""

from __future__ import annotations

from ragcache.bench.edit_locality import only_its_topic


def test_a_split_topic_counts_as_the_documents_topic() -> None:
    moved = {"category:capi/79", "category:capi/79.1", "category:capi/79.2"}
    assert only_its_topic(moved, {"category:capi/79.1"})


def test_a_document_part_counts_as_its_topic() -> None:
    assert only_its_topic({"category:capi/67-2"}, {"category:capi/67-1"})


def test_another_topic_of_the_same_category_does_not_count() -> None:
    assert not only_its_topic({"category:capi/67", "category:capi/76"}, {"category:capi/67"})


def test_another_category_does_not_count() -> None:
    assert not only_its_topic({"category:lang/3"}, {"category:capi/3"})


def test_a_whole_group_that_split_counts() -> None:
    moved = {"category:a+b", "category:a+b/1", "category:a+b/2"}
    assert only_its_topic(moved, {"category:a+b/1"})
    assert only_its_topic({"category:a+b"}, {"category:a+b"})
    assert not only_its_topic({"category:a+c"}, {"category:a+b"})
