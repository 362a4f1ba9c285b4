"""The local engine's batcher as pure scheduling logic, with a scripted engine (no model).

The scripted prefill/step stand in for the model (the real one is exercised in
tests/integration/test_local_batching.py): a sequence's "logits" are its own
prompt id plus how many tokens it has, so a row mixed up with another's shows
as a wrong token.
"""

from __future__ import annotations

import threading
import time

import pytest

from ragcache.backends.base import GenerationOptions
from ragcache.backends.local.batcher import Batcher, Sequence, plan_prefill
from ragcache.errors import BackendError

EOS = frozenset({-1})


class Script:
    """A fake engine: sequence ``p`` emits p*100, p*100+1, …; ``eos_at`` ends one early; prefills and steps
    are recorded (a prefill batch holding a failing prompt fails as a whole, as one forward would)."""

    def __init__(self, eos_at: dict[int, int] | None = None, fail_prefill: set[int] | None = None) -> None:
        self.steps: list[list[int]] = []
        self.prefills: list[list[int]] = []
        self.eos_at = eos_at or {}
        self.fail_prefill = fail_prefill or set()
        self.gate = threading.Event()
        self.gate.set()
        self.in_step = threading.Event()  # set once a step has begun (and waits on the gate)

    def prefill(self, seqs: list[Sequence]) -> list[tuple[int, int]]:
        self.prefills.append([seq.encoded for seq in seqs])
        for seq in seqs:
            if seq.encoded in self.fail_prefill:
                raise ValueError(f"prefill {seq.encoded} failed")
            seq.position = 10
        return [(seq.encoded, 0) for seq in seqs]

    def step(self, rows: list[Sequence]) -> list[tuple[int, int]]:
        self.in_step.set()
        self.gate.wait(5)
        self.steps.append([seq.encoded for seq in rows])
        return [(seq.encoded, seq.generated) for seq in rows]

    def choose(self, logits: tuple[int, int], seq: Sequence) -> int:
        prompt, n = logits
        return -1 if self.eos_at.get(prompt) == n else prompt * 100 + n


def batcher(script: Script, max_batch: int) -> Batcher:
    return Batcher(script.prefill, script.step, script.choose, EOS, max_batch)


def submit(b: Batcher, prompt: int, max_new: int) -> Sequence:
    return b.submit(Sequence(prompt, GenerationOptions(max_tokens=max_new), max_new))


def test_each_sequence_gets_its_own_tokens_and_leaves_at_its_end() -> None:
    script = Script(eos_at={3: 2})
    b = batcher(script, max_batch=4)
    script.gate.clear()  # hold the first step until all three are queued
    seqs = [submit(b, p, n) for p, n in ((1, 5), (2, 2), (3, 9))]
    script.gate.set()
    outputs = [list(seq.tokens()) for seq in seqs]
    assert outputs == [[100, 101, 102, 103, 104], [200, 201], [300, 301]]
    # joined (2 or 3 at once: how many the scheduler admits before the gate opens is timing), then left one by one
    assert max(len(s) for s in script.steps) >= 2 and script.steps[-1] == [1]
    b.close()


def test_max_batch_bounds_the_batch_and_the_rest_wait() -> None:
    script = Script()
    b = batcher(script, max_batch=2)
    script.gate.clear()
    seqs = [submit(b, p, 3) for p in range(1, 6)]
    time.sleep(0.2)
    assert b.queue_depth() >= 2  # at most two admitted while the first step is held
    script.gate.set()
    assert [list(s.tokens()) for s in seqs] == [[p * 100, p * 100 + 1, p * 100 + 2] for p in range(1, 6)]
    assert max(len(s) for s in script.steps) == 2 and b.queue_depth() == 0
    assert max(len(p) for p in script.prefills) <= 2  # a prefill batch only fills free places
    b.close()


def test_a_cancelled_sequence_leaves_before_the_next_step() -> None:
    script = Script()
    b = batcher(script, max_batch=4)
    long, short = submit(b, 1, 1000), submit(b, 2, 3)
    tokens = long.tokens()
    next(tokens)
    long.cancel()
    assert list(short.tokens()) == [200, 201, 202]
    deadline = time.monotonic() + 5
    while b.num_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.num_running() == 0 and sum(1 in step for step in script.steps) < 1000
    b.close()


def test_waiting_sequences_are_prefilled_together_before_the_next_step() -> None:
    script = Script()
    b = batcher(script, max_batch=8)
    script.gate.clear()  # the first sequence's first step is held: the others queue meanwhile
    first = submit(b, 1, 3)
    deadline = time.monotonic() + 5
    while not script.prefills and time.monotonic() < deadline:
        time.sleep(0.01)
    rest = [submit(b, p, 3) for p in range(2, 7)]
    time.sleep(0.1)
    script.gate.set()
    assert [list(s.tokens()) for s in [first, *rest]] == [[p * 100, p * 100 + 1, p * 100 + 2] for p in range(1, 7)]
    assert script.prefills == [[1], [2, 3, 4, 5, 6]]  # one prefill for all that waited, in arrival order
    assert script.steps[1] == [1, 2, 3, 4, 5, 6]  # then they decode together
    b.close()


def test_a_failing_prefill_fails_only_its_request() -> None:
    script = Script(fail_prefill={2})
    b = batcher(script, max_batch=4)
    script.gate.clear()
    submit(b, 3, 1)  # holds the batcher in its first step while the next two queue
    time.sleep(0.1)
    bad, good = submit(b, 2, 3), submit(b, 1, 2)
    script.gate.set()
    with pytest.raises(ValueError, match="prefill 2 failed"):
        list(bad.tokens())
    assert list(good.tokens()) == [100, 101]
    assert [2, 1] in script.prefills and [1] in script.prefills  # together first, then each alone
    b.close()


def test_plan_prefill_packs_short_spans_and_chunks_long_ones() -> None:
    plan = plan_prefill([(0, 3), (5, 15), (2, 4)], budget=6)
    assert plan == [[(0, 0, 3), (1, 5, 8)], [(1, 8, 14)], [(1, 14, 15), (2, 2, 4)]]
    assert plan_prefill([(0, 6), (4, 4)], budget=6) == [[(0, 0, 6)]]  # an empty span needs no forward
    assert plan_prefill([], budget=6) == []


def test_close_ends_waiting_requests_with_an_error_and_refuses_new_ones() -> None:
    script = Script()
    b = batcher(script, max_batch=1)
    script.gate.clear()
    first, queued = submit(b, 1, 50), submit(b, 2, 5)
    time.sleep(0.1)
    script.gate.set()
    b.close()
    with pytest.raises(BackendError, match="closed"):
        list(queued.tokens())
    with pytest.raises(BackendError, match="closed"):
        submit(b, 3, 1)
    assert first.done


def test_call_runs_work_on_the_batcher_thread_between_steps() -> None:
    """Warm-ups go through ``call`` so the model only ever runs on one thread (one OpenMP team)."""
    script = Script()
    b = batcher(script, max_batch=2)
    script.gate.clear()
    seq = submit(b, 1, 3)  # a step is held: the job must wait for it to end, not run beside it
    assert script.in_step.wait(5)
    threads: list[str] = []

    def work() -> int:
        threads.append(threading.current_thread().name)
        return len(script.steps)

    box: dict[str, int] = {}
    caller = threading.Thread(target=lambda: box.setdefault("steps", b.call(work)))
    caller.start()
    time.sleep(0.2)
    assert not threads  # not run while the step is in progress
    script.gate.set()
    caller.join(5)
    assert threads == ["ragcache-batcher"] and box["steps"] >= 1
    assert list(seq.tokens()) == [100, 101, 102]

    def broken() -> None:
        raise ValueError("warm-up failed")

    with pytest.raises(ValueError, match="warm-up failed"):
        b.call(broken)  # the caller gets the error; the batcher goes on
    assert b.call(lambda: b.call(lambda: threading.current_thread().name)) == "ragcache-batcher"  # no deadlock
    assert list(submit(b, 2, 1).tokens()) == [200]
    b.close()
    with pytest.raises(BackendError, match="closed"):
        b.call(lambda: 1)


@pytest.mark.parametrize(("max_new", "eos_at"), [(1, None), (4, None), (4, 0)])
def test_the_prefills_deferred_work_runs_once_after_the_first_token_and_before_the_end(
    max_new: int, eos_at: int | None
) -> None:
    """The engine defers storing a prompt's blocks to ``Sequence.settle``: it must run exactly once, after
    the first token is out (off the first token's path) and before the answer ends (whose usage it sets),
    also when the first token is the end (EOS, or ``max_new`` 1)."""
    script = Script(eos_at={7: eos_at} if eos_at is not None else None)
    seen: list[tuple[int, bool]] = []  # (tokens out, ended) each time the deferred work ran

    def prefill(seqs: list[Sequence]) -> list[tuple[int, int]]:
        for seq in seqs:
            seq.settle = lambda seq=seq: seen.append((seq.outbox.qsize(), seq.done))
        return script.prefill(seqs)

    b = Batcher(prefill, script.step, script.choose, EOS, 4)
    tokens = list(submit(b, 7, max_new).tokens())
    assert tokens == ([] if eos_at == 0 else [700 + i for i in range(max_new)])
    assert seen == [(0 if eos_at == 0 else 1, False)]
    b.close()
