"""The build lock and the cleanup after a killed build (ragcache/corpus/buildlock.py)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from ragcache.corpus.buildlock import build_lock, lock_path, recover_interrupted
from ragcache.errors import CorpusError


def make_build(path: Path, marker: str) -> None:
    (path / "blocks").mkdir(parents=True)
    (path / "manifest.json").write_text(marker)


def test_a_held_lock_fails_fast_naming_the_folder_when_not_waiting(tmp_path: Path) -> None:
    out = tmp_path / "build"
    with build_lock(out):
        other = os.open(lock_path(out), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the kernel lock is really held
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    holder = os.open(lock_path(out), os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    os.pwrite(holder, b"4242\n", 0)
    try:
        running = r"another build of this folder is running \(pid 4242\)"
        with pytest.raises(CorpusError, match=running) as caught, build_lock(out, wait=False):
            pass
        assert str(out) in str(caught.value) and str(lock_path(out)) in str(caught.value)
    finally:
        os.close(holder)


def test_the_lock_is_released_when_the_build_fails(tmp_path: Path) -> None:
    out = tmp_path / "build"
    with pytest.raises(RuntimeError), build_lock(out):
        raise RuntimeError("build failed")
    with build_lock(out, wait=False):
        assert lock_path(out).read_text().strip() == str(os.getpid())


def test_recovery_removes_temp_folders_and_restores_a_build_caught_mid_swap(tmp_path: Path) -> None:
    out = tmp_path / "build"
    make_build(tmp_path / ".build.old-abc" / "build", "previous")
    (tmp_path / ".build.tmp-xyz" / "blocks").mkdir(parents=True)
    (tmp_path / ".other.tmp-1").mkdir()  # another folder's: not ours to touch
    recover_interrupted(out)
    assert (out / "manifest.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1", "build"]


def test_recovery_never_replaces_a_build_in_place(tmp_path: Path) -> None:
    out = tmp_path / "build"
    make_build(out, "current")
    make_build(tmp_path / ".build.old-abc" / "build", "older")
    recover_interrupted(out)
    assert (out / "manifest.json").read_text() == "current"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]
