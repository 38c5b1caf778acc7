"""Evaluation protocols: centre crop, 10-crop and multi-scale 10-crop, with softmax averaged over crops.

AlexNet and ResNet report 10-crop test accuracy (4 corners + centre of the 256/224 resized image,
and their mirror images); VGG adds scales. A multi-crop eval transform returns a (K, C, S, S) stack
per image, so batches are (B, K, C, S, S); ``CropAveraging`` folds the K crops into the batch, runs
the backbone once and returns the log of the mean softmax. Its argmax/top-k is the averaged
prediction and cross-entropy on it is the averaged prediction's NLL, so the classifier's test step,
loss and metrics work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.transforms import v2

from convnetlab.data.transforms import default_resize_size, eval_transform
from convnetlab.errors import InputError

PROTOCOLS = ("center", "10crop", "multiscale")
MULTISCALE_AT_224 = (256, 288, 320)  # shorter sides (at 224 px crops) for multi-scale 10-crop


class StackedTenCrops(nn.Module):
    """Resize the shorter side to each of ``resize_sizes`` and take ``TenCrop(crop_size)`` at each:
    a (10 x len(resize_sizes), C, S, S) stack."""

    def __init__(self, crop_size: int, resize_sizes: Sequence[int]) -> None:
        super().__init__()
        self.resizes = [v2.Resize(size, antialias=True) for size in resize_sizes]
        self.ten_crop = v2.TenCrop(crop_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([crop for resize in self.resizes for crop in self.ten_crop(resize(image))])


def protocol_transform(protocol: str, image_size: int, resize_size: int | None = None) -> nn.Module:
    """The eval transform of ``protocol``; ``resize_size`` defaults to the 256/224 ratio."""
    resize_size = resize_size or default_resize_size(image_size)
    if protocol == "center":
        return eval_transform(image_size, resize_size)
    if protocol == "10crop":
        return StackedTenCrops(image_size, [resize_size])
    if protocol == "multiscale":
        return StackedTenCrops(image_size, protocol_sizes(image_size))
    raise InputError(f"protocol={protocol} is not one of {', '.join(PROTOCOLS)}")


def protocol_sizes(image_size: int) -> list[int]:
    """Multi-scale shorter sides for ``image_size`` crops: 256, 288 and 320 at 224, scaled."""
    return [max(image_size, round(size * image_size / 224)) for size in MULTISCALE_AT_224]


def metric_suffix(protocol: str) -> str:
    """``test/acc1`` becomes ``test/acc1_10crop`` etc.; the centre crop keeps the plain names."""
    return "" if protocol == "center" else f"_{protocol}"


class CropAveraging(nn.Module):
    """Wraps a backbone: (B, K, C, H, W) inputs give log(mean over K of softmax); 4-D inputs pass through."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 5:
            return self.backbone(images)
        batch, crops = images.shape[:2]
        logits = self.backbone(images.flatten(0, 1))
        probs = logits.float().softmax(dim=-1).view(batch, crops, -1).mean(dim=1)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def use_protocol(module: nn.Module, datamodule, protocol: str) -> None:
    """Switch an ``ImageClassifier`` + image DataModule pair (before ``setup()``) to ``protocol``.

    Multi-crop sets the datamodule's eval protocol (``ImageDataModule.set_eval_protocol``: its eval
    transform and decode size, and the eval batch divided by the number of crops, so memory stays as
    for one crop) and wraps the backbone in ``CropAveraging``. Any source (folders, streaming) works.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol={protocol} is not one of {', '.join(PROTOCOLS)}")
    if protocol == "center":
        return
    datamodule.set_eval_protocol(protocol)
    module.backbone = CropAveraging(module.backbone)
