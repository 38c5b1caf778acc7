"""Model size and cost: parameter counts and forward FLOPs in torchvision's convention."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def forward_gflops(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """GFLOPs of one eval-mode forward pass of a single ``(C, H, W)`` image.

    torchvision reports multiply-adds, i.e. ``FlopCounterMode`` total / 2 (see REFERENCE.md), so we
    do the same. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        image = torch.zeros(1, *input_shape, device=device)
        with FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9
