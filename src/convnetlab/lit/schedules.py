"""Learning-rate schedules as per-step ``LambdaLR`` factories with optional linear warmup.

Each factory is referenced from ``conf/scheduler/*.yaml`` with ``_partial_: true`` and called by
``ImageClassifier`` as ``factory(optimizer, steps_per_epoch=..., max_epochs=...)``. Stepping every
batch (not every epoch) makes warmup smooth and lets epoch-based recipes (StepLR every 30 epochs)
and short CPU runs share one code path. Every parameter group follows the same multiplier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _with_warmup(
    optimizer: Optimizer,
    after_warmup: Callable[[float], float],
    steps_per_epoch: int,
    warmup_epochs: float,
    warmup_start_factor: float,
) -> LambdaLR:
    """Wrap ``after_warmup(epoch_float)`` with a linear ramp from ``warmup_start_factor`` to 1."""
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
        return after_warmup(step / steps_per_epoch)

    return LambdaLR(optimizer, factor)


def constant(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, warmup_epochs: float = 0.0,
    warmup_start_factor: float = 0.01,
) -> LambdaLR:
    """Constant learning rate (after an optional warmup)."""
    return _with_warmup(optimizer, lambda epoch: 1.0, steps_per_epoch, warmup_epochs, warmup_start_factor)


def step(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, step_size: int = 30, gamma: float = 0.1,
    warmup_epochs: float = 0.0, warmup_start_factor: float = 0.01,
) -> LambdaLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (torchvision's StepLR recipe)."""
    return _with_warmup(
        optimizer, lambda epoch: gamma ** (int(epoch) // step_size), steps_per_epoch, warmup_epochs,
        warmup_start_factor,
    )


def multistep(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, milestones: Sequence[int] = (30, 60, 80),
    gamma: float = 0.1, warmup_epochs: float = 0.0, warmup_start_factor: float = 0.01,
) -> LambdaLR:
    """Multiply the learning rate by ``gamma`` at each milestone epoch."""
    marks = sorted(int(m) for m in milestones)
    return _with_warmup(
        optimizer, lambda epoch: gamma ** sum(int(epoch) >= m for m in marks), steps_per_epoch, warmup_epochs,
        warmup_start_factor,
    )


def cosine(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, warmup_epochs: float = 0.0,
    warmup_start_factor: float = 0.01, min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Half-cosine decay from the base rate to ``min_lr_ratio`` x base over the epochs after warmup."""
    span = max(max_epochs - warmup_epochs, 1e-8)

    def after_warmup(epoch: float) -> float:
        progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return _with_warmup(optimizer, after_warmup, steps_per_epoch, warmup_epochs, warmup_start_factor)
