"""The named class-folder DataModules the data configs instantiate (``conf/data/*.yaml``).

Each only maps its config keys onto an ``ImageDataModule`` (``image_datamodule.py``): a source
(``sources.py``) and a ``Preprocessing`` spec (``preprocessing.py``); loaders, batching, presets and
resume state are the ``ImageDataModule``'s. ``StreamingDataModule`` (litdata chunks) is in ``streaming.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from convnetlab.data.augment import Preset
from convnetlab.data.digits import write_digits
from convnetlab.data.image_datamodule import ImageDataModule
from convnetlab.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from convnetlab.data.shapes import generate_shapes, shape_classes
from convnetlab.data.sources import FolderSource, GeneratedSource
from convnetlab.data.transforms import default_resize_size
from convnetlab.errors import InputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DigitsDataModule", "ImageFolderDataModule", "ShapesDataModule"]

# Shapes colours are uniform in RGB, so every channel has the same statistics; measured on
# the default medium train split and rounded.
SHAPES_MEAN, SHAPES_STD = 0.5, 0.25
# Digits are mostly dark background; measured on the default 32 px train split and rounded.
DIGITS_MEAN, DIGITS_STD = 0.31, 0.32


class ImageFolderDataModule(ImageDataModule):
    """Reads ``root/{train,val[,test]}/<class>/<image>``; test falls back to val when absent.

    ``bad_images`` is the policy for files that do not decode (``error`` or ``skip``, see
    ``ImageFolderDataset``); ``in_memory`` decodes every image once up front. The other arguments are
    the ``Preprocessing`` spec's and ``ImageDataModule``'s.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        resize_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        channels: int = 3,
        hflip: bool = True,
        scale: Sequence[float] = (0.08, 1.0),
        eval_batch_size: int | None = None,
        in_memory: bool = False,
        name: str = "imagefolder",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_classes: int | None = None,
        augment: Preset | Mapping[str, Any] | None = None,
        bad_images: str = "error",
        repeated_augmentations: int = 1,
        repeated_augmentations_epoch: str = "repeats",
        train_image_size: int | None = None,
        train_per_class: int | None = None,
        decode_on: str = "worker",
    ) -> None:
        super().__init__(
            FolderSource(root, in_memory, bad_images), Preprocessing.of(image_size, resize_size, channels, mean, std),
            name=name, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
            pin_memory=pin_memory, persistent_workers=persistent_workers, hflip=hflip, scale=scale,
            repeated_augmentations=repeated_augmentations, repeated_augmentations_epoch=repeated_augmentations_epoch,
            train_image_size=train_image_size,
            augment=augment, num_classes=num_classes, train_per_class=train_per_class, decode_on=decode_on,
        )


def _generated(
    root: Path, classes: list[str], write: Callable[[Path], Any], image_size: int, resize_size: int | None,
    channels: int,
    mean: Sequence[float] | None, std: Sequence[float] | None, stats: tuple[float, float], in_memory: bool = False,
    bad_images: str = "error", **kwargs: Any,
) -> dict[str, Any]:
    """``ImageDataModule`` arguments for a folder this project writes itself, whose statistics are known."""
    return dict(
        source=GeneratedSource(root, classes, write, in_memory=in_memory, bad_images=bad_images),
        preprocessing=Preprocessing.of(image_size, resize_size, channels, mean or [stats[0]] * channels,
                                       std or [stats[1]] * channels),
        **kwargs,
    )


class ShapesDataModule(ImageDataModule):
    """Synthetic shapes (see ``shapes.py``), generated once under ``root/shapes-<params>`` and read as a class folder.

    Defaults: 500/100/100 images per class (enough for >90% val top-1 with a small CNN in a
    few epochs; 1,000 val images measure accuracy to about +-1%). ``scale`` defaults milder than
    ImageNet's 0.08 so crops of a ~32 px image keep the object. ``class_offset`` selects the shapes
    from ``SHAPE_NAMES[class_offset]`` on, so two offsets give disjoint tasks for transfer learning.
    Other keyword arguments are ``ImageFolderDataModule``'s.
    """

    def __init__(
        self,
        root: str | Path = "data",
        num_classes: int = 10,
        image_size: int = 32,
        per_class_train: int = 500,
        per_class_val: int = 100,
        per_class_test: int = 100,
        difficulty: str = "medium",
        seed: int = 0,
        scale: Sequence[float] = (0.35, 1.0),
        name: str = "shapes",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_offset: int = 0,
        resize_size: int | None = None,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        size = resize_size or default_resize_size(image_size)
        self.class_offset = class_offset
        self.per_class = {"train": per_class_train, "val": per_class_val, "test": per_class_test}
        self.difficulty = difficulty
        self.seed = seed
        counts = "-".join(str(n) for n in self.per_class.values())
        offset = f"-o{class_offset}" if class_offset else ""  # offset 0 keeps the original folder names
        folder = Path(root) / f"shapes-c{num_classes}{offset}-s{size}-n{counts}-{difficulty}-seed{seed}"
        write = partial(generate_shapes, num_classes=num_classes, size=size, per_class=self.per_class,
                        difficulty=difficulty, seed=seed, class_offset=class_offset)
        super().__init__(**_generated(folder, shape_classes(num_classes, class_offset), write, image_size,
                                      resize_size, channels, mean, std, (SHAPES_MEAN, SHAPES_STD), scale=scale,
                                      name=name, **kwargs))


class DigitsDataModule(ImageDataModule):
    """scikit-learn digits (see ``digits.py``), written once under ``root/digits-<params>``.

    Grayscale, no horizontal flip (digits are not mirror-symmetric), milder crops because the
    digits fill the frame, and eval at the stored size (resize_size = image_size) so the
    centre crop does not cut strokes. Other keyword arguments are ``ImageFolderDataModule``'s.
    """

    def __init__(
        self,
        root: str | Path = "data",
        image_size: int = 32,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        channels: int = 1,
        hflip: bool = False,
        scale: Sequence[float] = (0.6, 1.0),
        resize_size: int | None = None,
        name: str = "digits",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("decode_on") == "device":
            raise InputError("data.decode_on=device decodes JPEGs on the device, digits are PNG files: "
                             "keep data.decode_on=worker")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        folder = Path(root) / f"digits-s{image_size}-v{val_fraction:g}-t{test_fraction:g}-seed{seed}"
        write = partial(write_digits, image_size=image_size, val_fraction=val_fraction, test_fraction=test_fraction,
                        seed=seed)
        super().__init__(**_generated(folder, [str(d) for d in range(10)], write, image_size,
                                      resize_size or image_size, channels, mean, std, (DIGITS_MEAN, DIGITS_STD),
                                      hflip=hflip, scale=scale, name=name, **kwargs))
