"""DataLoaders and batch sizes: one loader recipe for every split and source, and the train batch rules."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from functools import partial

import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, Sampler

from convnetlab.data.folder import collate_present

log = logging.getLogger(__name__)


def worker_init(worker_id: int, rank: int = 0) -> None:
    """DataLoader workers ignore SIGTERM and SIGINT: a cluster's preemption (or Ctrl-C) signals the whole
    process group, and the main process, which checkpoints at the next batch boundary and then shuts its
    workers down, must not see them die first. Seeds workers as Lightning's own ``worker_init_fn`` does."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):  # pl.seed_everything(workers=True)
        pl_worker_init_function(worker_id, rank)


def make_loader(
    dataset: Dataset, batch_size: int, *, num_workers: int, pin_memory: bool, persistent_workers: bool, seed: int,
    sampler: Sampler | None = None, drop_last: bool = False, collate_fn: Callable | None = None, rank: int = 0,
) -> DataLoader:
    """Batches of ``dataset`` in its own order (or ``sampler``'s); ``None`` items (skipped bad images) are dropped.

    Worker seeds come from a generator seeded with ``seed``, not from the global RNG, whose position
    differs on resume; ``rank`` is the process's global rank (see :func:`worker_init`).
    """
    return DataLoader(
        dataset,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        batch_size=batch_size,
        shuffle=False,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=collate_fn or collate_present,
        worker_init_fn=partial(worker_init, rank=rank) if num_workers > 0 else None,
    )


def train_batch_size(size: int, batch_size: int, name: str) -> int:
    """Few-label train sets may be smaller than a batch: then each step sees the whole set."""
    if size < batch_size:
        log.info("%s: %d training images, fewer than batch_size=%d; one batch per epoch", name, size, batch_size)
    return min(batch_size, size)


def drop_lone_last(size: int, batch_size: int) -> bool:
    """A lone last image is dropped, since BatchNorm cannot train on a batch of one."""
    return size % batch_size == 1
