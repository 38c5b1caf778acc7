"""Open a checkpoint together with the data it was trained on: shared by eval, visualize and probe."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from convnetlab.lit import ImageClassifier
from convnetlab.runs import run_data_config, run_dir_of_checkpoint
from convnetlab.errors import InputError, MissingFileError


def load_checkpoint(
    ckpt_path: str | Path, data: DictConfig | None = None
) -> tuple[ImageClassifier, pl.LightningDataModule, DictConfig]:
    """(module on CPU, datamodule, data config): ``data`` if given, else the checkpoint's run data."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise MissingFileError(f"ckpt_path={ckpt_path} does not exist; pass the path of a .ckpt file.")
    data_cfg = run_data_config(data, ckpt_path, run_dir_of_checkpoint(ckpt_path))
    datamodule = instantiate(data_cfg)
    module = ImageClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    if module.hparams.num_classes != datamodule.num_classes:
        raise InputError(
            f"{ckpt_path} predicts {module.hparams.num_classes} classes but data '{data_cfg.name}' has "
            f"{datamodule.num_classes}; use data with the same classes."
        )
    return module, datamodule, data_cfg
