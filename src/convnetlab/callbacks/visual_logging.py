"""Watch filters evolve from noise to edges and blobs: images logged during training.

Before the first epoch (so the initialisation is seen) and after every ``every_n_epochs`` epochs,
the first conv layer's kernel grid and the saliency and Grad-CAM overlays of a fixed set of
validation images go to every active logger: W&B images (``WandbLogger.log_image``), TensorBoard
images (``add_image``), and PNG files in ``<csv log dir>/visual/`` for the CSV logger. Keys are
``visual/filters``, ``visual/saliency``, ``visual/grad_cam``; PNGs are named ``epoch{E:03d}_<key>.png``
with E the number of finished epochs (0 = before training).

Rank zero only. The module's train/eval mode is restored; captum's hooks are removed by captum and
gradients are taken with ``torch.autograd.grad``, so parameters' ``.grad`` are never touched.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from convnetlab.analysis.attribution import grad_cam, last_conv_stage, saliency
from convnetlab.analysis.filters import conv_layers, filter_grid, tile
from convnetlab.analysis.plots import overlay, upscale
from convnetlab.analysis.samples import pick_images
from convnetlab.errors import InputError


def _enlarge(image: Tensor, target: int) -> Tensor:
    """Integer nearest-neighbour upscaling towards ``target`` pixels, so 5x5 kernels and 32 px images
    stay visible in a logger's UI and in the PNGs."""
    return upscale(image, max(1, target // max(image.shape[-2:])))


class VisualLogging(pl.Callback):
    """Log filters, saliency and Grad-CAM of ``n_images`` fixed validation images.

    Args:
        every_n_epochs: interval in finished epochs (pictures are also taken before training and
            after the last epoch).
        n_images: how many validation images (one per class first, in dataset order).
        layer: Grad-CAM layer (a ``named_modules`` name of the backbone); None finds the last
            convolutional stage.
    """

    def __init__(self, every_n_epochs: int = 1, n_images: int = 8, layer: str | None = None) -> None:
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.n_images = int(n_images)
        self.layer = layer
        self.images: Tensor | None = None
        self.labels: Tensor | None = None
        self._last_logged: int | None = None

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
        if loader is None:
            raise InputError("VisualLogging needs validation data to pick its images; give the trainer a val loader.")
        self.images, self.labels, _ = pick_images(loader.dataset, self.n_images)
        self._log(trainer, pl_module, trainer.current_epoch)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        finished = trainer.current_epoch + 1
        if finished % self.every_n_epochs == 0:
            self._log(trainer, pl_module, finished)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last_logged != trainer.current_epoch:
            self._log(trainer, pl_module, trainer.current_epoch)

    def pictures(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """(3, H, W) float images in [0, 1]: the first-layer filter grid and the two overlay strips."""
        backbone = pl_module.backbone
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.inference_mode(False), torch.enable_grad():
                inputs = pl_module.normalize(self.images.to(pl_module.device))
                self.layer = self.layer or last_conv_stage(backbone, inputs)
                targets = self.labels.to(pl_module.device)
                maps = {"saliency": saliency(backbone, inputs, targets),
                        "grad_cam": grad_cam(backbone, inputs, targets, self.layer)}
        finally:
            pl_module.train(was_training)
        filters = filter_grid(conv_layers(backbone)[0][1].weight)
        pictures = {"filters": _enlarge(filters.expand(3, -1, -1), 320)}
        for key, values in maps.items():
            strip = torch.stack([_enlarge(overlay(image, m), 96) for image, m in zip(self.images, values)])
            pictures[key] = tile(strip, ncol=len(strip))
        return pictures

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, finished_epochs: int) -> None:
        # uint8 HWC arrays mean the same to every logger (W&B casts float images to uint8 without scaling).
        pictures = {key: (image * 255).round().byte().permute(1, 2, 0).numpy()
                    for key, image in self.pictures(pl_module).items()}
        step = trainer.global_step
        for logger in trainer.loggers:
            for key, image in pictures.items():
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"visual/{key}", images=[image], step=step,
                                     caption=[f"after {finished_epochs} epochs"])
                elif isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"visual/{key}", image, global_step=step, dataformats="HWC")
                elif isinstance(logger, CSVLogger):
                    path = Path(logger.log_dir) / "visual" / f"epoch{finished_epochs:03d}_{key}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image).save(path)
        self._last_logged = finished_epochs
