"""``convnetlab-train``: compose -> instantiate -> fit -> validate/test the best checkpoint -> metrics.json.

Read top to bottom, this file is the whole training path; the pieces it calls are plain library code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from convnetlab.analysis.complexity import count_parameters, forward_gflops, inference_images_per_second, peak_memory_mb
from convnetlab.callbacks import NonFiniteLossError, TrainThroughput
from convnetlab.cli.hydra_app import entry_point, pin_ddp_children_to_this_job
from convnetlab.cli.report import print_result_table
from convnetlab.lit import ImageClassifier
from convnetlab.lit.classifier import to_plain
from convnetlab.loggers import build_loggers, finish_wandb
from convnetlab.runs import RESOLVED_CONFIG, check_resume_checkpoint, update_metrics
from convnetlab.errors import InputError


def _find(callbacks: list[pl.Callback], kind: type) -> pl.Callback | None:
    return next((cb for cb in callbacks if isinstance(cb, kind)), None)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train ``cfg`` into ``run_dir`` and return the metrics written to ``metrics.json``."""
    env_before = {key: os.environ.get(key) for key in DDP_LAUNCH_ENV}
    threads_before = torch.get_num_threads()  # restored at the end: the next multirun job starts clean
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    if cfg.module.num_classes != datamodule.num_classes:
        raise InputError(
            f"module.num_classes={cfg.module.num_classes} but the data has {datamodule.num_classes} classes; "
            "leave module.num_classes and model.num_classes at ${data.num_classes}."
        )
    module: ImageClassifier = instantiate(
        cfg.module, mean=list(datamodule.mean), std=list(datamodule.std), _recursive_=False
    )
    if cfg.get("ckpt_path") not in (None, "last"):
        check_resume_checkpoint(cfg.ckpt_path, module)
    callbacks = [instantiate(cb) for cb in (cfg.get("callbacks") or {}).values() if cb]
    is_rank_zero = rank_zero_only.rank == 0
    run_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = build_loggers(cfg.get("logger"), run_dir, run_config, is_rank_zero=is_rank_zero)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if trainer.is_global_zero:  # eval rebuilds the data from this, independent of its own cwd/env
        OmegaConf.save(cfg, run_dir / RESOLVED_CONFIG, resolve=True)
    failed = False
    try:
        complexity = {
            "params": count_parameters(module.backbone),
            "gflops": forward_gflops(module.backbone, (datamodule.channels, datamodule.image_size, datamodule.image_size)),
        }
        rank_zero_info(f"{cfg.model.arch}: {complexity['params']:,} parameters, {complexity['gflops']:.4f} GFLOPs/image")
        metrics = {"model": cfg.model.arch, "data": cfg.data.name, **complexity}
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except NonFiniteLossError as err:
            if cfg.get("on_divergence", "raise") != "record":
                raise
            failed = True  # the W&B run is marked failed; the sweep goes on with its next job
            rank_zero_info(f"diverged (on_divergence=record): {err}")
            metrics["train/diverged_at_step"] = err.step
            return update_metrics(run_dir, metrics) if trainer.is_global_zero else metrics
        metrics["train/diverged_at_step"] = None  # a resumed run that got through is no longer diverged
        metrics.update(_evaluate_best(cfg, trainer, module, datamodule, callbacks))
        throughput = _find(callbacks, TrainThroughput)
        if throughput is not None:
            metrics["train_images_per_s"] = throughput.images_per_second * trainer.world_size
            metrics["train_seconds"] = throughput.train_seconds
        if trainer.is_global_zero:
            metrics.update(_speed_and_memory(trainer, module, datamodule))
            metrics = update_metrics(run_dir, metrics)
        return metrics
    except BaseException:
        failed = True
        raise
    finally:
        finish_wandb(loggers, exit_code=1 if failed else 0)
        _leave_process_group(env_before)
        torch.set_num_threads(threads_before)


DDP_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def _leave_process_group(env_before: dict[str, str | None]) -> None:
    """Tear down DDP so the next multirun job in this process launches its own ranks.

    Lightning's launcher leaves ``LOCAL_RANK`` & co. in ``os.environ``; the next job would then
    believe an external launcher started it and wait forever for ranks that never come.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _speed_and_memory(trainer: pl.Trainer, module: ImageClassifier, datamodule) -> dict:
    """Inference images/s at the eval batch size on the training device, and the run's peak memory."""
    device = trainer.strategy.root_device
    batch_size = getattr(datamodule, "eval_batch_size", None) or datamodule.batch_size
    shape = (batch_size, datamodule.channels, datamodule.image_size, datamodule.image_size)
    batch = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    module.to(device)
    return {
        "infer_images_per_s": inference_images_per_second(module, batch),
        "peak_memory_mb": peak_memory_mb(device),
    }


def _evaluate_best(cfg, trainer, module, datamodule, callbacks) -> dict:
    """Validate and test the best checkpoint (current weights if none was saved, e.g. fast_dev_run)."""
    checkpoint = _find(callbacks, ModelCheckpoint)
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    last = next((cb.best_model_path for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor is None), None)
    results = {"ckpt_best": best, "ckpt_last": last or None}
    if not cfg.get("test", True):
        if checkpoint is not None and checkpoint.best_model_score is not None:
            results[checkpoint.monitor] = float(checkpoint.best_model_score)
        return results
    ckpt = best or None
    for stage, run in (("val", trainer.validate), ("test", trainer.test)):
        (logged,) = run(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        results.update({k: v for k, v in logged.items() if k.startswith(f"{stage}/")})
    return results


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
    main()
