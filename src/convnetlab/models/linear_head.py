"""A new classifier on features: the model trained on saved embeddings (``data=embeddings model=linear_head``)."""

from __future__ import annotations

from torch import nn


def linear_head(num_classes: int, in_channels: int, input_size: int = 1, hidden: int = 0, dropout: float = 0.0,
                arch: str = "linear_head") -> nn.Sequential:
    """A new classifier on ``in_channels`` x ``input_size`` x ``input_size`` inputs (an embedding is a 1x1
    "image" with one channel per feature): flatten -> [linear -> ReLU ->] dropout -> linear.

    ``hidden=0`` is a plain linear classifier (the trainable twin of ``convnetlab-embed``'s linear probe);
    on image data it is a linear model on raw pixels.
    """
    features = in_channels * input_size * input_size
    layers: list[nn.Module] = [nn.Flatten()]
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU(inplace=True)]
        features = hidden
    return nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(features, num_classes))
