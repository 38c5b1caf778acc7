"""Sharded class-folder data for users who outgrow a local folder: WebDataset-format tar shards.

``write_shards`` packs ``<root>/<split>/<class>/<image>`` into ``<out>/<split>/shard-000000.tar`` ...
(members ``<key>.<ext>`` with the original image bytes and ``<key>.cls`` with the label), plus
``<out>/index.json`` (classes and per-shard sample counts). The format is WebDataset's, so the
``webdataset`` library reads the shards too; here a small ``IterableDataset`` reads them so that
sharding across DDP ranks and DataLoader workers is explicit: the shard list (shuffled per epoch
with the same seed on every rank) is split by ``rank * num_workers + worker``, so ranks see disjoint
samples and together every sample once per epoch. Give the writer a shard count divisible by
``world_size`` so every rank gets the same number of samples (DDP steps must match).
``ShardSource`` plugs the shards into the one ``ImageDataModule`` (``ShardedDataModule`` for configs).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor, rgb_to_grayscale

from convnetlab.data.folder import BAD_IMAGE_POLICIES, atomic_dir, find_bad_files, find_samples, list_classes
from convnetlab.data.folder import SHARD_INDEX as INDEX
from convnetlab.data.image_datamodule import ImageDataModule
from convnetlab.data.pca_lighting import LazyImages, sample_indices
from convnetlab.data.preprocessing import Preprocessing
from convnetlab.errors import BadImageError, InputError, MissingFileError

log = logging.getLogger(__name__)


def write_shards(
    root: str | Path, out_dir: str | Path, num_shards: int = 8, splits: tuple[str, ...] = ("train", "val", "test")
) -> Path:
    """Pack every split present under ``root`` into ``num_shards`` tar shards each (a no-op when ``out_dir`` exists).

    Samples are interleaved round-robin (after a fixed shuffle), so shards have equal sizes (+-1)
    and mixed classes. Bad files are left out and logged.
    """
    root, out_dir = Path(root), Path(out_dir)
    if (out_dir / INDEX).is_file():
        return out_dir
    classes = list_classes(root / "train")
    index: dict[str, Any] = {"classes": classes, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for split in (s for s in splits if (root / s).is_dir()):
            samples = find_samples(root / split, classes)
            bad = set(find_bad_files([p for p, _ in samples]))
            if bad:
                log.warning("%s: leaving out %d bad file(s):\n  %s", root / split, len(bad), "\n  ".join(sorted(bad)))
                samples = [(p, y) for p, y in samples if not any(b.startswith(f"{p}: ") for b in bad)]
            random.Random(0).shuffle(samples)
            (tmp / split).mkdir()
            counts = []
            for shard in range(num_shards):
                members = samples[shard::num_shards]
                with tarfile.open(tmp / split / f"shard-{shard:06d}.tar", "w") as tar:
                    for key, (path, label) in zip(range(shard, len(samples), num_shards), members):
                        _add(tar, f"{key:08d}{Path(path).suffix.lower()}", Path(path).read_bytes())
                        _add(tar, f"{key:08d}.cls", str(label).encode())
                counts.append(len(members))
            index["splits"][split] = counts
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return out_dir


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _decode(data: bytes, channels: int) -> torch.Tensor:
    """uint8 (C, H, W) from encoded bytes; PIL for what torchvision cannot decode (BMP)."""
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                             mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
    except RuntimeError:
        image = pil_to_tensor(Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB"))
    return rgb_to_grayscale(image) if image.shape[0] != channels else image


class ShardedImageDataset(IterableDataset):
    """Yields ``(uint8 image, label)`` from the shards of one split, this rank's and worker's share only.

    A sample that does not decode stops the epoch naming it (``bad_images="error"``) or is skipped and
    logged (``"skip"``).

    ``rank``/``world_size`` are set by the DataModule in the main process (workers cannot ask the
    process group). The shard order is reshuffled every epoch when ``shuffle`` is true; with
    non-persistent workers the epoch advances only through ``set_epoch``.
    """

    def __init__(
        self, split_dir: str | Path, counts: list[int], channels: int = 3,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None, shuffle: bool = False, seed: int = 0,
        bad_images: str = "error",
    ) -> None:
        self.shards = [Path(split_dir) / f"shard-{i:06d}.tar" for i in range(len(counts))]
        self.counts = counts
        self.channels = channels
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.bad_images = bad_images
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_shards(self) -> list[int]:
        order = list(range(len(self.shards)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        """Samples this rank sees per epoch (Lightning sizes the epoch from it)."""
        return sum(self.counts[i] for i in self._rank_shards())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        worker = get_worker_info()
        shards = self._rank_shards()
        if worker is not None:
            shards = shards[worker.id :: worker.num_workers]
        self.epoch += 1  # persistent workers keep this copy, so the next epoch reshuffles
        for shard in shards:
            yield from self._read(self.shards[shard])

    def _read(self, shard: Path) -> Iterator[tuple[torch.Tensor, int]]:
        with tarfile.open(shard) as tar:
            pending: dict[str, dict[str, bytes]] = {}
            for member in tar:
                key, _, ext = member.name.partition(".")
                pending.setdefault(key, {})[ext] = tar.extractfile(member).read()
                sample = pending[key]
                if "cls" in sample and len(sample) == 2:
                    del pending[key]
                    data = next(v for k, v in sample.items() if k != "cls")
                    image = self._decode(data, f"{shard}:{key}")
                    if image is not None:
                        yield (self.transform(image) if self.transform else image), int(sample["cls"])

    def _decode(self, data: bytes, name: str) -> torch.Tensor | None:
        """The image, or None for an undecodable one under ``bad_images="skip"`` (logged)."""
        try:
            return _decode(data, self.channels)
        except (RuntimeError, OSError, ValueError, SyntaxError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if self.bad_images == "error":
                raise BadImageError(f"cannot decode image {name}: {reason}; rewrite the shards from a folder "
                                    "checked with `convnetlab-data action=check`, or set data.bad_images=skip") from e
            log.warning("skipping cannot decode image %s: %s (data.bad_images=skip)", name, reason)
            return None


class ShardSource:
    """``write_shards`` output as a DataModule source: ``root`` is the shard folder (with ``index.json``).

    Its datasets order themselves (the train shards are reshuffled per epoch with ``seed``, the same on
    every rank) and split themselves across ranks and workers, so ``ordered_by_sampler`` is False.
    ``bad_images`` applies to samples that fail to decode (files that were bad when the shards were
    written were left out then). Shards are read sequentially, so reduced-size decoding does not apply.
    """

    ordered_by_sampler = False

    def __init__(self, root: str | Path, seed: int = 0, bad_images: str = "error") -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise InputError(f"bad_images={bad_images} is not one of {', '.join(BAD_IMAGE_POLICIES)}")
        self.root = Path(root)
        self.seed = seed
        self.bad_images = bad_images
        self._classes: list[str] | None = None

    def _index(self) -> Mapping[str, Any]:
        path = self.root / INDEX
        if not path.is_file():
            raise MissingFileError(
                f"{path} does not exist; write shards with `convnetlab-data action=shard root=<folder> out=<dir>`"
            )
        return json.loads(path.read_text())

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = list(self._index()["classes"])
        return self._classes

    def prepare(self) -> None:
        pass

    def check_split(self, split: str) -> None:
        if split not in self._index()["splits"]:
            raise MissingFileError(f"{self.root} has no {split} shards; rewrite them from a folder with {split}/")

    def has_test_split(self) -> bool:
        return "test" in self._index()["splits"]

    def dataset(self, split: str, channels: int, transform: Callable | None,
                decode_size: int | None = None) -> ShardedImageDataset:
        self.check_split(split)
        counts = self._index()["splits"][split]
        return ShardedImageDataset(self.root / split, counts, channels, transform, shuffle=split == "train",
                                   seed=self.seed, bad_images=self.bad_images)

    def distribute(self, dataset: ShardedImageDataset, rank: int, world_size: int) -> None:
        dataset.rank, dataset.world_size = rank, world_size
        if len(dataset.shards) % world_size:
            log.warning("%d shards do not split evenly over %d ranks; ranks will run different step counts",
                        len(dataset.shards), world_size)

    def pixel_sample(self, dataset: ShardedImageDataset) -> Iterable[torch.Tensor]:
        """The first (about) 500 training samples in shard order."""
        return LazyImages(lambda: itertools.islice(iter(dataset), len(sample_indices(len(dataset)))))


class ShardedDataModule(ImageDataModule):
    """An ``ImageDataModule`` over ``write_shards`` output: same presets, eval protocols and batches as folders.

    ``root`` is the shard folder (with ``index.json``); ``seed`` the shard-order shuffle seed. The other
    arguments are ``ImageFolderDataModule``'s; ``in_memory`` does not apply and is refused.
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
        name: str = "shards",
        bad_images: str = "error",
        in_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        if in_memory:
            raise InputError("in_memory does not apply to shards (they are read sequentially); leave it false")
        self.seed = seed
        super().__init__(ShardSource(root, seed, bad_images),
                         Preprocessing.of(image_size, resize_size, channels, mean, std), name=name, **kwargs)
