"""Benchmark-only callbacks, added to `convnetlab-train` runs with `+callbacks.<name>._target_=...`.

TrainLoopTimer (for `overhead.py`) times the framework from outside its own throughput meter: every
hook, log write, progress line and epoch-end checkpoint between the first batch fetch and the end of
the last epoch counts. ValAccuracyClock (for `time_to_accuracy.py`) records when each validation ends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl


class TrainLoopTimer(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self._start = 0.0
        self._images = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[0])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        self.out.write_text(json.dumps({"seconds": seconds, "images": self._images, "steps": trainer.global_step}))


class ValAccuracyClock(pl.Callback):
    """Seconds since the start of fit at every validation (sanity check excluded), with val/acc1, as JSON."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self._start = 0.0
        self.points: list[dict] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val/acc1" not in trainer.callback_metrics:
            return
        self.points.append({"seconds": time.perf_counter() - self._start, "epoch": trainer.current_epoch + 1,
                            "val/acc1": float(trainer.callback_metrics["val/acc1"])})
        self.out.write_text(json.dumps(self.points))
