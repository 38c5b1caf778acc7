"""A seeded, stratified training subset: the same ``n`` images of each class for every run with the same seed.

``data.train_per_class=N`` (any class-folder DataModule) keeps N training images per class, drawn with the
run's seed, so a CNN (``convnetlab-train``) and a classic pipeline (``convnetlab-baseline``) with the same
seed and data overrides train on exactly the same images. Val and test are never subsampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from convnetlab.errors import InputError


def per_class_indices(labels: Sequence[int], n: int, seed: int) -> list[int]:
    """Indices of ``n`` items of every class in ``labels``, drawn without replacement with ``seed``, sorted."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if n < 1 or n > counts.min():
        smallest = classes[counts.argmin()]
        raise InputError(f"data.train_per_class={n}: choose 1..{counts.min()} (class {smallest} has "
                         f"{counts.min()} training images), or null for all of them.")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c in classes]
    return sorted(int(i) for i in np.concatenate(chosen))


def keep_per_class(dataset: Dataset, n: int, seed: int) -> None:
    """Restrict a class-folder dataset (one with ``samples`` and ``keep``) to ``n`` images per class."""
    if not hasattr(dataset, "keep"):
        raise InputError(f"data.train_per_class needs class-folder data; {type(dataset).__name__} cannot be "
                         "subsampled (leave data.train_per_class=null).")
    dataset.keep(per_class_indices([label for _, label in dataset.samples], n, seed))
