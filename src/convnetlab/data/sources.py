"""Where a DataModule's images come from: the ``Source`` interface and the class-folder sources.

A source answers four questions and nothing else: which classes there are, whether there is a test
split, what the dataset of a split is (given the channels, per-image transform and decode size), and
how its datasets are ordered. ``ordered_by_sampler`` is that one capability: ``True`` for map-style
datasets, which the DataModule orders with its resumable sampler (``resumable.py``); ``False`` for
datasets that order and split themselves across ranks and workers (the litdata chunks of ``streaming.py``);
such a source also brings its own ``loader`` (``make_loader``'s arguments) with ``resume_at(epoch, batches)``.
Loaders, batching and resume state belong to the DataModule (``datamodule.py``), not to sources.

``FolderSource`` reads ``root/{train,val[,test]}/<class>/<image>``; ``GeneratedSource`` is a folder
this project writes itself on first use (shapes, digits) and then reads like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import Dataset

from convnetlab.data.folder import ImageFolderDataset, check_classes, list_classes
from convnetlab.data.pca_lighting import LazyImages, sample_indices

Transform = Callable[[Tensor], Tensor]


class Source(Protocol):
    """What a DataModule needs from its data; see the module docstring."""

    root: Path
    ordered_by_sampler: bool

    @property
    def classes(self) -> list[str]: ...

    def prepare(self) -> None:
        """Write the data if this source generates it (a no-op once written, or for stored data)."""

    def check_split(self, split: str) -> None:
        """Raise, naming the path, when ``split`` is missing or its classes differ from train's."""

    def has_test_split(self) -> bool: ...

    def dataset(self, split: str, channels: int, transform: Transform | None, decode_size: int | None) -> Dataset:
        """Items ``(uint8 (C, H, W) image, label)`` of ``split``, or ``None`` for a skipped bad image."""

    def distribute(self, dataset: Dataset, rank: int, world_size: int) -> None:
        """Tell a self-ordering dataset which DDP rank reads it (a no-op when a sampler orders it)."""

    def pixel_sample(self, dataset: Dataset) -> Iterable[Tensor]:
        """A lazy sample of (up to 500) untransformed training images, for PCA lighting statistics."""


class FolderSource:
    """``root/{train,val[,test]}/<class>/<image>``; ``in_memory`` and ``bad_images`` as in ``ImageFolderDataset``.

    ``classes`` defaults to train's sorted class folders, listed once on first use.
    """

    ordered_by_sampler = True

    def __init__(self, root: str | Path, in_memory: bool = False, bad_images: str = "error",
                 classes: list[str] | None = None) -> None:
        self.root = Path(root)
        self.in_memory = in_memory
        self.bad_images = bad_images
        self._classes = classes

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = list_classes(self.root / "train")
        return self._classes

    def prepare(self) -> None:
        pass

    def check_split(self, split: str) -> None:
        check_classes(self.root / split, self.classes)

    def has_test_split(self) -> bool:
        return (self.root / "test").is_dir()

    def dataset(self, split: str, channels: int, transform: Transform | None,
                decode_size: int | None) -> ImageFolderDataset:
        self.check_split(split)
        return ImageFolderDataset(self.root / split, self.classes, channels, transform, self.in_memory,
                                  self.bad_images, decode_size)

    def distribute(self, dataset: Dataset, rank: int, world_size: int) -> None:
        pass  # Lightning splits map-style datasets with a DistributedSampler

    def pixel_sample(self, dataset: Dataset) -> Iterable[Tensor]:
        return LazyImages(lambda: (dataset[index] for index in sample_indices(len(dataset))))


class GeneratedSource(FolderSource):
    """A class folder written by ``write(root)`` on first use (``write`` is a no-op once it exists)."""

    def __init__(self, root: str | Path, classes: list[str], write: Callable[[Path], Any], **kwargs: Any) -> None:
        super().__init__(root, classes=classes, **kwargs)
        self.write = write

    def prepare(self) -> None:
        self.write(self.root)
