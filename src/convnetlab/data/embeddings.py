"""Saved embeddings as a dataset: train a new head on ``convnetlab-embed`` output without touching images.

``root`` is an embed run dir holding ``embeddings_{train,val,test}.npz`` (val falls back to test). Each
item is ``(features (D,) float32, label)``. To the rest of the framework an embedding is a 1x1 "image"
with ``feature_dim`` channels, so ``channels``/``image_size`` feed the model configs as usual
(``model=linear_head``). ``mean``/``std`` are empty: ``ImageClassifier`` then passes the features through
unnormalised, exactly as the classifier head of the source network saw them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from convnetlab.errors import InputError, MissingFileError

SPLITS = ("train", "val", "test")


def embeddings_file(root: str | Path, split: str) -> Path:
    return Path(root) / f"embeddings_{split}.npz"


def save_embeddings(path: str | Path, features: np.ndarray, labels: np.ndarray, paths: Sequence[str],
                    classes: Sequence[str]) -> Path:
    """One ``.npz`` per split: features, labels, image paths and class names (no pickles inside)."""
    np.savez(path, features=features.astype(np.float32), labels=labels.astype(np.int64),
             paths=np.asarray(paths, dtype=str), classes=np.asarray(classes, dtype=str))
    return Path(path)


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays written by :func:`save_embeddings`."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in ("features", "labels", "paths", "classes")}


class EmbeddingsDataModule(pl.LightningDataModule):
    """Batches of saved embeddings and labels.

    Args:
        root: a ``convnetlab-embed`` output dir.
        num_classes, feature_dim: as printed by ``convnetlab-embed``; checked against the files (configs
            need them before any file is read, to size the model).
        per_class_train: keep only the first N training embeddings of each class (few-label runs; the
            same images as ``data.per_class_train=N`` for the generated datasets).
        channels, image_size: must be ``feature_dim`` and 1 (the config derives them).
    """

    def __init__(
        self,
        root: str | Path,
        num_classes: int,
        feature_dim: int,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        per_class_train: int | None = None,
        channels: int | None = None,
        image_size: int = 1,
        name: str = "embeddings",
    ) -> None:
        super().__init__()
        if not embeddings_file(root, "train").is_file():
            raise MissingFileError(f"{embeddings_file(root, 'train')} does not exist; set data.root to a "
                                    "convnetlab-embed output dir")
        if (channels or feature_dim) != feature_dim or image_size != 1:
            raise InputError("embeddings are 1x1 inputs with feature_dim channels; leave data.channels and "
                             "data.image_size at their defaults")
        self.root, self.name = Path(root), name
        self.num_classes, self.feature_dim = int(num_classes), int(feature_dim)
        self.channels, self.image_size = self.feature_dim, 1
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.per_class_train = num_workers, per_class_train
        self.datasets: dict[str, TensorDataset] = {}
        self.classes: list[str] = []

    def _load(self, split: str) -> TensorDataset:
        path = embeddings_file(self.root, split if embeddings_file(self.root, split).is_file() else "test")
        data = load_embeddings(path)
        features, labels = data["features"], data["labels"]
        classes = [str(c) for c in data["classes"]]
        if (len(classes), features.shape[1]) != (self.num_classes, self.feature_dim):
            raise InputError(f"{path} has {len(classes)} classes and {features.shape[1]} features; set "
                             f"data.num_classes={len(classes)} data.feature_dim={features.shape[1]}")
        if split == "train" and self.per_class_train:
            rank = np.zeros(len(labels), dtype=np.int64)  # position of each item within its class
            for label in np.unique(labels):
                rank[labels == label] = np.arange((labels == label).sum())
            features, labels = features[rank < self.per_class_train], labels[rank < self.per_class_train]
        self.classes = classes
        return TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                self.datasets[split] = self._load(split)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=min(batch_size, len(self.datasets[split])),
                          shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
