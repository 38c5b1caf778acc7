"""The one image DataModule: a source (``sources.py``, ``streaming.py``) + a preprocessing spec + an augment preset.

Batches are uint8 ``(B, C, H, W)`` (float after MixUp/CutMix); the LightningModule normalises on the
device with the ``mean``/``std`` exposed here (0..1 units). ``num_classes``, ``classes``, ``channels``,
``image_size``, ``mean`` and ``std`` are usable before ``setup()`` so Hydra interpolation and model
construction can rely on them. The source says what the data is; this class builds the loaders,
clamps the train batch, and keeps the resume position (``resumable.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from convnetlab.data.augment import Preset, resolve
from convnetlab.data.device_decode import EncodedCollate, EncodedImages, check_decode_on, device_decoder
from convnetlab.data.folder import check_class_count
from convnetlab.data.loaders import drop_lone_last, make_loader, train_batch_size
from convnetlab.data.pca_lighting import lighting_stats
from convnetlab.data.preprocessing import Preprocessing
from convnetlab.data.resumable import EpochPermutationSampler, KeyedAugmentation, RepeatedAugmentationSampler
from convnetlab.data.subsample import keep_per_class
from convnetlab.data.sources import Source

log = logging.getLogger(__name__)


class ImageDataModule(pl.LightningDataModule):
    """Image classification data from ``source``, preprocessed as ``preprocessing`` says.

    ``train_transform``/``eval_transform``/``eval_decode_size`` are plain attributes that later code may
    replace before ``setup()`` (``set_eval_protocol`` sets the latter two from the spec). ``augment`` is a
    preset (``augment.py``), its config or None (``Default``); a preset with ``lighting: auto`` gets its RGB
    statistics at ``setup()`` (ImageNet's published values for ``name=imagenet``, else computed from
    training pixels once and cached in the dataset root). ``scale``/``hflip`` are the data's own crop
    range and whether it may be mirrored. ``num_classes``, when given (as Hydra configs do), is checked
    against the source's classes instead of being trusted. ``train_per_class=N`` keeps N training images of
    each class, drawn with the run's seed (``subsample.py``); val and test stay whole.
    ``repeated_augmentations=k`` (> 1) reads each training image k times per epoch under k different
    augmentations (``RepeatedAugmentationSampler``; ``repeated_augmentations_epoch=dataset`` keeps
    torchvision's epoch length instead); 1 is the plain resumable order. ``train_image_size`` is the
    training crop when it differs from the eval crop ``image_size`` (None: the same). ``decode_on=device``:
    workers read file bytes and batches are decoded on the model's device after transfer (``device_decode.py``).
    """

    def __init__(
        self,
        source: Source,
        preprocessing: Preprocessing,
        *,
        name: str = "images",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        hflip: bool = True,
        scale: Sequence[float] = (0.08, 1.0),
        augment: Preset | Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        train_per_class: int | None = None,
        repeated_augmentations: int = 1,
        repeated_augmentations_epoch: str = "repeats",
        train_image_size: int | None = None,
        decode_on: str = "worker",
    ) -> None:
        super().__init__()
        check_decode_on(decode_on, name, source.ordered_by_sampler, getattr(source, "in_memory", False))
        self.decode_on = decode_on
        self.source = source
        self.name = name
        self._preprocessing = preprocessing
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.scale, self.hflip = tuple(scale), hflip
        self.train_image_size = train_image_size or preprocessing.image_size  # the training crop
        self.augment = resolve(augment)
        # None until setup() when the preset needs the training set's colour statistics.
        self.train_transform: Callable[[Tensor], Tensor] | None = None
        if not self.augment.needs_training_stats:
            self.train_transform = self._train_transform()
        self.eval_transform = preprocessing.eval_transform()
        self.eval_decode_size = preprocessing.eval_decode_size  # shorter side eval_transform needs
        self._expected_num_classes = num_classes
        self.repeated_augmentations = int(repeated_augmentations)
        self.repeated_augmentations_epoch = repeated_augmentations_epoch
        self.train_per_class = train_per_class  # keep N training images per class (subsample.py), drawn with the seed
        # Shuffling and augmentation seed: the run's seed (pl.seed_everything runs before the datamodule is built).
        self._shuffle_seed = torch.initial_seed() % 2**62  # an unseeded process's initial seed may not fit int64
        self.train_sampler: EpochPermutationSampler | RepeatedAugmentationSampler | None = None
        self._train_batch_size = batch_size
        self._resume_position: tuple[int, int] | None = None
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    # --- what the data is (from the source and the spec) ----------------------------------
    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    @property
    def root(self) -> Path:
        return self.source.root

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self._preprocessing.channels

    @property
    def image_size(self) -> int:
        return self._preprocessing.image_size

    @property
    def resize_size(self) -> int:
        return self._preprocessing.resize_size

    @property
    def mean(self) -> tuple[float, ...]:
        return self._preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self._preprocessing.std

    def set_eval_protocol(self, protocol: str) -> None:
        """Evaluate with ``protocol`` (``multicrop.PROTOCOLS``; before ``setup()``): its eval transform and
        decode size, and the eval batch divided by the crops per image, so memory stays as for one crop."""
        self._preprocessing = replace(self._preprocessing, eval_protocol=protocol)
        self.eval_transform = self._preprocessing.eval_transform()
        self.eval_decode_size = self._preprocessing.eval_decode_size
        self.eval_batch_size = max(1, self.eval_batch_size // self._preprocessing.eval_crops)

    # --- datasets ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.source.prepare()  # no-op once written; lets setup() work without a Trainer
        self.source.check_split("train")
        check_class_count(self._expected_num_classes, self.num_classes, self.root / "train")
        if stage in (None, "fit") and self.train_dataset is None:
            decode_size = self.augment.decode_size(self.train_image_size, self.scale, self.resize_size)
            self.train_dataset = self.source.dataset("train", self.channels, None, decode_size)
            if self.train_per_class is not None:
                keep_per_class(self.train_dataset, self.train_per_class, self._shuffle_seed)
            if self.train_transform is None:
                sample = self.source.pixel_sample(self.train_dataset)
                stats = lighting_stats(self.name, self.channels, self.root, sample)
                self.train_transform = self._train_transform(stats)
            self.train_dataset.transform = self.train_transform
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self.source.dataset("val", self.channels, self.eval_transform, self.eval_decode_size)
        if stage in (None, "test") and self.test_dataset is None:
            self.test_dataset = self.source.dataset(self._test_split(), self.channels, self.eval_transform,
                                                    self.eval_decode_size)

    def _train_transform(self, stats: Mapping[str, Sequence] | None = None) -> Callable[[Tensor], Tensor]:
        return self.augment.transform(self.train_image_size, scale=self.scale, hflip=self.hflip,
                                      resize_size=self.resize_size, fill=self._preprocessing.fill, stats=stats)

    def _test_split(self) -> str:
        if self.source.has_test_split():
            return "test"
        log.info("%s has no test split; testing on val", self.root)
        return "val"

    # --- loaders -----------------------------------------------------------------------------
    def _loader(self, dataset: Dataset | None, batch_size: int, sampler: Sampler | None = None,
                drop_last: bool = False, collate_fn: Callable | None = None) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        if self.trainer is not None:
            self.source.distribute(dataset, self.trainer.global_rank, self.trainer.world_size)
        make = getattr(self.source, "loader", make_loader)  # a self-ordering source may bring its own
        return make(dataset, batch_size, sampler=sampler, drop_last=drop_last, collate_fn=collate_fn,
                    num_workers=self.num_workers, pin_memory=self.pin_memory,
                    persistent_workers=self.persistent_workers, seed=self._shuffle_seed,
                    rank=self.trainer.global_rank if self.trainer is not None else 0)

    def train_dataloader(self) -> DataLoader:
        """Few-label train sets smaller than a batch give one batch per epoch; a lone last image is dropped.
        A source ordered by a sampler is read in the resumable order (``resumable.py``)."""
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built the train split yet")
        size = len(self.train_dataset)
        batch_size = train_batch_size(size, self.batch_size, self.name)
        mix = self.augment.collate(self.num_classes)
        drop_last = drop_lone_last(size, batch_size)
        if not self.source.ordered_by_sampler:  # e.g. streaming: the dataset orders itself
            if self.repeated_augmentations != 1:
                raise ValueError(f"data.repeated_augmentations needs a sampler-ordered source, not {self.name}")
            loader = self._loader(self.train_dataset, batch_size, drop_last=drop_last, collate_fn=mix)
            if self._resume_position is not None:
                loader.resume_at(*self._resume_position)  # its loader rebuilds the position from these
            return loader
        self._train_batch_size = batch_size
        if self.repeated_augmentations == 1:
            self.train_sampler = EpochPermutationSampler(size, self._shuffle_seed)
        else:
            rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
            self.train_sampler = RepeatedAugmentationSampler(size, self._shuffle_seed, self.repeated_augmentations,
                                                             world, rank, self.repeated_augmentations_epoch)
            drop_last = drop_lone_last(len(self.train_sampler), batch_size)
        if self._resume_position is not None:
            self.resume_train_at(*self._resume_position)
        if self.decode_on == "device":
            return self._loader(EncodedImages(self.train_dataset), batch_size, sampler=self.train_sampler,
                                drop_last=drop_last, collate_fn=EncodedCollate("train"))
        return self._loader(KeyedAugmentation(self.train_dataset, self._shuffle_seed), batch_size,
                            sampler=self.train_sampler, drop_last=drop_last, collate_fn=mix)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, "test")

    def _eval_loader(self, dataset: Dataset | None, split: str) -> DataLoader:
        if self.decode_on == "device" and dataset is not None:
            return self._loader(EncodedImages(dataset), self.eval_batch_size, collate_fn=EncodedCollate(split))
        return self._loader(dataset, self.eval_batch_size)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``decode_on=device``, decode and transform the encoded batch where it now is."""
        if isinstance(batch, dict) and "encoded" in batch:
            return device_decoder(self, batch["split"])(batch)
        return batch

    # --- resumable training data (see resumable.py): every checkpoint records how far into which epoch
    # the run had trained; a resume starts the sampler there.
    def state_dict(self) -> dict[str, int]:
        """Where the training data stands: the epoch and the batches of it already trained on. A finished
        epoch is recorded as the start of the next one, also when ``limit_train_batches`` ended it before
        the sampler's order was used up (the resume must not finish that order). Between epochs (the last one
        counted complete, a checkpoint taken after the epoch-end hooks, e.g. on a signal) the batch counter
        still holds the finished epoch's batches: the position is the start of ``current_epoch``."""
        trainer = self.trainer
        if trainer is None:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        epoch, batches = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if epochs.started == epochs.completed:
            return {"epoch": epoch, "batches": 0}
        if batches >= trainer.num_training_batches:
            epoch, batches = epoch + 1, 0
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self._resume_position = (state_dict["epoch"], state_dict["batches"])

    def resume_train_at(self, epoch: int, batches: int) -> None:
        self._resume_position = (epoch, batches)
        if self.train_sampler is not None:
            self.train_sampler.resume_at(epoch, batches * self._train_batch_size)
