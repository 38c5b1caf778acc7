"""``convnetlab-train``: compose -> instantiate -> fit -> validate/test the best checkpoint -> metrics.json.

Read top to bottom, ``train()`` is the whole training path; the pieces it calls are plain library code.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from convnetlab.callbacks import NonFiniteLossError
from convnetlab.callbacks.ema import averaging_last
from convnetlab.cli.hydra_app import entry_point, pin_ddp_children_to_this_job
from convnetlab.cli.job import isolated_job
from convnetlab.cli.report import print_result_table
from convnetlab.data.folder import check_two_classes
from convnetlab.errors import InputError
from convnetlab.loggers import logger_session
from convnetlab.models.weights import input_normalization
from convnetlab.runs import RESOLVED_CONFIG, check_resume_checkpoint, update_metrics
from convnetlab.stop_signals import stop_cleanly_until_training, training_finished
from convnetlab.summary import callback_metrics, complexity, evaluate_best, speed_and_memory

# The ModelCheckpoint callbacks by role: the config key of each (conf/callbacks/*.yaml) names what it keeps.
CHECKPOINT_ROLES = {"best": "model_checkpoint", "last": "last_checkpoint"}


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train ``cfg`` into ``run_dir``; returns the run summary, which rank zero writes to ``metrics.json``."""
    with isolated_job(threads=cfg.get("threads")):
        pl.seed_everything(cfg.seed, workers=True)
        datamodule: pl.LightningDataModule = instantiate(cfg.data)
        check_num_classes(cfg.module.num_classes, datamodule)
        mean, std = input_normalization(cfg.model.arch, cfg.model.get("weights"), datamodule.mean, datamodule.std,
                                        options=cfg.model)
        module = instantiate(cfg.module, mean=mean, std=std, _recursive_=False)
        if cfg.get("ckpt_path") not in (None, "last"):
            check_resume_checkpoint(cfg.ckpt_path, module)
        callbacks = {role: instantiate(cb) for role, cb in (cfg.get("callbacks") or {}).items() if cb}
        summary = {"model": cfg.model.arch, "data": cfg.data.name,
                   **complexity(module.backbone, datamodule.channels, datamodule.image_size)}
        rank_zero_info(f"{cfg.model.arch}: {summary['params']:,} parameters, {summary['gflops']:.4f} GFLOPs/image")
        run_config = OmegaConf.to_container(cfg, resolve=True)
        with logger_session(cfg.get("logger"), run_dir, run_config, is_rank_zero=rank_zero_only.rank == 0) as session:
            trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=averaging_last(list(callbacks.values())),
                                              logger=session.loggers)
            if trainer.is_global_zero:  # eval rebuilds the data from this, independent of its own cwd/env
                OmegaConf.save(cfg, run_dir / RESOLVED_CONFIG, resolve=True)
            diverged_at = fit(trainer, module, datamodule, cfg.get("ckpt_path"), cfg.get("on_divergence", "raise"))
            training_finished()
            summary["train/diverged_at_step"] = diverged_at  # None again once a resumed run gets through
            if diverged_at is None:
                checkpoints = {role: callbacks.get(key) for role, key in CHECKPOINT_ROLES.items()}
                summary.update(evaluate_best(trainer, module, datamodule, checkpoints, test=cfg.get("test", True)))
                summary.update(callback_metrics(callbacks.values(), trainer))
                if trainer.is_global_zero:
                    summary.update(speed_and_memory(trainer, module, datamodule))
            session.failed = diverged_at is not None  # the W&B run is marked failed; a sweep goes on
            return update_metrics(run_dir, summary) if trainer.is_global_zero else summary


def check_num_classes(configured: int, datamodule: pl.LightningDataModule) -> None:
    """The data has at least two classes and as many as the module is configured for, checked before a
    metric or the loss meets them (they would fail with a traceback)."""
    in_data = datamodule.num_classes
    if in_data < 2:
        check_two_classes(list(datamodule.classes), getattr(datamodule, "root", datamodule.name))
    if configured != in_data:
        raise InputError(
            f"module.num_classes={configured} but the data has {in_data} classes; "
            "leave module.num_classes and model.num_classes at ${data.num_classes}."
        )


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, ckpt_path: str | None,
        on_divergence: str) -> int | None:
    """``trainer.fit``; with ``on_divergence=record`` a non-finite loss returns its global step instead of raising."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except NonFiniteLossError as err:
        if on_divergence != "record":
            raise
        rank_zero_info(f"diverged (on_divergence=record): {err}")
        return err.step
    return None


def train_job(cfg: DictConfig, output_dir: Path) -> float | None:
    """Hydra task: one training job. Returns ``cfg.optimized_metric`` for sweepers."""
    pin_ddp_children_to_this_job(str(output_dir))
    metrics = train(cfg, output_dir)
    if rank_zero_only.rank == 0:  # after W&B has closed, so the run dir is the last thing printed
        print_result_table(metrics, output_dir)
    value = metrics.get(cfg.get("optimized_metric"))
    return float(value) if value is not None else None


main = entry_point("train", train_job, resumable=True)


if __name__ == "__main__":
    stop_cleanly_until_training()  # as the console script does (launch.py)
    main()
