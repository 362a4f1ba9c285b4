"""The local engine's next-token choice at the edges of the temperature range the API accepts."""

from __future__ import annotations

import torch

from ragcache.backends.base import GenerationOptions
from ragcache.backends.local.decoding import choose, sampler


def test_a_vanishing_temperature_samples_the_argmax_instead_of_failing() -> None:
    """A fuzzed request with temperature 1.26e-142 made softmax(logits / T) inf - inf = nan, and
    torch.multinomial raised (a 500); a positive temperature that small is greedy in effect."""
    logits = torch.tensor([1.0, 3.5, -2.0, 3.25])
    for temperature in (1.26e-142, 1e-30, 5e-324):
        options = GenerationOptions(max_tokens=1, temperature=temperature, seed=7)
        assert choose(logits, options, sampler(options)) == 1


def test_sampling_still_follows_the_distribution_at_an_ordinary_temperature() -> None:
    options = GenerationOptions(max_tokens=1, temperature=1.0, seed=3)
    generator = sampler(options)
    logits = torch.log(torch.tensor([0.5, 0.5, 1e-9]))
    picks = [choose(logits, options, generator) for _ in range(200)]
    assert set(picks) == {0, 1}  # both likely tokens come up, the unlikely one does not
