"""Weight EMA (``callbacks=ema``): Lightning's own :class:`~pytorch_lightning.callbacks.EMAWeightAveraging`
plus what a recipe needs around it.

Lightning keeps the average (``torch.optim.swa_utils.AveragedModel``, parameters and BatchNorm buffers),
swaps it in for validation, writes it as the checkpoint's ``state_dict`` (the raw weights go to
``current_model_state``, the averaging state to ``averaging_state``), restores both on resume and copies
the average into the model when training ends, so the best/last checkpoints, the test pass and
``convnetlab-eval`` all use the averaged weights. This subclass adds:

- a validate/test of a checkpoint after fit (``convnetlab-train`` does both with the best one) uses that
  checkpoint's average, as ``convnetlab-eval`` does; Lightning's callback tested its raw weights;
- checks that the average pairs with the model tensor for tensor (callbacks that attach modules must be
  set up first: :func:`averaging_last`) and gives it the model's memory format;
- one foreach ``lerp`` per update instead of a per-tensor average;

- ``val/acc1_raw``: top-1 of the raw (non-averaged) weights on the same validation batches, for
  comparison (one extra forward per validation batch, eager);
- ``copy_epochs``: during the first epochs the average is reset after each update, so it follows the
  weights (torchvision's reference resets it while the learning rate warms up);
- ``adjust_decay``: torchvision's ``--model-ema-decay`` rescaling, ``alpha = (1 - decay) x world size x
  per-device batch x every_n_steps / max_epochs`` (capped at 1), decay per update ``1 - alpha``, so its
  recipes' decay (0.99998) means what it means in torchvision's train.py.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from convnetlab.callbacks.fit_state import FitState
from convnetlab.errors import InputError


def averaging_last(callbacks: list[pl.Callback]) -> list[pl.Callback]:
    """``callbacks`` with the weight-averaging ones moved to the end (otherwise in their order): an average
    copies the module when it is set up, so callbacks that add modules to it (auxiliary heads) go first."""
    return sorted(callbacks, key=lambda callback: isinstance(callback, WeightAveraging))


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name, in the order Lightning pairs them."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def torchvision_ema_decay(decay: float, world_size: int, batch_per_device: int, every_n_steps: int,
                          epochs: int) -> float:
    """The per-update decay torchvision's train.py derives from ``--model-ema-decay``."""
    alpha = min(1.0, (1.0 - decay) * world_size * batch_per_device * every_n_steps / max(1, epochs))
    return 1.0 - alpha


class WeightEMA(FitState, EMAWeightAveraging):
    """EMA of the weights (and BatchNorm buffers), updated after every ``every_n_steps``-th optimizer step.

    Args:
        decay: the average keeps ``decay`` of itself at each update (per update, unless ``adjust_decay``).
        every_n_steps: update after optimizer steps 0, N, 2N, ... (Lightning's ``update_every_n_steps``).
        copy_epochs: for epochs before this one the average is reset to the weights at every update.
        adjust_decay: read ``decay`` as torchvision's ``--model-ema-decay`` (see the module docstring).
        log_raw: log ``val/acc1_raw`` (the raw weights' validation top-1).
    """

    def __init__(self, decay: float = 0.9999, every_n_steps: int = 1, copy_epochs: int = 0,
                 adjust_decay: bool = False, log_raw: bool = True) -> None:
        super().__init__(decay=decay, update_every_n_steps=every_n_steps)
        self._use_decay(float(decay))
        self.decay, self.every_n_steps, self.copy_epochs = float(decay), int(every_n_steps), int(copy_epochs)
        self.adjust_decay, self.log_raw = bool(adjust_decay), bool(log_raw)
        self.decay_per_update = self.decay
        self._raw_counts: torch.Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.adjust_decay:
            batch = getattr(trainer.datamodule, "batch_size", None)
            if batch is None:
                raise ValueError("WeightEMA(adjust_decay=True) needs the datamodule's per-device batch_size")
            self.decay_per_update = torchvision_ema_decay(self.decay, trainer.world_size, int(batch),
                                                          self.every_n_steps, trainer.max_epochs or 1)
            self._use_decay(self.decay_per_update)
        super().setup(trainer, pl_module, stage)  # FitState: _fitting, before Lightning restores a checkpoint
        if stage == "fit" and self._average_model is not None:  # a deep copy shares a compiled module's call
            for module in self._average_model.module.modules():
                if getattr(module, "_compiled_call_impl", None) is not None:
                    module._compiled_call_impl = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The model gets the average (Lightning); the copy that held the average keeps the raw weights, for
        a later ``val/acc1_raw``."""
        raw = {name: value.detach().clone() for name, value in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)
        self._average_model.module.load_state_dict(raw)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Resuming a fit: Lightning restores the average and the raw weights. Validating or testing a checkpoint
        (``convnetlab-train`` does both with the best one after fit): the model keeps the checkpoint's
        ``state_dict``, its average, which is what was validated and saved, and the raw copy gets the
        checkpoint's raw weights. Lightning's callback would load the raw weights into the model instead."""
        if self._fitting:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        elif self._average_model is not None:
            self._average_model.module.load_state_dict(checkpoint.get("current_model_state", checkpoint["state_dict"]))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Refuse an average that misses modules added after it was set up (Lightning pairs the average's
        parameters and buffers with the model's by position, so it would average and swap the wrong tensors),
        and give its tensors the model's memory format."""
        if self._average_model is None:
            return
        averaged, current = _tensors(self._average_model.module), _tensors(pl_module)
        if list(averaged) != list(current):
            added = sorted({name.split(".")[0] for name in set(current) - set(averaged)}) or ["a changed module"]
            raise InputError(f"WeightEMA was set up before {', '.join(added)} joined the model; put the callbacks "
                             "that add modules before it (convnetlab.callbacks.ema.averaging_last orders a list so)")
        for name, tensor in averaged.items():  # the model's memory format was chosen after the copy (``"auto"``)
            if tensor.stride() != current[name].stride():
                tensor.data = torch.empty_like(current[name]).copy_(tensor.data)

    def load_fit_state(self, state_dict: dict[str, Any]) -> None:
        EMAWeightAveraging.load_state_dict(self, state_dict)  # the last update step, when a fit resumes

    def _use_decay(self, decay: float) -> None:
        """Average with one foreach ``lerp`` over all tensors (``multi_avg_fn``) instead of Lightning's
        per-tensor ``avg_fn``: the same average, a fraction of the update time (scripts/bench/README.md)."""
        self._kwargs.pop("avg_fn", None)
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay=decay)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        updated = self._latest_update_step
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._latest_update_step != updated and trainer.current_epoch < self.copy_epochs:
            self._average_model.n_averaged.fill_(0)  # the next update copies the weights again

    # ----------------------------------------------------------------- raw weights' validation accuracy
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting:  # swap: the model validates the average, the AveragedModel holds the raw weights
            super().on_validation_epoch_start(trainer, pl_module)
        self._raw_counts = torch.zeros(2, dtype=torch.float64, device=pl_module.device)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.log_raw or self._average_model is None or self._raw_counts is None:
            return
        raw = self._average_model.module
        images, targets = batch
        training = raw.training
        raw.eval()
        with torch.no_grad():
            logits = raw.logits(images)
        raw.train(training)
        self._raw_counts[0] += (logits.argmax(dim=1) == targets).sum()
        self._raw_counts[1] += len(targets)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_raw and self._average_model is not None and self._raw_counts is not None:
            correct, total = trainer.strategy.reduce(self._raw_counts, reduce_op="sum").tolist()
            if total:
                pl_module.log("val/acc1_raw", correct / total, on_epoch=True, sync_dist=False)
        self._raw_counts = None
        if self._fitting:
            super().on_validation_epoch_end(trainer, pl_module)

    def summary_metrics(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The decay actually applied per update, and the raw weights' last ``val/acc1_raw``."""
        raw = trainer.callback_metrics.get("val/acc1_raw")
        return {"ema/decay_per_update": self.decay_per_update, "ema/every_n_steps": self.every_n_steps,
                **({"val/acc1_raw": float(raw)} if raw is not None else {})}
