"""Open a checkpoint together with the data it was trained on: shared by eval, visualize and probe."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from convnetlab.lit import ImageClassifier
from convnetlab.runs import run_data_config, run_dir_of_checkpoint
from convnetlab.checkpoint_file import check_checkpoint_path, load_classifier
from convnetlab.errors import InputError


def load_checkpoint(
    ckpt_path: str | Path, data: DictConfig | None = None
) -> tuple[ImageClassifier, pl.LightningDataModule, DictConfig]:
    """(module on CPU, datamodule, data config): ``data`` if given, else the checkpoint's run data."""
    ckpt_path = check_checkpoint_path(ckpt_path)
    data_cfg = run_data_config(data, ckpt_path, run_dir_of_checkpoint(ckpt_path))
    datamodule = instantiate(data_cfg)
    module = load_classifier(ckpt_path)
    if module.hparams.num_classes != datamodule.num_classes:
        raise InputError(
            f"{ckpt_path} predicts {module.hparams.num_classes} classes but data '{data_cfg.name}' has "
            f"{datamodule.num_classes}; use data with the same classes."
        )
    return module, datamodule, data_cfg
