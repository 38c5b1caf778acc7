"""Checkpoint on SIGTERM (cluster preemption, `scancel`, `kill`) and Ctrl-C, so the resume loses no finished step."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

EXIT_STATUS = {"SIGTERM": 0, "SIGINT": 130}  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C


class CheckpointOnSigterm(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` when training stops for SIGTERM or SIGINT, then exits cleanly:
    status 0 after SIGTERM, 130 after Ctrl-C, no traceback.

    Lightning's SIGTERM handler only sets a flag; the training loop raises ``SIGTERMException`` (a
    ``SystemExit``) at the next batch boundary, on every rank, and calls ``on_exception`` first. Ctrl-C is
    routed through the same flag while training runs (a second Ctrl-C interrupts at once), so both stop
    between two steps: the checkpoint holds the finished steps and, with the stateful train loader, the
    position in the epoch. DataLoader workers ignore both signals (``data.loaders.worker_init``), so a
    signal sent to the whole process group stops training here rather than killing a worker. Resume with
    ``convnetlab-train ckpt_path=<run>/checkpoints/last.ckpt``.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._stopped_by = "SIGTERM"
        self._previous_sigint: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def stop_at_next_batch(signum: int, frame: Any) -> None:
            self._stopped_by = "SIGINT"
            trainer._signal_connector.received_sigterm = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

        self._previous_sigint = signal.signal(signal.SIGINT, stop_at_next_batch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        exception.code = EXIT_STATUS[self._stopped_by]
        rank_zero_info(f"{self._stopped_by} at global step {trainer.global_step}: saved {path}; resume with "
                       f"`convnetlab-train ckpt_path={path}`")

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
