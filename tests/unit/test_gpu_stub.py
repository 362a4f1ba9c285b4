"""The instant upstream's bookkeeping (ragcache/bench/gpu_stub.py): its prefix cache and the profile digest.

The stub itself serves the load phase in ``python -m ragcache.bench.gpu_stub run`` (docs/bench/gpu §5);
what it reports as cached must behave like vLLM's prefix cache (whole 16-token blocks, a chain
that stops at the first block not seen), or the bench's cached share would mean nothing.
"""

from __future__ import annotations

import pytest

from ragcache.bench.gpu_stub import BLOCK, PrefixCache, Setup, main, parse_setup, top_functions


def test_only_whole_blocks_of_a_seen_prefix_count_as_cached() -> None:
    cache = PrefixCache()
    first = list(range(3 * BLOCK + 5))
    assert cache.cached_tokens(first) == 0  # cold
    assert cache.cached_tokens(first) == 3 * BLOCK  # the partial last block is never cached
    longer = [*first[: 2 * BLOCK], *range(1000, 1000 + 2 * BLOCK)]
    assert cache.cached_tokens(longer) == 2 * BLOCK  # shares two blocks, then differs
    changed_first = [7, *first[1:]]
    assert cache.cached_tokens(changed_first) == 0  # a chain: nothing after a changed block matches


def test_the_profile_digest_counts_each_function_once_per_sample() -> None:
    collapsed = "main (a.py:1);work (a.py:5);work (a.py:5) 3\nmain (a.py:1);idle (b.py:2) 1\nnot a stack line\n"
    top = dict(top_functions(collapsed))
    assert top["main (a.py:1)"] == 1.0
    assert top["work (a.py:5)"] == 0.75  # recursion does not count twice
    assert top["idle (b.py:2)"] == 0.25
    assert top_functions("") == []


def test_a_setup_names_its_workers_and_their_environment() -> None:
    setup = parse_setup("2  RAYON_NUM_THREADS=16 OMP_NUM_THREADS=16")
    assert (setup.label, setup.workers) == ("2 RAYON_NUM_THREADS=16 OMP_NUM_THREADS=16", 2)
    assert setup.env == {"RAYON_NUM_THREADS": "16", "OMP_NUM_THREADS": "16"}
    assert parse_setup("1") == Setup("1", 1, {})
    for bad, why in (("two", "number of workers"), ("0", "number of workers"), ("2 RAYON", "not NAME=value")):
        with pytest.raises(ValueError, match=why):
            parse_setup(bad)


def test_a_bad_setup_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--root", "unused", "--setup", "2 =x"])
    assert exit_info.value.code == 2 and "--setup: setup '2 =x'" in capsys.readouterr().err


def test_a_first_requests_run_needs_a_later_pass_to_compare_with(capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--passes", "1"], ["--workers", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["first", "--root", "unused", *flags])
        assert exit_info.value.code == 2 and "needs --workers >= 1 and --passes >= 2" in capsys.readouterr().err
