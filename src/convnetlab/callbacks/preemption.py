"""Checkpoint on SIGTERM (cluster preemption, `scancel`, `kill`), so the resume loses no finished step."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException


class CheckpointOnSigterm(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` when Lightning stops for SIGTERM; the process then exits with status 0.

    Lightning's signal handler only sets a flag; the training loop raises ``SIGTERMException`` (a
    ``SystemExit``) at the next batch boundary, on every rank, and calls ``on_exception`` first. The
    checkpoint is therefore taken between two steps: it holds the finished steps and, with the
    stateful train loader, the position in the epoch. Resume with
    ``convnetlab-train ckpt_path=<run>/checkpoints/last.ckpt``.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        rank_zero_info(f"SIGTERM at global step {trainer.global_step}: saved {path}; resume with "
                       f"`convnetlab-train ckpt_path={path}`")
