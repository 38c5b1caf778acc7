"""LightningDataModules over class folders: any ImageFolder tree, plus the two embedded datasets.

Batches are uint8 ``(B, C, H, W)``; the LightningModule normalises on the device with the
``mean``/``std`` exposed here (0..1 units). ``num_classes``, ``classes``, ``channels``,
``image_size``, ``mean`` and ``std`` are usable before ``setup()`` so Hydra interpolation and
model construction can rely on them.
"""

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from convnetlab.data import augment as presets
from convnetlab.data.digits import write_digits
from convnetlab.data.folder import ImageFolderDataset, check_classes, collate_present, list_classes
from convnetlab.data.pca_lighting import IMAGENET_EIGVAL, IMAGENET_EIGVEC, cached_pixel_pca
from convnetlab.data.resumable import EpochPermutationSampler, KeyedAugmentation
from convnetlab.data.shapes import generate_shapes, shape_classes
from convnetlab.data.transforms import default_resize_size, eval_transform
from convnetlab.errors import InputError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Shapes colours are uniform in RGB, so every channel has the same statistics; measured on
# the default medium train split and rounded.
SHAPES_MEAN, SHAPES_STD = 0.5, 0.25
# Digits are mostly dark background; measured on the default 32 px train split and rounded.
DIGITS_MEAN, DIGITS_STD = 0.31, 0.32


def _stats(values: Sequence[float] | None, rgb_default: Sequence[float], channels: int) -> tuple[float, ...]:
    """Per-channel statistics; without explicit values, the RGB default (averaged for 1 channel)."""
    if values is None:
        values = rgb_default if channels == 3 else [sum(rgb_default) / 3] * channels
    values = tuple(float(v) for v in values)
    if len(values) != channels:
        raise InputError(f"expected {channels} mean/std values (one per channel), got {values}")
    return values


class ImageFolderDataModule(pl.LightningDataModule):
    """Reads ``root/{train,val[,test]}/<class>/<image>``; test falls back to val when absent.

    ``train_transform``/``eval_transform`` are plain attributes that later code may replace before
    ``setup()``. ``augment`` is the ``augment`` config group (``{"name": preset, ...}``, see
    ``augment.py``); ``None`` is the ``default`` preset. A preset with PCA lighting gets its RGB
    statistics at ``setup()`` (``lighting: auto`` = ImageNet's published values for ``name=imagenet``,
    else computed from training pixels once and cached in the dataset root). ``bad_images`` is the
    policy for files that do not decode (``error`` or ``skip``, see ``ImageFolderDataset``).
    ``num_classes``, when given (as Hydra configs do), is checked against the class folders
    instead of being trusted.
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
        augment: Mapping[str, Any] | None = None,
        bad_images: str = "error",
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.name = name
        self.image_size = image_size
        self.resize_size = resize_size or default_resize_size(image_size)
        self.channels = channels
        self.mean = _stats(mean, IMAGENET_MEAN, channels)
        self.std = _stats(std, IMAGENET_STD, channels)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.in_memory = in_memory
        self.bad_images = bad_images
        self.scale, self.hflip = tuple(scale), hflip
        self.augment = presets.options(augment)
        # None until setup() when the preset needs the training set's colour statistics.
        self.train_transform: Callable[[Tensor], Tensor] | None = None
        if not (presets.needs_lighting(self.augment["name"]) and self.augment["lighting"] == "auto"):
            self.train_transform = self._preset(self.augment["lighting"])
        self.eval_transform = eval_transform(image_size, self.resize_size)
        self.eval_decode_size = self.resize_size  # shorter side eval_transform needs (multi-scale eval raises it)
        self._expected_num_classes = num_classes
        # Shuffling and augmentation seed: the run's seed (pl.seed_everything runs before the datamodule is built).
        self._shuffle_seed = torch.initial_seed() % 2**62  # an unseeded process's initial seed may not fit int64
        self.train_sampler: EpochPermutationSampler | None = None
        self._train_batch_size = batch_size
        self._resume_position: tuple[int, int] | None = None
        self._classes: list[str] | None = None
        self.train_dataset: ImageFolderDataset | None = None
        self.val_dataset: ImageFolderDataset | None = None
        self.test_dataset: ImageFolderDataset | None = None

    @property
    def classes(self) -> list[str]:
        """Sorted train class-folder names, listed once on first use."""
        if self._classes is None:
            self._classes = list_classes(self.root / "train")
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        self._check_split("train")
        expected = self._expected_num_classes
        if expected is not None and expected != self.num_classes:
            raise InputError(f"num_classes={expected} but {self.root / 'train'} has {self.num_classes} class folders")
        if stage in (None, "fit") and self.train_dataset is None:
            name = self.augment["name"]
            self.train_dataset = self._dataset("train", None, presets.decode_size(name, self.image_size, self.scale,
                                                                                 self.resize_size))
            if self.train_transform is None:
                self.train_transform = self._preset(self._lighting_stats(self.train_dataset))
            self.train_dataset.transform = self.train_transform
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._dataset("val", self.eval_transform, self.eval_decode_size)
        if stage in (None, "test") and self.test_dataset is None:
            self.test_dataset = self._dataset(self._test_split(), self.eval_transform, self.eval_decode_size)

    def _preset(self, lighting: Mapping[str, Any] | str | None) -> Callable[[Tensor], Tensor]:
        """The ``augment`` preset's per-image transform; ``lighting`` "imagenet" or None = published values."""
        fill = [round(255 * m) for m in self.mean]
        return presets.build_preset(
            self.augment["name"], self.image_size, scale=self.scale, hflip=self.hflip, resize_size=self.resize_size,
            lighting=None if lighting in (None, "imagenet") else lighting, alpha_std=self.augment["alpha_std"],
            random_erasing=self.augment["random_erasing"], fill=fill,
        )

    def _lighting_stats(self, dataset: ImageFolderDataset) -> dict[str, list]:
        """PCA-lighting statistics for ``lighting: auto``: ImageNet's published ones for ImageNet, else
        computed from (up to 500 evenly spaced) training images and cached in the dataset root."""
        if self.name == "imagenet" and self.channels == 3:
            return {"eigval": list(IMAGENET_EIGVAL), "eigvec": [list(row) for row in IMAGENET_EIGVEC]}
        step = max(1, len(dataset) // 500)
        sample = _LazyImages(dataset, range(0, len(dataset), step))
        return cached_pixel_pca(self.root, sample)

    def _check_split(self, split: str) -> None:
        check_classes(self.root / split, self.classes)

    def _test_split(self) -> str:
        if (self.root / "test").is_dir():
            return "test"
        log.info("%s has no test split; testing on val", self.root)
        return "val"

    def _dataset(
        self, split: str, transform: Callable[[Tensor], Tensor] | None, decode_size: int | None = None
    ) -> ImageFolderDataset:
        self._check_split(split)
        return ImageFolderDataset(self.root / split, self.classes, self.channels, transform, self.in_memory,
                                  self.bad_images, decode_size)

    def _loader(
        self, dataset: Dataset | None, batch_size: int, shuffle: bool, drop_last: bool = False,
        collate_fn: Callable | None = None, sampler: Sampler | None = None,
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        return DataLoader(
            dataset,
            sampler=sampler,
            # worker seeds from a generator of our own, not from the global RNG, whose position differs on resume
            generator=torch.Generator().manual_seed(self._shuffle_seed),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_fn or collate_present,
        )

    def train_dataloader(self) -> DataLoader:
        """Few-label train sets may be smaller than a batch: then each step sees the whole set. A lone
        last image is dropped, since BatchNorm cannot train on a batch of one."""
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built the train split yet")
        size = len(self.train_dataset)
        batch_size = min(self.batch_size, size)
        if batch_size < self.batch_size:
            log.info("%s: %d training images, fewer than batch_size=%d; one batch per epoch", self.name, size,
                     self.batch_size)
        mix = None
        if self.augment["mixup_alpha"] > 0 or self.augment["cutmix_alpha"] > 0:
            mix = presets.MixUpCutMix(self.num_classes, self.augment["mixup_alpha"], self.augment["cutmix_alpha"])
        drop_last = size % batch_size == 1
        if isinstance(self.train_dataset, IterableDataset):  # shards: the dataset orders itself
            return self._loader(self.train_dataset, batch_size, shuffle=True, drop_last=drop_last, collate_fn=mix)
        self._train_batch_size = batch_size
        self.train_sampler = EpochPermutationSampler(len(self.train_dataset), self._shuffle_seed)
        if self._resume_position is not None:
            self.resume_train_at(*self._resume_position)
        return self._loader(KeyedAugmentation(self.train_dataset, self._shuffle_seed), batch_size, shuffle=False,
                            drop_last=drop_last, collate_fn=mix, sampler=self.train_sampler)

    # Resumable training data (see resumable.py): every checkpoint records how far into which epoch the
    # run had trained; a resume starts the sampler there.
    def state_dict(self) -> dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {}
        return {"epoch": trainer.current_epoch, "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self._resume_position = (state_dict["epoch"], state_dict["batches"])

    def resume_train_at(self, epoch: int, batches: int) -> None:
        self._resume_position = (epoch, batches)
        if self.train_sampler is not None:
            self.train_sampler.resume_at(epoch, batches * self._train_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.eval_batch_size, shuffle=False)


class _LazyImages:
    """Decoded images of ``dataset`` at ``indices`` (the first ``len(indices)`` of an iterable dataset),
    read only when iterated, so a PCA cache hit reads none."""

    def __init__(self, dataset: Dataset, indices: range) -> None:
        self.dataset, self.indices = dataset, indices

    def __iter__(self):
        if isinstance(self.dataset, IterableDataset):
            items = itertools.islice(iter(self.dataset), len(self.indices))
        else:
            items = (self.dataset[index] for index in self.indices)
        yield from (item[0] for item in items if item is not None)


class _GeneratedDataModule(ImageFolderDataModule):
    """A class-folder dataset this project writes itself: ``setup()`` generates it if missing."""

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # no-op once generated; lets setup() work without a Trainer
        super().setup(stage)


class ShapesDataModule(_GeneratedDataModule):
    """Synthetic shapes (see ``shapes.py``), generated once under ``root/shapes-<params>`` and read as an ImageFolder.

    Defaults: 500/100/100 images per class (enough for >90% val top-1 with a small CNN in a
    few epochs; 1,000 val images measure accuracy to about +-1%). ``scale`` defaults milder than
    ImageNet's 0.08 so crops of a ~32 px image keep the object. ``class_offset`` selects the shapes
    from ``SHAPE_NAMES[class_offset]`` on, so two offsets give disjoint tasks for transfer learning.
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
        **kwargs: Any,
    ) -> None:
        channels = kwargs.get("channels", 3)
        size = kwargs.get("resize_size") or default_resize_size(image_size)
        self.class_offset = class_offset
        self.per_class = {"train": per_class_train, "val": per_class_val, "test": per_class_test}
        self.difficulty = difficulty
        self.seed = seed
        counts = "-".join(str(n) for n in self.per_class.values())
        offset = f"-o{class_offset}" if class_offset else ""  # offset 0 keeps the original folder names
        super().__init__(
            root=Path(root) / f"shapes-c{num_classes}{offset}-s{size}-n{counts}-{difficulty}-seed{seed}",
            image_size=image_size,
            scale=scale,
            name=name,
            mean=mean or [SHAPES_MEAN] * channels,
            std=std or [SHAPES_STD] * channels,
            **kwargs,
        )
        self._classes = shape_classes(num_classes, class_offset)

    def prepare_data(self) -> None:
        generate_shapes(self.root, len(self.classes), self.resize_size, self.per_class, self.difficulty, self.seed,
                        self.class_offset)


class DigitsDataModule(_GeneratedDataModule):
    """scikit-learn digits (see ``digits.py``), written once under ``root/digits-<params>``.

    Grayscale, no horizontal flip (digits are not mirror-symmetric), milder crops because the
    digits fill the frame, and eval at the stored size (resize_size = image_size) so the
    centre crop does not cut strokes.
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
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        super().__init__(
            root=Path(root) / f"digits-s{image_size}-v{val_fraction:g}-t{test_fraction:g}-seed{seed}",
            image_size=image_size,
            resize_size=resize_size or image_size,
            channels=channels,
            hflip=hflip,
            scale=scale,
            name=name,
            mean=mean or [DIGITS_MEAN] * channels,
            std=std or [DIGITS_STD] * channels,
            **kwargs,
        )
        self._classes = [str(d) for d in range(10)]

    def prepare_data(self) -> None:
        write_digits(self.root, self.image_size, self.val_fraction, self.test_fraction, self.seed)
