"""Learning-rate schedules as per-step multiplier factories with optional linear warmup.

Each factory is referenced from ``conf/scheduler/*.yaml`` with ``_partial_: true`` and called by
``ImageClassifier`` as ``factory(optimizer, steps_per_epoch=..., max_epochs=...)``. Stepping every
batch (not every epoch) makes warmup smooth and lets epoch-based recipes (StepLR every 30 epochs)
and short CPU runs share one code path.

Every parameter group follows the same multiplier of its own base rate (``initial_lr``), including
groups added after the scheduler was built (fine-tuning callbacks unfreeze stages mid-run): torch's
``LambdaLR`` fixes its group count at construction, so once a group is added it raises (torch 2.14:
``zip() argument 2 is shorter than argument 1``) or, in older torch, leaves the new group at a constant
rate. :class:`SharedLambdaLR` reads the optimizer's groups at every step instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class SharedLambdaLR(LRScheduler):
    """``lr = initial_lr * factor(step)`` for every parameter group present at each step.

    A group added later without ``initial_lr`` takes its current ``lr`` as its base rate. The factor
    function is rebuilt from the config on resume, so it is left out of ``state_dict`` (which then
    holds plain numbers only and loads with ``torch.load(weights_only=True)``).
    """

    def __init__(self, optimizer: Optimizer, factor: Callable[[int], float], last_epoch: int = -1) -> None:
        self.factor = factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        multiplier = self.factor(self.last_epoch)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        return [group["initial_lr"] * multiplier for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {key: value for key, value in super().state_dict().items() if key != "factor"}


def _with_warmup(
    optimizer: Optimizer,
    after_warmup: Callable[[float], float],
    steps_per_epoch: int,
    warmup_epochs: float,
    warmup_start_factor: float,
) -> SharedLambdaLR:
    """Wrap ``after_warmup(epoch_float)`` with a linear ramp from ``warmup_start_factor`` to 1."""
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
        return after_warmup(step / steps_per_epoch)

    return SharedLambdaLR(optimizer, factor)


def constant(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, warmup_epochs: float = 0.0,
    warmup_start_factor: float = 0.01,
) -> SharedLambdaLR:
    """Constant learning rate (after an optional warmup)."""
    return _with_warmup(optimizer, lambda epoch: 1.0, steps_per_epoch, warmup_epochs, warmup_start_factor)


def step(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, step_size: int = 30, gamma: float = 0.1,
    warmup_epochs: float = 0.0, warmup_start_factor: float = 0.01,
) -> SharedLambdaLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (torchvision's StepLR recipe)."""
    return _with_warmup(
        optimizer, lambda epoch: gamma ** (int(epoch) // step_size), steps_per_epoch, warmup_epochs,
        warmup_start_factor,
    )


def multistep(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, milestones: Sequence[int] = (30, 60, 80),
    gamma: float = 0.1, warmup_epochs: float = 0.0, warmup_start_factor: float = 0.01,
) -> SharedLambdaLR:
    """Multiply the learning rate by ``gamma`` at each milestone epoch."""
    marks = sorted(int(m) for m in milestones)
    return _with_warmup(
        optimizer, lambda epoch: gamma ** sum(int(epoch) >= m for m in marks), steps_per_epoch, warmup_epochs,
        warmup_start_factor,
    )


def cosine(
    optimizer: Optimizer, *, steps_per_epoch: int, max_epochs: int, warmup_epochs: float = 0.0,
    warmup_start_factor: float = 0.01, min_lr_ratio: float = 0.0,
) -> SharedLambdaLR:
    """Half-cosine decay from the base rate to ``min_lr_ratio`` x base over the epochs after warmup."""
    span = max(max_epochs - warmup_epochs, 1e-8)

    def after_warmup(epoch: float) -> float:
        progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return _with_warmup(optimizer, after_warmup, steps_per_epoch, warmup_epochs, warmup_start_factor)


# Checkpoints name their schedule, not its import path (see convnetlab.lit.hparams).
SCHEDULES: dict[str, Callable[..., SharedLambdaLR]] = {"constant": constant, "step": step, "multistep": multistep,
                                                         "cosine": cosine}
