"""The preprocessing spec: what every image of a dataset is turned into, independent of where it is stored.

``Preprocessing`` is a small frozen value: crop size, the eval resize, channels, the normalisation
statistics the LightningModule applies on the device (0..1 units), and the eval protocol with the
eval transform and decode size that follow from it. DataModules expose it as ``datamodule.preprocessing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from convnetlab.data.multicrop import PROTOCOLS, protocol_sizes, protocol_transform
from convnetlab.data.transforms import default_resize_size
from convnetlab.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(values: Sequence[float] | None, rgb_default: Sequence[float], channels: int) -> tuple[float, ...]:
    """Per-channel statistics; without explicit values, the RGB default (averaged for 1 channel)."""
    if values is None:
        values = rgb_default if channels == 3 else [sum(rgb_default) / 3] * channels
    values = tuple(float(v) for v in values)
    if len(values) != channels:
        raise InputError(f"expected {channels} mean/std values (one per channel), got {values}")
    return values


@dataclass(frozen=True)
class Preprocessing:
    """``image_size`` crops of ``channels``-channel uint8 images, normalised later with ``mean``/``std``.

    Build it with ``Preprocessing.of(...)``, which fills the defaults (``resize_size``: the 256/224
    ratio; ``mean``/``std``: ImageNet's). ``eval_protocol`` is one of ``multicrop.PROTOCOLS``.
    """

    image_size: int
    resize_size: int
    channels: int = 3
    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)
    eval_protocol: str = "center"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {self.channels}")
        if self.eval_protocol not in PROTOCOLS:
            raise InputError(f"protocol={self.eval_protocol} is not one of {', '.join(PROTOCOLS)}")

    @classmethod
    def of(
        cls, image_size: int, resize_size: int | None = None, channels: int = 3,
        mean: Sequence[float] | None = None, std: Sequence[float] | None = None, eval_protocol: str = "center",
    ) -> Preprocessing:
        return cls(image_size, resize_size or default_resize_size(image_size), channels,
                   channel_stats(mean, IMAGENET_MEAN, channels), channel_stats(std, IMAGENET_STD, channels),
                   eval_protocol)

    @property
    def fill(self) -> list[int]:
        """The mean colour in pixel units: what RandomErasing paints (torchvision erases normalised images with 0)."""
        return [round(255 * m) for m in self.mean]

    def eval_transform(self) -> nn.Module:
        """The eval protocol's transform: centre crop, or a (K, C, S, S) stack of crops."""
        return protocol_transform(self.eval_protocol, self.image_size, self.resize_size)

    @property
    def eval_sizes(self) -> list[int]:
        """Shorter sides the eval protocol resizes to."""
        return protocol_sizes(self.image_size) if self.eval_protocol == "multiscale" else [self.resize_size]

    @property
    def eval_decode_size(self) -> int:
        """Shorter side the eval transform needs (multi-scale eval raises it)."""
        return max(self.eval_sizes)

    @property
    def eval_crops(self) -> int:
        """Crops per image in eval batches (1 for the centre crop)."""
        return 1 if self.eval_protocol == "center" else 10 * len(self.eval_sizes)
