"""Streaming data (``data=streaming``): ``optimize_folder`` output read with litdata, local or ``s3://``.

litdata's ``StreamingDataset`` reads the chunks (downloading remote ones into its local cache), shuffles
chunks and the items within them per epoch with the same seed on every rank, and splits them across DDP
ranks and DataLoader workers in whole batches: every rank and worker gets disjoint items, with
``drop_last`` (set under DDP) every rank the same number of full batches. What this module adds:

- items are decoded here, and a training item's augmentation is seeded from (seed, epoch, the item's
  stored index), not from a worker's RNG stream, so a resumed worker draws the same crops;
- the resume position is the datamodule's (epoch, batches trained), as for folders, not the loader's
  own sample count, which Lightning's one-batch prefetch puts a batch ahead at checkpoint time. Since
  litdata assigns whole batches to workers round-robin, batch ``b`` of an epoch is the worker
  ``b % num_workers``'s next one, so (epoch, batches) rebuilds litdata's loader state exactly.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from hashlib import md5
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.utilities.dataset_utilities import get_default_cache_dir
from litdata.utilities.env import _DistributedEnv

from convnetlab.data.decode import decode_transformed
from convnetlab.data.folder import BAD_IMAGE_POLICIES, collate_present
from convnetlab.data.image_datamodule import ImageDataModule
from convnetlab.data.loaders import worker_init
from convnetlab.data.pca_lighting import LazyImages, sample_indices
from convnetlab.data.preprocessing import Preprocessing
from convnetlab.data.resumable import keyed_rng
from convnetlab.data.streaming_writer import OPTIMIZE_HINT, is_remote, join, read_info
from convnetlab.errors import BadImageError, InputError, MissingFileError

log = logging.getLogger(__name__)


class StreamingImageDataset(StreamingDataset):
    """Yields ``(uint8 image, label)`` (``None`` for an undecodable item under ``bad_images="skip"``).

    ``transform`` is the per-image transform the datamodule sets; litdata's own item hook (which it finds
    under the same attribute name) is ``_sample``, so setting it never replaces the decoding.
    """

    def __init__(self, input_dir: str, num_items: int, channels: int = 3, transform: Callable | None = None,
                 shuffle: bool = False, seed: int = 0, bad_images: str = "error", cache_dir: str | None = None,
                 decode_size: int | None = None) -> None:
        super().__init__(input_dir, cache_dir=cache_dir, shuffle=shuffle, seed=seed)
        self.location, self.num_items, self.channels, self.decode_size = input_dir, num_items, channels, decode_size
        self.bad_images = bad_images
        self.image_transform = transform
        self.augment_seed = seed  # the run's seed once a loader is built (``StreamingSource.loader``)

    @property
    def transform(self) -> list[Callable]:
        return [self._sample]

    @transform.setter
    def transform(self, transform: Callable | None) -> None:
        self.image_transform = transform

    def _sample(self, item: dict[str, Any]) -> tuple[torch.Tensor, int] | None:
        with keyed_rng(self.augment_seed, self.current_epoch * self.num_items + int(item["index"])):
            image = self._decode(item["image"], item["name"])
        return None if image is None else (image, int(item["label"]))

    def _decode(self, data: bytes, name: str) -> torch.Tensor | None:
        """The item's image, decoded and transformed (``decode_transformed``); None for a skipped bad item."""
        try:
            return decode_transformed(bytes(data), self.channels, self.decode_size, self.image_transform,
                                      name=f"{self.location}: {name}")
        except BadImageError as e:
            if self.bad_images == "error":
                raise BadImageError(f"{e}; rewrite the data from a folder checked with `convnetlab-data "
                                    "action=check`, or set data.bad_images=skip") from e
            log.warning("skipping %s (data.bad_images=skip)", e)
            return None


class StreamingImageLoader(StreamingDataLoader):
    """litdata's loader whose resume position comes from ``resume_at(epoch, batches trained)``.

    ``state_dict`` is empty, so Lightning's copy of the loader state (a prefetched batch ahead) is neither
    saved nor restored. A resume applies to the next epoch only (litdata would replay it again when
    ``limit_train_batches`` ends that epoch early). Lightning's epoch ``e`` is litdata's ``e + 1``.
    """

    _restored = False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        if obj:
            super().load_state_dict(obj)

    def resume_at(self, epoch: int, batches: int) -> None:
        if batches <= 0 or batches >= len(self):
            self.current_epoch = epoch if batches <= 0 else epoch + 1  # __iter__ counts one up
            return
        samples = batches * self.batch_size
        dataset = self.dataset.state_dict(samples, self.num_workers, self.batch_size)
        dataset["current_epoch"] = epoch + 1
        super().load_state_dict({"dataset": dataset, "current_epoch": epoch + 1, "num_samples_yielded": samples,
                                 "latest_worker_idx": (batches - 1) % max(self.num_workers, 1)})

    def __iter__(self) -> Any:
        if self._restored:
            self.restore = False
        self._restored = self.restore
        return super().__iter__()


class StreamingSource:
    """``optimize_folder`` output as a DataModule source; ``location`` is its folder or URL.

    Its datasets order and split themselves (litdata), so ``ordered_by_sampler`` is False. ``root`` is
    local: the folder itself, or for a URL a folder in the cache (``cache_dir``, else litdata's:
    ``$LITDATA_CACHE_DIR`` or ``~/.lightning/chunks``) that holds what is computed from the data (PCA
    lighting statistics). ``bad_images`` applies to items that fail to decode (files that were bad when
    the data was written were left out then). JPEGs decode at reduced size as from folders (``decode.py``).
    """

    ordered_by_sampler = False

    def __init__(self, location: str | Path, seed: int = 0, bad_images: str = "error",
                 cache_dir: str | None = None) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise InputError(f"bad_images={bad_images} is not one of {', '.join(BAD_IMAGE_POLICIES)}")
        self.location = str(location)
        self.seed, self.bad_images, self.cache_dir = seed, bad_images, cache_dir
        self.root = Path(location) if not is_remote(location) else (
            Path(cache_dir or get_default_cache_dir()) / "convnetlab" / md5(self.location.encode()).hexdigest())
        self._info: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = read_info(self.location)
        return self._info

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    def prepare(self) -> None:
        if is_remote(self.location):  # the local folder beside the cache; a local root is only read
            self.root.mkdir(parents=True, exist_ok=True)

    def check_split(self, split: str) -> None:
        """The split is listed in ``classes.json`` and, when local, its litdata index is there (litdata would
        fail with a traceback)."""
        if split not in self.info["splits"]:
            raise MissingFileError(f"{self.location} has no {split} split; rewrite it with {OPTIMIZE_HINT} "
                                   f"from a folder with {split}/")
        index = Path(self.location, split, "index.json")
        if not is_remote(self.location) and not index.is_file():
            raise MissingFileError(f"{index} does not exist, though {self.location} lists a {split} split; write the "
                                   f"data again with {OPTIMIZE_HINT} into a new folder")

    def has_test_split(self) -> bool:
        return "test" in self.info["splits"]

    def dataset(self, split: str, channels: int, transform: Callable | None,
                decode_size: int | None = None, shuffle: bool | None = None) -> StreamingImageDataset:
        self.check_split(split)
        return StreamingImageDataset(join(self.location, split), self.info["splits"][split], channels, transform,
                                     shuffle=split == "train" if shuffle is None else shuffle, seed=self.seed,
                                     bad_images=self.bad_images, cache_dir=self.cache_dir, decode_size=decode_size)

    def distribute(self, dataset: StreamingImageDataset, rank: int, world_size: int) -> None:
        env = dataset.distributed_env
        if (env.global_rank, env.world_size) != (rank, world_size):  # detected from the process group when it exists
            dataset.distributed_env = _DistributedEnv(world_size, rank, env.num_nodes if world_size > 1 else 1)
            dataset.shuffler = None

    def loader(self, dataset: StreamingImageDataset, batch_size: int, *, num_workers: int, pin_memory: bool,
               persistent_workers: bool, seed: int, sampler: Any = None, drop_last: bool = False,
               collate_fn: Callable | None = None, rank: int = 0) -> StreamingImageLoader:
        """Training: litdata's ``drop_last`` under DDP (equal full batches on every rank; fewer than
        ranks x batch_size items sit out an epoch), or to avoid a lone last image. Evaluation reads
        every item. Workers are not persistent: each epoch's workers start from the dataset's epoch.
        ``seed`` (the run's) keys the augmentation, as for folders."""
        even = dataset.shuffle and (dataset.distributed_env.world_size > 1 or drop_last)
        dataset.augment_seed = seed
        return StreamingImageLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, drop_last=even, pin_memory=pin_memory,
            collate_fn=collate_fn or collate_present, generator=torch.Generator().manual_seed(seed),
            worker_init_fn=partial(worker_init, rank=rank) if num_workers > 0 else None)

    def pixel_sample(self, dataset: StreamingImageDataset) -> Iterable[torch.Tensor]:
        """The first (about) 500 training items in stored order (shuffled when written), the same on every rank."""
        def items() -> Iterable:
            unshuffled = self.dataset("train", dataset.channels, None, shuffle=False)
            unshuffled.distributed_env = _DistributedEnv(1, 0, 1)
            return itertools.islice(iter(unshuffled), len(sample_indices(dataset.num_items)))
        return LazyImages(items)


class StreamingDataModule(ImageDataModule):
    """An ``ImageDataModule`` over streaming data: same presets, eval protocols and batches as folders.

    ``root`` is the ``optimize_folder`` output (a folder or ``s3://...``); ``seed`` litdata's shuffle
    seed (the same on every rank); ``cache_dir`` where remote chunks are cached (None: litdata's
    default). The other arguments are ``ImageFolderDataModule``'s; ``in_memory`` does not apply.
    """

    def __init__(
        self,
        root: str | Path,
        seed: int = 0,
        image_size: int = 224,
        resize_size: int | None = None,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str = "streaming",
        bad_images: str = "error",
        cache_dir: str | None = None,
        in_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        if in_memory:
            raise InputError("in_memory does not apply to streaming data (it is read chunk by chunk); leave it false")
        self.seed = seed
        super().__init__(StreamingSource(root, seed, bad_images, cache_dir),
                         Preprocessing.of(image_size, resize_size, channels, mean, std), name=name, **kwargs)
