"""Decoding helpers of the local engine: choosing the next token and cutting at stop strings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragcache.backends.base import GenerationOptions

if TYPE_CHECKING:
    import torch

__all__ = ["StopMatcher", "choose", "sampler"]


def sampler(options: GenerationOptions) -> torch.Generator | None:
    """A seeded generator for sampling, or None for greedy decoding (temperature 0)."""
    import torch

    if options.temperature <= 0:
        return None
    generator = torch.Generator()
    if options.seed is not None:
        generator.manual_seed(options.seed)
    else:
        generator.seed()
    return generator


def choose(logits: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top-p) sampling."""
    import torch

    if generator is None:
        return int(torch.argmax(logits))
    # In float64 (a temperature like 1e-142 is 0 in float32: 0 / 0 = nan) and shifted so the largest
    # logit is 0: a tiny temperature then gives 0 and -inf (the argmax), never the nan that
    # torch.multinomial refuses.
    logits = logits.detach().cpu().double()
    probs = torch.softmax((logits - logits.max()) / options.temperature, dim=-1)
    if options.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < options.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class StopMatcher:
    """Cuts generated text at the first stop string, holding back a possible partial one while streaming."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)

    def final(self, text: str) -> str:
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=len(text))
        return text[:cut]

    def visible(self, text: str) -> tuple[bool, str]:
        """(a stop string was reached, the text safe to show so far)."""
        cut = self.final(text)
        if len(cut) < len(text):
            return True, cut
        held = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), held, -1):
                if text.endswith(stop[:n]):
                    held = n
                    break
        while held < len(text) and text[-(held + 1)] == "\ufffd":
            held += 1  # an incomplete UTF-8 sequence: wait for its next token
        return False, text[: len(text) - held]
