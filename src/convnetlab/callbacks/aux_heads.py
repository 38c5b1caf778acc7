"""Auxiliary classifiers (GoogLeNet's side heads / deep supervision) for any backbone, as a callback.

Szegedy et al. (2014) attach small classifiers to intermediate layers and optimise
``main loss + sum(weight * head loss)`` so early layers receive a direct gradient; the heads are thrown
away at inference. Here the heads are attached to the module as ``aux_heads`` (an ``nn.ModuleDict``,
``ImageClassifier.attach``) in ``setup`` -- before ``configure_optimizers`` and before a checkpoint is
restored -- so they are optimised, checkpointed and restored on resume like any other parameter; their
losses join the training loss through ``ImageClassifier.add_loss_term``. A checkpoint loaded without
this callback drops ``aux_heads.*``, so the backbone weights alone are the inference model.

Features are captured with forward hooks (``analysis.hooks.capture_outputs``, from ``setup`` to the
final ``teardown``) and read only by training and validation batches; during test and predict the heads
never run.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from convnetlab.analysis.hooks import capture_outputs
from convnetlab.errors import InputError

HEAD_TYPES = ("googlenet", "gap")


def googlenet_head(in_channels: int, num_classes: int, spatial: int) -> nn.Sequential:
    """The paper's head: 5x5/3 avg pool -> 1x1 conv 128 + ReLU -> fc 1024 + ReLU -> dropout 0.7 -> fc.

    On 224 px inputs the maps are 14x14 and the pool gives 4x4. Smaller maps (CPU-sized inputs) skip the
    5x5/3 pool; larger ones keep it. An adaptive pool to 4x4 then fixes the fc input at 128*16 for any
    input size (as torchvision's InceptionAux does).
    """
    pool = nn.AvgPool2d(5, stride=3) if spatial >= 14 else nn.Identity()
    return nn.Sequential(
        pool, nn.AdaptiveAvgPool2d(4),
        nn.Conv2d(in_channels, 128, 1), nn.ReLU(inplace=True), nn.Flatten(),
        nn.Linear(128 * 16, 1024), nn.ReLU(inplace=True), nn.Dropout(0.7), nn.Linear(1024, num_classes),
    )


def gap_head(in_channels: int, num_classes: int) -> nn.Sequential:
    """Light deep-supervision head: global average pool -> fc."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))


def head_key(name: str) -> str:
    """``nn.ModuleDict`` keys cannot contain dots (``features.10`` -> ``features_10``)."""
    return name.replace(".", "_")


class AuxiliaryClassifiers(pl.Callback):
    """Attach a classifier head to each named backbone module and add its weighted loss in training.

    Args:
        heads: ``{module name in backbone.named_modules(): loss weight}``, e.g. ``{"inception4a": 0.3}``.
        head_type: ``googlenet`` (the paper's head) or ``gap`` (global average pool -> fc).
        num_classes: defaults to the module's ``num_classes``.
        image_size: input side for the dry forward that measures feature shapes; defaults to the
            datamodule's ``image_size`` (else 32).
    """

    def __init__(self, heads: Mapping[str, float], head_type: str = "googlenet", num_classes: int | None = None,
                 image_size: int | None = None) -> None:
        if head_type not in HEAD_TYPES:
            raise InputError(f"head_type={head_type!r}; choose one of {HEAD_TYPES}.")
        if not heads:
            raise InputError("heads is empty; give {module name: weight}, e.g. {layer2: 0.3}.")
        self.heads = {str(k): float(v) for k, v in dict(heads).items()}
        self.head_type = head_type
        self.num_classes = num_classes
        self.image_size = image_size
        self._features: dict[str, torch.Tensor] = {}
        self._hooks: ExitStack | None = None

    # ----------------------------------------------------------------- building
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hooks is None:
            modules = dict(pl_module.backbone.named_modules())
            missing = [name for name in self.heads if name not in modules]
            if missing:
                names = ", ".join(n for n in modules if n)
                raise InputError(f"AuxiliaryClassifiers: no module {missing} in the backbone; names are: {names}")
            self._hooks = ExitStack()
            self._features = self._hooks.enter_context(capture_outputs(pl_module.backbone, list(self.heads)))
        num_classes = self.num_classes or pl_module.hparams.num_classes
        if pl_module.attached("aux_heads") is None:  # setup runs again for validate/test: build once
            shapes = self._feature_shapes(trainer, pl_module)
            heads = nn.ModuleDict()
            for name, (channels, spatial) in shapes.items():
                heads[head_key(name)] = (googlenet_head(channels, num_classes, spatial) if self.head_type == "googlenet"
                                         else gap_head(channels, num_classes))
            pl_module.attach("aux_heads", heads.to(pl_module.device))
        for name, weight in self.heads.items():
            pl_module.add_loss_term(f"aux_loss/{name}", weight, self._loss_fn(pl_module, name))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            return  # validate/test of the best checkpoint follow in the same process
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None
        for name in self.heads:
            pl_module.remove_loss_term(f"aux_loss/{name}")

    @torch.no_grad()
    def _feature_shapes(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, tuple[int, int]]:
        """(channels, height) of each hooked output, from one eval-mode forward of a zero image."""
        size = self.image_size or getattr(trainer.datamodule, "image_size", None) or 32
        image = torch.zeros(1, pl_module.mean.shape[1], size, size, device=pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            pl_module(image)
        finally:
            pl_module.train(was_training)
        shapes = {name: (f.shape[1], f.shape[2]) for name, f in self._features.items()}
        self._features.clear()
        return shapes

    def _loss_fn(self, pl_module: pl.LightningModule, name: str):
        def loss(outputs, targets: torch.Tensor) -> torch.Tensor:
            logits = pl_module.attached("aux_heads")[head_key(name)](self._features.pop(name))
            return pl_module.loss(logits, targets)
        return loss

    # ----------------------------------------------------------------- capture windows
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._features.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._features.clear()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._features.clear()

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Each head's own top-1 on validation: how linearly-separable-ish the features are, layer by layer."""
        _, targets = batch
        for name in self.heads:
            features = self._features.pop(name, None)
            if features is None:
                continue
            # Batch accuracy averaged with batch_size weights over the epoch = exact micro top-1.
            hits = (pl_module.attached("aux_heads")[head_key(name)](features).argmax(dim=1) == targets).float().mean()
            pl_module.log(f"val/aux_acc1/{name}", hits, on_step=False, on_epoch=True, batch_size=len(targets),
                          sync_dist=True)
        self._features.clear()
