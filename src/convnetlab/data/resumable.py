"""Training data whose order and augmentation depend only on (seed, epoch, position): resumable anywhere.

A resumed run must see exactly the batches the interrupted one had left, augmented exactly as they would
have been. Neither holds with a plain shuffled DataLoader: its permutation and the augmentation draws
come from global RNG streams (and persistent workers' own streams) whose position at a resume differs.
So the permutation of epoch ``e`` is drawn from a generator seeded with ``(seed, e)``, the sampler hands
out keys ``e * n + index`` instead of indices, and every item seeds its augmentation from its key.
A resume then only needs the epoch and the number of batches already trained, which the datamodule
stores in every checkpoint (``ImageFolderDataModule.state_dict``).

:class:`RepeatedAugmentationSampler` (``data.repeated_augmentations=k``, Hoffer et al. 2020; torchvision's
``RASampler`` as the reference for its behaviour) hands out each index k times per epoch under k
different keys (so k different augmentations), split across ranks by the sampler itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler, get_worker_info

# An epoch of the repeated-augmentation sampler: every image k times, or as many items as the dataset has.
RA_EPOCH_LENGTHS = ("repeats", "dataset")


class EpochPermutationSampler(Sampler[int]):
    """Keys ``epoch * n + i`` over a per-epoch permutation of ``range(n)`` seeded by ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before each epoch. ``resume_at(epoch, items)`` makes the next
    iteration start ``items`` into that epoch's permutation (once); past the end it starts the next epoch.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self._skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip = epoch, 0

    def resume_at(self, epoch: int, items: int) -> None:
        self.epoch, self._skip = (epoch + 1, 0) if items >= self.n else (epoch, items)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**62)
        order = torch.randperm(self.n, generator=generator)[self._skip:]
        self._skip = 0
        return iter((order + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return self.n


class RepeatedAugmentationSampler(DistributedSampler):
    """Repeated augmentation: each index ``repeats`` times per epoch, each copy under its own key.

    Epoch ``e``'s permutation of ``range(n)`` is drawn from ``(seed, e)`` as in
    :class:`EpochPermutationSampler`; every index ``i`` in it is repeated ``repeats`` times in a row, copy
    ``c`` as the key ``(e * repeats + c) * n + i`` (so ``key % n == i`` and the copies are augmented
    differently; keys never repeat across epochs). The sequence is padded by wrapping around to a multiple
    of ``num_replicas`` and rank ``r`` takes every ``num_replicas``-th item from ``r``: with as many ranks
    as repeats the k copies of an image go to k different ranks, on one process they sit side by side in
    one batch (torchvision's ``RASampler`` does the same).

    ``epoch_length="repeats"`` (default): an epoch hands out every copy, ``ceil(n * repeats / num_replicas)``
    items per rank. ``"dataset"``: torchvision's ``RASampler`` length, each rank stops after
    ``n // 256 * 256 / num_replicas`` items, so an epoch costs as much as one without repetition and
    covers about ``1 / repeats`` of the images (``repeats`` times each).

    A ``DistributedSampler`` subclass, so Lightning neither wraps nor replaces it under DDP (it splits by
    rank itself) and calls ``set_epoch``. ``resume_at(epoch, items)`` counts this rank's items.
    """

    def __init__(self, n: int, seed: int, repeats: int, num_replicas: int = 1, rank: int = 0,
                 epoch_length: str = "repeats") -> None:  # no super().__init__: it wants a dataset and a process group
        if repeats < 1 or n < 1:
            raise ValueError(f"repeated augmentation needs repeats >= 1 and a non-empty dataset (got {repeats}, {n})")
        if epoch_length not in RA_EPOCH_LENGTHS:
            raise ValueError(f"epoch_length={epoch_length!r}; choose one of {', '.join(RA_EPOCH_LENGTHS)}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} replicas")
        self.n, self.seed, self.repeats = n, seed, repeats
        self.num_replicas, self.rank, self.shuffle, self.drop_last = num_replicas, rank, True, False
        self.epoch, self._skip = 0, 0
        self.num_samples = math.ceil(n * repeats / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.length = self.num_samples
        if epoch_length == "dataset":
            self.length = min(self.num_samples, max(1, n // 256 * 256 // num_replicas))

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip = epoch, 0

    def resume_at(self, epoch: int, items: int) -> None:
        self.epoch, self._skip = (epoch + 1, 0) if items >= self.length else (epoch, items)

    def epoch_keys(self) -> torch.Tensor:
        """This rank's keys of the current epoch, from its start."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**62)
        order = torch.randperm(self.n, generator=generator)
        copies = torch.arange(self.repeats).repeat(self.n)              # 0..k-1, 0..k-1, ...
        keys = (self.epoch * self.repeats + copies) * self.n + order.repeat_interleave(self.repeats)
        keys = torch.cat([keys] * math.ceil(self.total_size / len(keys)))[: self.total_size]  # wrap-around padding
        return keys[self.rank:: self.num_replicas][: self.length]

    def __iter__(self) -> Iterator[int]:
        keys = self.epoch_keys()[self._skip:]
        self._skip = 0
        return iter(keys.tolist())

    def __len__(self) -> int:
        return self.length


class KeyedAugmentation(Dataset):
    """``dataset[key % n]`` with the torch RNG seeded from ``(seed, key)`` while the item is made, so its
    random crop/flip/erasing is a function of the key. In the main process the global RNG is restored
    afterwards (the model's dropout keeps its own stream); a worker process only augments, so no restore."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> Any:
        with keyed_rng(self.seed, key):
            return self.dataset[key % len(self.dataset)]


@contextmanager
def keyed_rng(seed: int, key: int) -> Iterator[None]:
    """Seed the torch CPU generator from ``(seed, key)`` for the block; restored afterwards in the main process
    (a worker process only augments, so no restore). Streaming data keys its items the same way."""
    # The CPU generator alone (transforms draw from it): torch.manual_seed also reseeds every device
    # and costs ~180 us, which at 128 items per batch made data loading 2.5x slower.
    rng = torch.default_generator
    saved = rng.get_state() if get_worker_info() is None else None
    rng.manual_seed((seed * 2_654_435_761 + key) % 2**62)
    try:
        yield
    finally:
        if saved is not None:
            rng.set_state(saved)
