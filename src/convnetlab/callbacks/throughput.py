"""Training throughput (images/s) and wall time, measured the way a reader of a results table expects.

The first ``warmup_batches`` of every epoch are excluded (worker start-up, allocator warm-up, cudnn
autotuning), data loading between batches is included (it is part of training speed), and
validation and epoch-end work (checkpoints) are not: the window closes at the epoch's last batch (or when a
validation starts inside an epoch). Results are exposed as attributes for ``metrics.json`` and logged at epoch end.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from convnetlab.callbacks.fit_state import FitState


def _sync(trainer: pl.Trainer) -> None:
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)


class TrainThroughput(FitState, pl.Callback):
    """Measures training images/s (per process, after warm-up) and total fit seconds."""

    def __init__(self, warmup_batches: int = 5) -> None:
        self.warmup_batches = warmup_batches
        self.images = 0
        self.seconds = 0.0
        self.train_seconds = 0.0
        self._fit_start = 0.0
        self._seconds_before = 0.0
        self._window_start: float | None = None
        self._window_images = 0
        self._paused = False  # the window was closed for a validation inside the epoch

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._seconds_before = self.train_seconds  # restored from a checkpoint when resuming

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_seconds = self._seconds_before + time.perf_counter() - self._fit_start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._window_start, self._window_images = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup_batches:
            _sync(trainer)
            self._window_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._window_start is None:
            return
        self._window_images += len(batch[0])
        if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's last batch: validation and epoch-end
            self._close_window(trainer)                    # work (checkpoints) are not training

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validation inside an epoch of unknown length, or mid-epoch (``val_check_interval``): pause."""
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._close_window(trainer):
            self._paused = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._paused:
            self._paused = False
            self._window_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_window(trainer)
        self._paused = False
        if self.images:
            pl_module.log("train/images_per_s", self.images_per_second, on_epoch=True, rank_zero_only=True)

    def _close_window(self, trainer: pl.Trainer) -> bool:
        """Add the open window to the totals; one device sync per window, never per batch (it would slow the
        training it measures). False when no window was open."""
        if self._window_start is None:
            return False
        _sync(trainer)
        self.seconds += time.perf_counter() - self._window_start
        self.images += self._window_images
        self._window_start, self._window_images = None, 0
        return True

    def state_dict(self) -> dict:
        elapsed = self._seconds_before + time.perf_counter() - self._fit_start if self._fit_start else 0.0
        return {"images": self.images, "seconds": self.seconds, "train_seconds": elapsed}

    def load_fit_state(self, state_dict: dict) -> None:
        self.images = state_dict["images"]
        self.seconds = state_dict["seconds"]
        self.train_seconds = state_dict.get("train_seconds", 0.0)

    def summary_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        """Training images/s over all ranks (each rank times its own batches) and fit wall time."""
        return {"train_images_per_s": self.images_per_second * trainer.world_size, "train_seconds": self.train_seconds}
