"""Progress display: Rich bars on an interactive terminal, one plain line per epoch elsewhere.

CI logs and SLURM output files are not terminals; redrawn bars turn them into megabytes of noise.
"""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from pytorch_lightning.utilities import rank_zero_info


class EpochLinePrinter(ProgressBar):
    """Prints ``epoch 3/10  train/loss 0.41  val/acc1 0.873  12.3s`` once per epoch (rank zero)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._epoch_start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()  # a resumed epoch continues without on_train_epoch_start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        metrics = trainer.callback_metrics
        shown = [
            f"{key} {float(metrics[key]):.4f}"
            for key in ("train/loss_epoch", "train/acc1", "val/loss", "val/acc1")
            if key in metrics
        ]
        seconds = time.perf_counter() - self._epoch_start
        rank_zero_info(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  " + "  ".join(shown) + f"  {seconds:.1f}s")


def progress_bar(interactive: bool | None = None) -> ProgressBar:
    """Rich progress bar when stdout is a terminal, :class:`EpochLinePrinter` otherwise."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return RichProgressBar() if interactive else EpochLinePrinter()
