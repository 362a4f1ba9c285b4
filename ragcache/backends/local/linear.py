"""float32 linear layers of a batch through oneDNN on CPU.

PyTorch sends a float32 ``F.linear`` to MKL's sgemm, which on this project's
CPUs (AMD EPYC with AVX-512) runs far below the cores' peak once a matmul has
more than one row. Through oneDNN (PyTorch's own ``mkldnn`` ops, which pick
their code by instruction set, not by CPU vendor) a 16-row decode step and a
16-request prefill took a fifth less time in all (``python -m
ragcache.bench.steps``, variant ``mkl``; docs/reliability.md, Load). A
single row (a request decoding alone) is memory-bound and as fast or faster on
MKL, so it stays there. Both are exact float32 (only the order of the sums
differs, as it already does between MKL calls of different batch sizes).

:func:`use_onednn_linear` switches a float32 CPU model's ``nn.Linear`` layers to
:class:`BatchedLinear`. The oneDNN op is PyTorch's internal one (Inductor's), so
it is checked once, on the thread that runs the model, against ``F.linear``;
where it is missing or disagrees, every call stays on ``F.linear``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchedLinear", "onednn_usable", "use_onednn_linear"]

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # relative to the outputs' scale: float32 sums in another order, nothing more


class BatchedLinear(nn.Linear):
    """``nn.Linear`` whose matmuls of more than one row go through oneDNN (see the module docstring)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        rows = input.numel() // self.in_features if self.in_features else 0
        if rows <= 1 or not onednn_usable():
            return F.linear(input, self.weight, self.bias)
        flat = input.reshape(rows, self.in_features).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
        return out.reshape(*input.shape[:-1], self.out_features)


def use_onednn_linear(model: Any) -> int:
    """Make the float32 CPU ``nn.Linear`` layers of ``model`` :class:`BatchedLinear`; how many were switched."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return 0
    switched = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32:
            module.__class__ = BatchedLinear  # same parameters and state dict; only forward changes
            switched += 1
    return switched


@functools.lru_cache(maxsize=1)
def onednn_usable() -> bool:
    """Whether oneDNN's linear runs here and equals ``F.linear`` (checked once, on random data)."""
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(5, 96, generator=generator)
        weight, bias = torch.randn(80, 96, generator=generator), torch.randn(80, generator=generator)
        with torch.inference_mode():
            got = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            want = F.linear(x, weight, bias)
        error = ((got - want).abs().max() / want.abs().max()).item()
    except Exception as exc:  # a torch without the op: MKL for everything
        log.info("oneDNN linear unavailable (%s); float32 linear layers stay on F.linear", exc)
        return False
    if error > TOLERANCE:
        log.warning("oneDNN linear disagrees with F.linear by %.3g (relative); not used", error)
    return error <= TOLERANCE
