"""The float32 linear layers that send batched matmuls through oneDNN (ragcache/backends/local/linear.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ragcache.backends.local import linear
from ragcache.backends.local.linear import BatchedLinear, onednn_usable, use_onednn_linear


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(48, 96), nn.ReLU(), nn.Linear(96, 32, bias=False), nn.Linear(32, 8).bfloat16())


def test_switched_layers_give_the_same_outputs_for_one_row_and_a_batch() -> None:
    """One row stays on F.linear (MKL); more rows go through oneDNN; both equal the plain layers."""
    assert onednn_usable()  # the CPU op is in the pinned torch: a missing one would silently cost ~2x here
    plain, switched = model(), model()
    state = {k: v.clone() for k, v in switched.state_dict().items()}
    assert use_onednn_linear(switched) == 2  # the two float32 layers; the bfloat16 one is left alone
    assert [type(m) for m in switched] == [BatchedLinear, nn.ReLU, BatchedLinear, nn.Linear]
    assert all(torch.equal(v, state[k]) for k, v in switched.state_dict().items())
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    def counted(*args: object) -> torch.Tensor:
        calls.append(args[0].shape)
        return real(*args)

    for shape in ((1, 1, 48), (1, 17, 48), (3, 5, 48)):
        x = torch.randn(*shape)
        with torch.inference_mode():
            want = plain[:3](x)
            got = switched[:3](x)
        assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.ops.mkldnn, "_linear_pointwise", counted, raising=False)
        with torch.inference_mode():
            switched[:1](torch.randn(1, 1, 48))
            switched[:1](torch.randn(1, 4, 48))
    assert calls == [torch.Size([4, 48])]  # the batch of four only


def test_an_unusable_onednn_leaves_every_call_on_f_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = nn.Linear(16, 4)
    use_onednn_linear(nn.Sequential(layer))
    monkeypatch.setattr(linear, "onednn_usable", lambda: False)

    def broken(*_: object) -> torch.Tensor:
        raise AssertionError("oneDNN called although it is not usable")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken, raising=False)
    x = torch.randn(6, 16)
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
