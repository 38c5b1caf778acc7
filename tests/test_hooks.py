"""capture_outputs: the one forward-hook helper (analysis, visualize, embeddings)."""

from __future__ import annotations

import torch
from torch import nn

from convnetlab.analysis.hooks import capture_outputs


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_outputs_and_inputs_are_captured_in_call_order_and_hooks_removed():
    net = _net()
    x = torch.randn(2, 1, 8, 8)
    with capture_outputs(net, ["0", "3"]) as named, capture_outputs(net) as every, \
            capture_outputs(net, ["3"], inputs=True) as inputs:
        logits = net(x)
    assert list(named) == ["0", "3"] and named["3"] is logits and named["0"].requires_grad
    assert list(every) == ["0", "1", "2", "3"]
    assert torch.equal(inputs["3"], net[2](net[1](net[0](x))))
    assert _hook_count(net) == 0


def test_clone_is_safe_from_an_in_place_relu_and_detached():
    net = _net()
    with capture_outputs(net, ["0"], clone=True) as kept, capture_outputs(net, ["0"]) as shared:
        net(torch.randn(2, 1, 8, 8))
    assert (kept["0"] < 0).any() and not (shared["0"] < 0).any()  # the ReLU rewrote the shared tensor
    assert not kept["0"].requires_grad


def test_hooks_are_removed_when_the_forward_fails():
    net = _net()
    try:
        with capture_outputs(net):
            net(torch.randn(2, 5, 8, 8))  # wrong channel count
    except RuntimeError:
        pass
    assert _hook_count(net) == 0
