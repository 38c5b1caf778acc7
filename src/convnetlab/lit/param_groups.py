"""Parameter groups for the optimizer: weight decay on weights only, groups named for logging.

Decaying BatchNorm scales/shifts and biases only shrinks them toward zero without regularising the
function (they are not "capacity"), so the torchvision recipes exclude them; we do the same.

Group names are what ``LearningRateMonitor`` logs (``lr/<name>``): ``decay``/``no_decay`` for a whole
model, ``<prefix>``/``<prefix>_no_decay`` for a part of it (``head``, ``layer4``, ... in fine-tuning).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def norm_parameter_names(module: nn.Module) -> set[str]:
    """Names of parameters owned by normalisation layers (BatchNorm, GroupNorm, LayerNorm, ...)."""
    return {
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, child in module.named_modules()
        if isinstance(child, NORM_TYPES)
        for param_name, _ in child.named_parameters(recurse=False)
    }


def split_weight_decay(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    exclude_norm_and_bias: bool = True,
    norm_parameter_names: set[str] = frozenset(),
    prefix: str = "",
) -> list[dict]:
    """Two optimizer groups (decay, no decay), skipping frozen parameters and empty groups.

    Named ``decay``/``no_decay``, or ``<prefix>``/``<prefix>_no_decay`` when a prefix is given.
    """
    decay, no_decay = [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        exempt = exclude_norm_and_bias and (name in norm_parameter_names or name.endswith(".bias") or param.ndim <= 1)
        (no_decay if exempt else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": prefix or "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": f"{prefix}_no_decay" if prefix else "no_decay"},
    ]
    return [g for g in groups if g["params"]]
