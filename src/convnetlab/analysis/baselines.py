"""Pre-CNN baselines on the same data as the CNNs: HOG or raw pixels, then a linear SVM, an RBF SVM or a forest.

The images are the DataModule's eval view (the centre-crop eval transform, no augmentation; train included),
as uint8 ``(C, H, W)`` turned into floats in [0, 1]. scikit-image computes the HOG descriptors
(``skimage.feature.hog``, one per image, all channels: ``channel_axis``), scikit-learn fits and scores.

Methods (``convnetlab-baseline method=...``):

- ``hog_svm``: HOG + ``LinearSVC`` (Dalal & Triggs 2005).
- ``hog_rf``: HOG + ``RandomForestClassifier``.
- ``pixels_rf``: ``RandomForestClassifier`` on the raw pixels.
- ``pixels_svm``: ``SVC`` with an RBF kernel on the raw pixels (the MNIST baseline of the 1990s).

``params`` counts the numbers a fitted model keeps to predict: for ``LinearSVC`` its weights and biases
(classes x features + classes); for the RBF ``SVC`` its support vectors (support vectors x feature dim)
plus their dual coefficients and the biases; for a forest its tree nodes (the sum of ``node_count`` over
trees; each node holds a split or a leaf's class distribution). HOG itself learns nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.feature import hog
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, top_k_accuracy_score
from sklearn.svm import SVC, LinearSVC
from torch import Tensor

from convnetlab.errors import InputError

# method -> (features, classifier); the classifier names the config section holding its hyperparameters.
METHODS: dict[str, tuple[str, str]] = {
    "hog_svm": ("hog", "linear_svm"),
    "hog_rf": ("hog", "forest"),
    "pixels_rf": ("pixels", "forest"),
    "pixels_svm": ("pixels", "rbf_svm"),
}


def check_method(method: str) -> tuple[str, str]:
    if method not in METHODS:
        raise InputError(f"method={method} is not one of {', '.join(METHODS)}")
    return METHODS[method]


def as_arrays(dataset: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C, H, W)`` uint8 images and ``(N,)`` labels of a dataset of ``(uint8 tensor, label)`` items
    (``None`` items, skipped bad images, are left out)."""
    items = [item for item in dataset if item is not None]
    if not items:
        raise InputError("the split has no images")
    images = np.stack([_numpy(image) for image, _ in items])
    return images, np.array([int(label) for _, label in items])


def _numpy(image: Tensor | np.ndarray) -> np.ndarray:
    return image.numpy() if isinstance(image, Tensor) else np.asarray(image)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Raw pixels in [0, 1], one row per image."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def hog_features(images: np.ndarray, orientations: int = 9, pixels_per_cell: int = 8, cells_per_block: int = 2,
                 block_norm: str = "L2-Hys") -> np.ndarray:
    """``skimage.feature.hog`` of every ``(C, H, W)`` image (colour: the strongest channel's gradient per pixel)."""
    channel_axis = 0 if images.shape[1] > 1 else None
    rows = [hog(image if channel_axis is not None else image[0], orientations=orientations,
                pixels_per_cell=(pixels_per_cell, pixels_per_cell), cells_per_block=(cells_per_block, cells_per_block),
                block_norm=block_norm, channel_axis=channel_axis, feature_vector=True)
            for image in images.astype(np.float32) / 255.0]
    return np.stack(rows).astype(np.float32)


def features(kind: str, images: np.ndarray, hog_options: Mapping[str, Any]) -> np.ndarray:
    return hog_features(images, **hog_options) if kind == "hog" else pixel_features(images)


def make_classifier(kind: str, options: Mapping[str, Any], seed: int) -> ClassifierMixin:
    """The scikit-learn estimator of ``kind`` (``linear_svm`` | ``rbf_svm`` | ``forest``) with ``options``."""
    options = dict(options)
    if kind == "linear_svm":
        return LinearSVC(random_state=seed, **options)
    if kind == "rbf_svm":
        return SVC(kernel="rbf", random_state=seed, **options)
    if kind == "forest":
        return RandomForestClassifier(random_state=seed, **options)
    raise InputError(f"unknown classifier {kind}; one of linear_svm, rbf_svm, forest")


def count_params(model: ClassifierMixin) -> int:
    """What the fitted model stores to predict (see the module docstring)."""
    if isinstance(model, LinearSVC):
        return int(model.coef_.size + model.intercept_.size)
    if isinstance(model, SVC):
        return int(model.support_vectors_.size + model.dual_coef_.size + model.intercept_.size)
    if isinstance(model, RandomForestClassifier):
        return int(sum(tree.tree_.node_count for tree in model.estimators_))
    raise TypeError(f"no parameter count for {type(model).__name__}")


def _scores(model: ClassifierMixin, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x) if hasattr(model, "predict_proba") else model.decision_function(x)


@dataclass
class Split:
    images: np.ndarray
    labels: np.ndarray


def fit_and_score(method: str, splits: Mapping[str, Split], num_classes: int, hog_options: Mapping[str, Any],
                  classifier_options: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Fit ``method`` on ``splits['train']``; top-1/top-5 on every other split, parameters, timings.

    ``train_seconds`` covers the train features and the fit, as a CNN's covers its epochs."""
    kind, classifier = check_method(method)
    start = time.perf_counter()
    train_x = features(kind, splits["train"].images, hog_options)
    model = make_classifier(classifier, classifier_options, seed)
    model.fit(train_x, splits["train"].labels)
    train_seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {"train_seconds": train_seconds, "params": count_params(model), "gflops": None,
                               "features": int(train_x.shape[1]), "train_images": len(train_x)}
    labels = np.arange(num_classes)
    for split, data in splits.items():
        if split == "train":
            continue
        start = time.perf_counter()
        x = features(kind, data.images, hog_options)
        predicted = model.predict(x)
        metrics["infer_images_per_s"] = len(x) / max(time.perf_counter() - start, 1e-9)  # features included
        metrics[f"{split}/acc1"] = float(accuracy_score(data.labels, predicted))
        if num_classes > 5 and len(model.classes_) == num_classes:
            metrics[f"{split}/acc5"] = float(top_k_accuracy_score(data.labels, _scores(model, x), k=5, labels=labels))
    return metrics
