"""Stop at the first non-finite training loss, before a checkpoint can store the broken weights."""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from convnetlab.errors import ConvnetlabError


class NonFiniteLossError(ConvnetlabError):
    """The training loss became NaN or infinite at global step ``step``."""

    def __init__(self, message: str, step: int = -1) -> None:
        super().__init__(message)
        self.step = step


class StopOnNonFiniteLoss(pl.Callback):
    """Raises :class:`NonFiniteLossError` naming the first step whose loss was NaN/inf.

    The check runs on the device: the step of the first bad loss is kept in a tensor, and it is read
    back (a host sync on GPUs) only every ``check_every_n_steps`` steps and always before a checkpoint
    is written, so ``last.ckpt`` and the best checkpoint keep the last good weights. On CPU reading it
    every step costs nothing, hence the default of 1.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None
        self._where: dict[int, tuple[int, int]] = {}
        self._step = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self._step = trainer.global_step  # the step this batch trains (global_step counts finished steps)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return
        step = self._step
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad_now = ~torch.isfinite(loss.detach()).all() & (self._first_bad < 0)
        self._first_bad = torch.where(bad_now, torch.full_like(self._first_bad, step), self._first_bad)
        self._where[step] = (trainer.current_epoch, batch_idx)
        if step % self.check_every_n_steps == 0:
            self._raise_if_bad(trainer)
        if len(self._where) > 2 * self.check_every_n_steps:  # only the unchecked window needs its positions
            self._where = {s: w for s, w in self._where.items() if s > step - 2 * self.check_every_n_steps}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._raise_if_bad(trainer)  # called while the checkpoint is assembled, before anything is written

    def _raise_if_bad(self, trainer: pl.Trainer) -> None:
        if self._first_bad is None or int(self._first_bad) < 0:
            return
        step = int(self._first_bad)
        epoch, batch_idx = self._where.get(step, (trainer.current_epoch, -1))
        last = getattr(trainer.checkpoint_callback, "dirpath", None)
        raise NonFiniteLossError(
            f"train/loss is not finite at global step {step} (epoch {epoch}, batch {batch_idx}); training stopped "
            f"and the checkpoints{f' in {last}' if last else ''} keep the last good weights; lower optimizer.lr, "
            "set trainer.gradient_clip_val or check the data, then resume from last.ckpt.",
            step=step,
        )
