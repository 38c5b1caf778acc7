"""The default run's network and a batch of its shape, for the benchmarks that time single steps."""

from __future__ import annotations

import torch

from convnetlab.models import build_model


def default_model_and_batch(batch: int = 64) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """ResNet-18 width 0.25 with the CIFAR stem for 10 classes at 32 px, channels-last (what the memory-format
    probe picks for it on this project's machine), and a seeded random batch of images and labels."""
    torch.manual_seed(0)
    model = build_model(arch="resnet18", num_classes=10, in_channels=3, input_size=32, width=0.25)
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    return model.to(memory_format=torch.channels_last), images, torch.randint(0, 10, (batch,))
