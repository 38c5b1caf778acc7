"""Basic train/eval transforms on uint8 (C, H, W) tensors.

Everything stays uint8 so batches are small to move between processes; normalisation happens
later on the device.
"""

from collections.abc import Sequence

from torchvision.transforms import v2


def default_resize_size(image_size: int) -> int:
    """Eval resize for a crop size, using ImageNet's 256/224 ratio so every dataset follows one protocol."""
    return round(image_size * 256 / 224)


def train_transform(
    image_size: int, scale: Sequence[float] = (0.08, 1.0), hflip: bool = True
) -> v2.Compose:
    """Random-resized crop (+ optional horizontal flip): the standard ImageNet training recipe."""
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(image_size, scale=(float(scale[0]), float(scale[1])), antialias=True)
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def eval_transform(image_size: int, resize_size: int | None = None) -> v2.Compose:
    """Resize the short side, then centre-crop: the standard ImageNet evaluation protocol."""
    return v2.Compose(
        [
            v2.Resize(resize_size or default_resize_size(image_size), antialias=True),
            v2.CenterCrop(image_size),
        ]
    )
