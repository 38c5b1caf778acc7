"""Epochs and seconds until validation top-1 first reaches a target: "trains faster" as a number.

Final accuracy hides speed: two networks can end equal after one needed three times as many epochs.
At every validation (the sanity check excluded) the callback compares ``monitor`` with ``target`` and
remembers the first epoch and the wall seconds since the start of fit (validation included, as a
user waits for it) at which it was reached. The run summary (``metrics.json``) reports them as
``val/epochs_to_target``, ``val/seconds_to_target`` (null if never reached) and ``val/target``.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl

from convnetlab.callbacks.fit_state import FitState


class TimeToAccuracy(FitState, pl.Callback):
    """Args: target (fraction in [0, 1]); monitor (a logged validation metric)."""

    def __init__(self, target: float, monitor: str = "val/acc1") -> None:
        self.target, self.monitor = float(target), monitor
        self.epochs: int | None = None
        self.seconds: float | None = None
        self._seconds_before = 0.0
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self._seconds_before + time.perf_counter() - self._start

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or self.epochs is not None:
            return
        if float(value) >= self.target:
            self.epochs, self.seconds = trainer.current_epoch + 1, self.elapsed()

    def summary_metrics(self, trainer: pl.Trainer) -> dict[str, Any]:
        return {"val/target": self.target, "val/epochs_to_target": self.epochs, "val/seconds_to_target": self.seconds}

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "seconds": self.seconds, "elapsed": self.elapsed()}

    def load_fit_state(self, state_dict: dict) -> None:
        self.epochs, self.seconds = state_dict.get("epochs"), state_dict.get("seconds")
        self._seconds_before = state_dict.get("elapsed", 0.0)
