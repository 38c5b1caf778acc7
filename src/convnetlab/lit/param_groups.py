"""Parameter groups for the optimizer: weight decay on weights only.

Decaying BatchNorm scales/shifts and biases only shrinks them toward zero without regularising the
function (they are not "capacity"), so the torchvision recipes exclude them; we do the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def split_weight_decay(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    exclude_norm_and_bias: bool = True,
    norm_parameter_names: set[str] = frozenset(),
) -> list[dict]:
    """Two optimizer groups, ``decay`` and ``no_decay``, skipping frozen parameters and empty groups."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        exempt = exclude_norm_and_bias and (name in norm_parameter_names or name.endswith(".bias") or param.ndim <= 1)
        (no_decay if exempt else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]
