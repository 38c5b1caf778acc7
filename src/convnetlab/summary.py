"""The run summary: every number that goes into a run's ``metrics.json``, gathered in one place.

``metrics.json`` has one writer, :func:`convnetlab.runs.update_metrics`, called by the entry points.
Callbacks do not write files: a callback that has something to report implements
``summary_metrics(trainer) -> dict`` (see :class:`ReportsSummary`) and the training entry point collects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from convnetlab.analysis.complexity import count_parameters, forward_gflops, inference_images_per_second, peak_memory_mb


@runtime_checkable
class ReportsSummary(Protocol):
    """A callback whose results belong in the run summary (e.g. throughput, time to accuracy)."""

    def summary_metrics(self, trainer: pl.Trainer) -> dict[str, Any]: ...


def callback_metrics(callbacks: Iterable[Callback], trainer: pl.Trainer) -> dict[str, Any]:
    """What every :class:`ReportsSummary` callback reports, merged in callback order."""
    merged: dict[str, Any] = {}
    for callback in callbacks:
        if isinstance(callback, ReportsSummary):
            merged.update(callback.summary_metrics(trainer))
    return merged


def complexity(backbone: torch.nn.Module, channels: int, image_size: int) -> dict[str, Any]:
    """Parameters and forward GFLOPs of one image at the eval resolution."""
    return {"params": count_parameters(backbone), "gflops": forward_gflops(backbone, (channels, image_size, image_size))}


def speed_and_memory(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule) -> dict:
    """Inference images/s at the eval batch size on the training device, the run's peak memory, and the
    memory format it trained in (``module.channels_last=auto`` chooses per machine)."""
    device = trainer.strategy.root_device
    batch_size = getattr(datamodule, "eval_batch_size", None) or datamodule.batch_size
    shape = (batch_size, datamodule.channels, datamodule.image_size, datamodule.image_size)
    batch = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    module.to(device)
    return {"infer_images_per_s": inference_images_per_second(module, batch), "peak_memory_mb": peak_memory_mb(device),
            "channels_last": bool(getattr(module, "uses_channels_last", False))}


def evaluate_best(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
    checkpoints: Mapping[str, Callback | None], test: bool = True,
) -> dict[str, Any]:
    """Validate and test the best checkpoint (the current weights if none was saved, e.g. fast_dev_run).

    ``checkpoints`` holds the ModelCheckpoint callbacks by role: ``best`` (monitored) and ``last``.
    """
    best, last = checkpoints.get("best"), checkpoints.get("last")
    results = {"ckpt_best": getattr(best, "best_model_path", "") or None,
               "ckpt_last": getattr(last, "best_model_path", "") or None}
    if not test:
        if best is not None and best.best_model_score is not None:
            results[best.monitor] = float(best.best_model_score)
        return results
    for stage, run in (("val", trainer.validate), ("test", trainer.test)):
        (logged,) = run(module, datamodule=datamodule, ckpt_path=results["ckpt_best"], verbose=False)
        results.update({k: v for k, v in logged.items() if k.startswith(f"{stage}/")})
    return results
