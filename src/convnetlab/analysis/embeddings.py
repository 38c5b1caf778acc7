"""Embeddings: a trained network's pre-classifier features, and how well simple classifiers read them.

The embedding of an image is the input of the classifier head (``fc`` / ``classifier``, see
``models.classifier_name``): global-pooled conv features for ResNet/GoogLeNet, the flattened pooled
maps for AlexNet/VGG (the input of their fc6), C5 for LeNet-5. It is captured at the head's input,
so it is exactly what the head sees, including every input convention (normalisation,
GoogLeNet's ``transform_input``).

Two cheap readouts measure how reusable the features are without training the network: a linear probe
(scikit-learn logistic regression on standardised features) and a cosine k-NN. ``models.linear_head`` is the
trainable counterpart for ``convnetlab-train data=embeddings model=linear_head``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from convnetlab.analysis.hooks import capture_outputs
from convnetlab.errors import InputError
from convnetlab.models import classifier_name


def head_name(module: nn.Module) -> str:
    """The name of the classifier head in an ``ImageClassifier``'s backbone (whose input is the embedding)."""
    arch = module.hparams.backbone.get("arch", "")
    try:
        return classifier_name(arch, module.backbone)
    except ValueError:
        raise InputError(f"embeddings need a model-zoo backbone with a classifier head, not {arch!r}") from None


@torch.no_grad()
def extract_embeddings(
    module: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float32, labels (N,) int64) for ``dataset`` in order, with the model in eval mode."""
    head = head_name(module)
    was_training = module.training
    module.eval().to(device)
    features, labels = [], []
    try:
        with capture_outputs(module.backbone, [head], inputs=True) as seen:
            for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                module(images.to(device))
                features.append(torch.flatten(seen[head], 1).float().cpu())
                labels.append(torch.as_tensor(targets))
    finally:
        module.train(was_training)
    return torch.cat(features).numpy(), torch.cat(labels).long().numpy()


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Top-1 of an L2-regularised logistic regression fitted on standardised train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 5) -> float:
    """Top-1 of a cosine-similarity k-NN whose votes are weighted by similarity (ties then rarely happen)."""
    train = nn.functional.normalize(torch.as_tensor(train_x, dtype=torch.float32), dim=1)
    test = nn.functional.normalize(torch.as_tensor(test_x, dtype=torch.float32), dim=1)
    labels = torch.as_tensor(train_y, dtype=torch.long)
    similarity, index = (test @ train.T).topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(test), int(labels.max()) + 1).scatter_add_(1, labels[index], similarity)
    return float((votes.argmax(dim=1).numpy() == test_y).mean())


