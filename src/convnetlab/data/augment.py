"""ILSVRC training-augmentation presets as torchvision v2 pipelines on uint8 (C, H, W) tensors.

Each preset follows its paper (cited per row in the table below); every size is written at the
papers' 224 px and scaled by ``image_size / 224``, so the same preset runs on 32-96 px data.

=========  =====================================================================================
preset     pipeline (sizes at 224)
=========  =====================================================================================
default    RandomResizedCrop(scale=data.scale) + flip: the torchvision reference recipe (unchanged)
none       Resize 256 + CenterCrop 224, the eval view (no augmentation; a baseline)
alexnet    Resize 256 + CenterCrop 256, random 224 crop + flip + fancy-PCA lighting, alpha ~ N(0, 0.1)
           (Krizhevsky et al. 2012)
vgg        scale jittering: shorter side ~ U[256, 512], random 224 crop + flip + the AlexNet RGB
           colour shift (Simonyan & Zisserman 2015, sec. 3.1)
inception  crops of 8-100% area with aspect 3/4-4/3 + flip + photometric distortions (brightness,
           contrast, saturation, hue, as in Google's Inception preprocessing) (Szegedy et al. 2015)
resnet     shorter side ~ U[256, 480], random 224 crop + flip + the AlexNet colour augmentation
           (He et al. 2016, sec. 3.4)
tv_v2      RandomResizedCrop + flip + TrivialAugmentWide + RandomErasing(0.1), plus batch-level
           MixUp(0.2)/CutMix(1.0) (``MixUpCutMix``) and label smoothing 0.1: torchvision's "new recipe"
=========  =====================================================================================

Labels are never touched by a per-image preset; only ``MixUpCutMix`` (a collate function) changes
them, into soft (N, num_classes) targets that ``ImageClassifier.loss`` accepts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from convnetlab.data.folder import collate_present
from convnetlab.data.pca_lighting import IMAGENET_EIGVAL, IMAGENET_EIGVEC, PCALighting
from convnetlab.data.transforms import default_resize_size, eval_transform, train_transform
from convnetlab.errors import InputError

PRESETS = ("default", "none", "alexnet", "vgg", "inception", "resnet", "tv_v2")
LIGHTING_PRESETS = frozenset({"alexnet", "vgg", "resnet"})
# Inception preprocessing's photometric distortions (brightness max delta 32/255, contrast and
# saturation in [0.5, 1.5], hue max delta 0.2 of the colour wheel).
INCEPTION_JITTER = {"brightness": 32 / 255, "contrast": 0.5, "saturation": 0.5, "hue": 0.2}


def scaled(size_at_224: float, image_size: int) -> int:
    """A paper's pixel size at 224 px crops, scaled to ``image_size`` crops."""
    return max(1, round(size_at_224 * image_size / 224))


def _check(name: str) -> None:
    if name not in PRESETS:
        raise InputError(f"augment={name} is not a preset; choose one of {', '.join(PRESETS)}")


def build_preset(
    name: str,
    image_size: int,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: bool = True,
    resize_size: int | None = None,
    lighting: Mapping[str, Sequence] | None = None,
    alpha_std: float = 0.1,
    random_erasing: float = 0.1,
    fill: Sequence[int] | int = 0,
) -> v2.Compose:
    """The per-image training transform of preset ``name`` for ``image_size`` crops.

    ``scale``/``hflip`` are the data's own settings (``default`` uses both; the paper presets use
    their own crops but still honour ``hflip=False`` for data that is not mirror-symmetric).
    ``lighting`` is ``{"eigval", "eigvec"}`` for the PCA presets (default: ImageNet's published
    values). ``fill`` is the RandomErasing value in pixel units (the mean colour, as torchvision
    erases normalised images with 0).
    """
    _check(name)
    if name == "default":
        return train_transform(image_size, scale, hflip)
    if name == "none":
        return eval_transform(image_size, resize_size)
    flip = [v2.RandomHorizontalFlip()] if hflip else []
    stats = lighting or {"eigval": IMAGENET_EIGVAL, "eigvec": IMAGENET_EIGVEC}
    colour = [PCALighting(stats["eigval"], stats["eigvec"], alpha_std)] if name in LIGHTING_PRESETS else []
    if name == "alexnet":
        size = scaled(256, image_size)
        steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.RandomCrop(image_size)]
    elif name in ("vgg", "resnet"):
        low, high = scaled(256, image_size), scaled(512 if name == "vgg" else 480, image_size)
        steps = [v2.RandomShortestSize(list(range(low, high + 1)), antialias=True), v2.RandomCrop(image_size)]
    elif name == "inception":
        steps = [v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)]
        colour = [v2.ColorJitter(**INCEPTION_JITTER)]
    else:  # tv_v2
        steps = [v2.RandomResizedCrop(image_size, antialias=True)]
        colour = [v2.TrivialAugmentWide(), v2.RandomErasing(p=random_erasing, value=fill)]
    return v2.Compose(steps + flip + colour)


def decode_size(
    name: str, image_size: int, scale: Sequence[float] = (0.08, 1.0), resize_size: int | None = None
) -> int:
    """Shortest image side the preset needs to lose no detail: JPEGs at least 4x larger are decoded
    at 1/4 or 1/8 size (DCT scaling, see ``folder.read_image``), which is faster than a full decode.

    For random-resized crops it is the side at which the smallest crop (area ``scale[0]``, aspect
    up to 4/3) still covers ``image_size`` pixels, so large crop ranges rarely allow a reduction.
    """
    _check(name)
    if name == "none":
        return resize_size or default_resize_size(image_size)
    if name == "alexnet":
        return scaled(256, image_size)
    if name in ("vgg", "resnet"):
        return scaled(512 if name == "vgg" else 480, image_size)
    min_area = 0.08 if name in ("inception", "tv_v2") else float(scale[0])
    return math.ceil(image_size / math.sqrt(min_area * 3 / 4))


class MixUpCutMix:
    """collate_fn mixing each batch with MixUp(``mixup_alpha``) or CutMix(``cutmix_alpha``), chosen at random.

    Mixing needs arithmetic, so images leave as float in [0, 255] (``ImageClassifier.normalize``
    accepts that) and labels as soft (N, num_classes) targets. An alpha of 0 disables that mix.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0) -> None:
        mixes = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []
        mixes += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else []
        if not mixes:
            raise InputError("MixUpCutMix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mix = v2.RandomChoice(mixes)

    def __call__(self, batch: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = collate_present(batch)
        return self.mix(images.float(), labels)


def needs_lighting(name: str) -> bool:
    """Whether preset ``name`` applies PCA lighting (and so needs the training set's RGB statistics)."""
    return name in LIGHTING_PRESETS


def options(augment: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain copy of an ``augment`` config with its defaults filled in."""
    merged = {"name": "default", "lighting": "auto", "alpha_std": 0.1, "random_erasing": 0.1,
              "mixup_alpha": 0.0, "cutmix_alpha": 0.0}
    merged.update(dict(augment or {}))
    _check(merged["name"])
    return merged
