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

Each preset is a class (``Default``, ``NoAugment``, ``AlexNet``, ``VGG``, ``Inception``, ``ResNet``,
``TorchvisionV2``) selected by the ``augment`` config group: ``conf/augment/<name>.yaml`` holds its
``_target_`` and options, and ``label_smoothing`` (read by ``conf/module/classifier.yaml``; 0.1 only for
tv_v2). DataModules take an instantiated preset, its config, or a legacy ``{"name": ..., ...}`` mapping.

Labels are never touched by a per-image preset; only ``MixUpCutMix`` (a collate function) changes
them, into soft (N, num_classes) targets that ``ImageClassifier.loss`` accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from torchvision.transforms import v2

from convnetlab.data.mixing import MixUpCutMix
from convnetlab.data.pca_lighting import IMAGENET_EIGVAL, IMAGENET_EIGVEC, PCALighting
from convnetlab.data.transforms import default_resize_size, eval_transform, train_transform
from convnetlab.errors import InputError

# Inception preprocessing's photometric distortions (brightness max delta 32/255, contrast and
# saturation in [0.5, 1.5], hue max delta 0.2 of the colour wheel).
INCEPTION_JITTER = {"brightness": 32 / 255, "contrast": 0.5, "saturation": 0.5, "hue": 0.2}
Lighting = Mapping[str, Sequence] | str | None


def scaled(size_at_224: float, image_size: int) -> int:
    """A paper's pixel size at 224 px crops, scaled to ``image_size`` crops."""
    return max(1, round(size_at_224 * image_size / 224))


def _random_resized_decode_size(image_size: int, min_area: float) -> int:
    """Side at which the smallest random-resized crop (area ``min_area``, aspect up to 4/3) covers ``image_size``."""
    return math.ceil(image_size / math.sqrt(min_area * 3 / 4))


class Preset:
    """A training-augmentation preset: the per-image transform, the decode size it needs and the batch mix.

    ``transform(image_size, scale=, hflip=, resize_size=, fill=)`` builds the per-image pipeline;
    ``scale``/``hflip`` are the data's own settings (``default`` uses both; the paper presets use their
    own crops but still honour ``hflip=False`` for data that is not mirror-symmetric). ``fill`` is the
    RandomErasing value in pixel units. ``mixup_alpha``/``cutmix_alpha`` > 0 mix batches (``MixUpCutMix``);
    ``label_smoothing`` is carried for the module config and not used here.
    """

    name: ClassVar[str]

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, label_smoothing: float = 0.0) -> None:
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.label_smoothing = float(label_smoothing)

    @property
    def needs_training_stats(self) -> bool:
        """Whether ``transform`` needs the training set's RGB statistics (``stats=``), known only at setup."""
        return False

    def transform(self, image_size: int, *, scale: Sequence[float] = (0.08, 1.0), hflip: bool = True,
                  resize_size: int | None = None, fill: Sequence[int] | int = 0,
                  stats: Mapping[str, Sequence] | None = None) -> v2.Compose:
        raise NotImplementedError

    def decode_size(self, image_size: int, scale: Sequence[float] = (0.08, 1.0), resize_size: int | None = None) -> int:
        """Shortest image side the preset needs to lose no detail: JPEGs at least 4x larger are decoded
        at 1/4 or 1/8 size (DCT scaling, see ``folder.read_image``), which is faster than a full decode.

        For random-resized crops it is the side at which the smallest crop (area ``scale[0]``, aspect
        up to 4/3) still covers ``image_size`` pixels, so large crop ranges rarely allow a reduction.
        """
        return _random_resized_decode_size(image_size, 0.08)

    def collate(self, num_classes: int) -> Callable | None:
        """The batch-mixing collate function, or None (plain batches)."""
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            return MixUpCutMix(num_classes, self.mixup_alpha, self.cutmix_alpha)
        return None

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class Default(Preset):
    """RandomResizedCrop(scale=data.scale) + flip: the torchvision reference recipe."""

    name = "default"

    def transform(self, image_size, *, scale=(0.08, 1.0), hflip=True, resize_size=None, fill=0, stats=None):
        return train_transform(image_size, scale, hflip)

    def decode_size(self, image_size, scale=(0.08, 1.0), resize_size=None):
        return _random_resized_decode_size(image_size, float(scale[0]))


class NoAugment(Preset):
    """Resize 256 + CenterCrop 224, the eval view (no augmentation; a baseline)."""

    name = "none"

    def transform(self, image_size, *, scale=(0.08, 1.0), hflip=True, resize_size=None, fill=0, stats=None):
        return eval_transform(image_size, resize_size)

    def decode_size(self, image_size, scale=(0.08, 1.0), resize_size=None):
        return resize_size or default_resize_size(image_size)


class _LightingPreset(Preset):
    """A crop recipe + flip + AlexNet's fancy-PCA lighting, ``alpha ~ N(0, alpha_std)``.

    ``lighting``: ``auto`` (ImageNet's published eigen-decomposition for data named imagenet, else
    computed once from training pixels; passed to ``transform`` as ``stats``), ``imagenet`` (the
    published values) or an ``{"eigval", "eigvec"}`` mapping.
    """

    def __init__(self, lighting: Lighting = "auto", alpha_std: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lighting, self.alpha_std = lighting, float(alpha_std)

    @property
    def needs_training_stats(self) -> bool:
        return self.lighting == "auto"

    def _crop(self, image_size: int) -> list[v2.Transform]:
        raise NotImplementedError

    def transform(self, image_size, *, scale=(0.08, 1.0), hflip=True, resize_size=None, fill=0, stats=None):
        chosen = stats if self.lighting == "auto" else None if self.lighting in (None, "imagenet") else self.lighting
        chosen = chosen or {"eigval": IMAGENET_EIGVAL, "eigvec": IMAGENET_EIGVEC}
        flip = [v2.RandomHorizontalFlip()] if hflip else []
        return v2.Compose(self._crop(image_size) + flip + [PCALighting(chosen["eigval"], chosen["eigvec"],
                                                                        self.alpha_std)])


class AlexNet(_LightingPreset):
    """Resize 256 + CenterCrop 256, random 224 crop + flip + PCA lighting (Krizhevsky et al. 2012)."""

    name = "alexnet"

    def _crop(self, image_size):
        size = scaled(256, image_size)
        return [v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.RandomCrop(image_size)]

    def decode_size(self, image_size, scale=(0.08, 1.0), resize_size=None):
        return scaled(256, image_size)


class _ScaleJitter(_LightingPreset):
    """Shorter side ~ U[256, ``max_side_at_224``], random 224 crop + flip + PCA lighting."""

    max_side_at_224: ClassVar[int]

    def _crop(self, image_size):
        low, high = scaled(256, image_size), scaled(self.max_side_at_224, image_size)
        return [v2.RandomShortestSize(list(range(low, high + 1)), antialias=True), v2.RandomCrop(image_size)]

    def decode_size(self, image_size, scale=(0.08, 1.0), resize_size=None):
        return scaled(self.max_side_at_224, image_size)


class VGG(_ScaleJitter):
    """Scale jittering U[256, 512] + flip + the AlexNet colour shift (Simonyan & Zisserman 2015, sec. 3.1)."""

    name, max_side_at_224 = "vgg", 512


class ResNet(_ScaleJitter):
    """Scale jittering U[256, 480] + flip + the AlexNet colour augmentation (He et al. 2016, sec. 3.4)."""

    name, max_side_at_224 = "resnet", 480


class Inception(Preset):
    """Crops of 8-100% area, aspect 3/4-4/3, + flip + photometric distortions (Szegedy et al. 2015)."""

    name = "inception"

    def transform(self, image_size, *, scale=(0.08, 1.0), hflip=True, resize_size=None, fill=0, stats=None):
        flip = [v2.RandomHorizontalFlip()] if hflip else []
        crop = v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)
        return v2.Compose([crop, *flip, v2.ColorJitter(**INCEPTION_JITTER)])


class TorchvisionV2(Preset):
    """torchvision's "new recipe": RandomResizedCrop + flip + TrivialAugmentWide + RandomErasing, with
    MixUp(0.2)/CutMix(1.0) batches and label smoothing 0.1 by default."""

    name = "tv_v2"

    def __init__(self, random_erasing: float = 0.1, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0,
                 label_smoothing: float = 0.1) -> None:
        super().__init__(mixup_alpha, cutmix_alpha, label_smoothing)
        self.random_erasing = float(random_erasing)

    def transform(self, image_size, *, scale=(0.08, 1.0), hflip=True, resize_size=None, fill=0, stats=None):
        flip = [v2.RandomHorizontalFlip()] if hflip else []
        return v2.Compose([v2.RandomResizedCrop(image_size, antialias=True), *flip, v2.TrivialAugmentWide(),
                           v2.RandomErasing(p=self.random_erasing, value=fill)])


PRESET_CLASSES: dict[str, type[Preset]] = {
    cls.name: cls for cls in (Default, NoAugment, AlexNet, VGG, Inception, ResNet, TorchvisionV2)
}
PRESETS = tuple(PRESET_CLASSES)
LIGHTING_PRESETS = frozenset(name for name, cls in PRESET_CLASSES.items() if issubclass(cls, _LightingPreset))
# What a legacy {"name": ...} mapping meant for keys it left out: no batch mixing, whatever the preset.
_LEGACY_DEFAULTS = {"mixup_alpha": 0.0, "cutmix_alpha": 0.0}


def preset_class(name: str) -> type[Preset]:
    if name not in PRESET_CLASSES:
        raise InputError(f"augment={name} is not a preset; choose one of {', '.join(PRESETS)}")
    return PRESET_CLASSES[name]


def resolve(augment: Preset | Mapping[str, Any] | None) -> Preset:
    """A preset from what the ``augment`` argument of a DataModule may be: an instantiated preset, its
    config (with ``_target_``), a legacy ``{"name": preset, ...}`` mapping, or None (``Default``)."""
    if augment is None:
        return Default()
    if isinstance(augment, Preset):
        return augment
    options = dict(augment)
    if "_target_" in options:
        from hydra.utils import instantiate

        preset = instantiate(options)
        if not isinstance(preset, Preset):
            raise InputError(f"augment._target_={options['_target_']} is not an augmentation preset")
        return preset
    cls = preset_class(options.pop("name", "default"))
    legacy = {k: v for k, v in _LEGACY_DEFAULTS.items() if k not in options}
    try:
        return cls(**legacy, **options)
    except TypeError as error:
        raise InputError(f"augment={cls.name} does not take these options: {sorted(options)} ({error})") from error


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
    """The per-image training transform of preset ``name`` for ``image_size`` crops (``lighting``: the PCA
    presets' ``{"eigval", "eigvec"}``, default ImageNet's published values)."""
    cls = preset_class(name)
    if issubclass(cls, _LightingPreset):
        preset = cls(lighting=lighting or "imagenet", alpha_std=alpha_std)
    elif cls is TorchvisionV2:
        preset = cls(random_erasing=random_erasing)
    else:
        preset = cls()
    return preset.transform(image_size, scale=scale, hflip=hflip, resize_size=resize_size, fill=fill)


def decode_size(
    name: str, image_size: int, scale: Sequence[float] = (0.08, 1.0), resize_size: int | None = None
) -> int:
    """``Preset.decode_size`` of preset ``name``."""
    return preset_class(name)().decode_size(image_size, scale, resize_size)


def needs_lighting(name: str) -> bool:
    """Whether preset ``name`` applies PCA lighting (and so may need the training set's RGB statistics)."""
    return name in LIGHTING_PRESETS
