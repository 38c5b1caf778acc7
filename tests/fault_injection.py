"""Test-only callbacks injected with `+callbacks.<name>._target_=fault_injection.<Class>`: deterministic
faults at a chosen optimizer step, and a log of the batches a run trained on."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch


class SignalAtStep(pl.Callback):
    """Sends ``signal`` to this process (``group``: to its whole process group, DataLoader workers included,
    as a cluster or a terminal's Ctrl-C does) once (a marker file): at the training batch where ``global_step``
    reaches ``step``, or with ``phase="validate"`` at batch ``batch`` of the fit's validation at that step,
    or with ``phase="test"`` at batch ``batch`` of the test pass after fit."""

    def __init__(self, step: int, signal: str, marker: str, group: bool = False, phase: str = "train",
                 batch: int = 0) -> None:
        self.step, self.signal, self.marker, self.group = step, signal, Path(marker), group
        self.phase, self.batch = phase, batch

    def _send(self) -> None:
        self.marker.touch()
        if self.group:
            os.killpg(os.getpgid(0), getattr(signal, self.signal))
        else:
            os.kill(os.getpid(), getattr(signal, self.signal))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.phase == "train" and trainer.global_step == self.step and not self.marker.exists():
            self._send()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if (self.phase == "validate" and not trainer.sanity_checking and trainer.state.fn == "fit"
                and trainer.global_step == self.step and batch_idx == self.batch and not self.marker.exists()):
            self._send()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.phase == "test" and batch_idx == self.batch and not self.marker.exists():
            self._send()


class PoisonAtStep(pl.Callback):
    """Makes the loss NaN from ``step`` on by filling the first parameter with NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class RecordBatches(pl.Callback):
    """Appends ``<global step> <epoch> <batch idx> <sum of pixels> <labels>`` per training batch to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        images, labels = batch
        with self.path.open("a") as f:
            f.write(f"{trainer.global_step} {trainer.current_epoch} {batch_idx} {int(images.sum())} "
                    f"{','.join(map(str, labels.tolist()))}\n")
