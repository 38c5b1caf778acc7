"""Checkpoint on SIGTERM (cluster preemption, `scancel`, `kill`) and Ctrl-C, so the resume loses no finished step."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from convnetlab.stop_signals import EXIT_STATUS


class CheckpointOnSigterm(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` when training stops for SIGTERM or SIGINT, then exits cleanly:
    status 0 after SIGTERM, 130 after Ctrl-C, no traceback.

    Lightning's SIGTERM handler only sets a flag; the training loop raises ``SIGTERMException`` (a
    ``SystemExit``) at the next batch boundary, on every rank, and calls ``on_exception`` first. Ctrl-C is
    routed through the same flag while a trainer runs (a second Ctrl-C interrupts at once), so both stop
    between two steps: the checkpoint holds the finished steps and, with the stateful train loader, the
    position in the epoch. DataLoader workers ignore both signals (``data.loaders.worker_init``), so a
    signal sent to the whole process group stops training here rather than killing a worker. Resume with
    ``convnetlab-train ckpt_path=<run>/checkpoints/last.ckpt``.

    A signal during a fit's validation (or its sanity check) lets that validation finish and stops at the
    next training step: a checkpoint taken mid-validation would hold the weight average in place of the
    weights, and Lightning would not rerun the rest of the validation on resume. A signal while a finished
    fit's best checkpoint is validated or tested stops that evaluation without writing anything: last.ckpt
    already holds the finished training, and resuming from it reruns only the evaluation.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._stopped_by = "SIGTERM"
        self._previous_sigint: Any = None
        self._deferred = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stopped_by, self._deferred = "SIGTERM", False

    def _route_ctrl_c(self, trainer: pl.Trainer) -> None:
        """From the first hook after Lightning registers its SIGTERM handler (which clears its flag), Ctrl-C
        sets that flag; before, the process-wide handler of ``stop_signals`` answers it."""
        if self._previous_sigint is not None:
            return

        def stop_at_next_batch(signum: int, frame: Any) -> None:
            self._stopped_by = "SIGINT"
            trainer._signal_connector.received_sigterm = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

        self._previous_sigint = signal.signal(signal.SIGINT, stop_at_next_batch)

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._route_ctrl_c(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._route_ctrl_c(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._route_ctrl_c(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._route_ctrl_c(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_sigint()

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and trainer._signal_connector.received_sigterm:
            trainer._signal_connector.received_sigterm = False  # the evaluation loop would stop on it
            self._deferred = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._deferred:
            trainer._signal_connector.received_sigterm = True  # the training loop stops at its next check
            self._deferred = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return
        exception.code = EXIT_STATUS[self._stopped_by]
        path = self.dirpath / "last.ckpt"
        if trainer.state.fn != TrainerFn.FITTING:
            rank_zero_info(f"{self._stopped_by} while evaluating the best checkpoint; training had finished and "
                           f"{path} is untouched: `convnetlab-train ckpt_path={path}` reruns only the evaluation")
            return
        trainer.save_checkpoint(path)
        rank_zero_info(f"{self._stopped_by} at global step {trainer.global_step}: saved {path}; resume with "
                       f"`convnetlab-train ckpt_path={path}`")

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

