"""DesignNet: one small CNN skeleton whose parts can be swapped one at a time, to test design claims.

stem (3x3 conv) -> three stages of ``blocks`` (2x2 max pool between stages, so the last maps are
input/4) -> head. Everything else
stays fixed while one choice changes, so a difference in accuracy is the choice's:

- ``block``: ``conv`` one kxk conv; ``stack3`` (k-1)/2 stacked 3x3 convs, the same receptive field
  as one kxk (VGG's argument); ``plain`` two 3x3 convs; ``residual`` the same two convs with an
  identity skip (ResNet's BasicBlock; a 1x1 projection where the width changes); ``inception``
  GoogLeNet's module with 1x1 reductions; ``inception_naive`` the same branches without them.
- ``depth`` (``plain``/``residual`` only): weighted layers as in the ResNet paper's CIFAR nets,
  6n + 2 = stem + 3 stages x n blocks x 2 convs + classifier (8, 20, 32, ...).
- ``norm``: BatchNorm after every conv. ``activation``: relu | tanh | sigmoid.
- ``head``: ``gap`` global average pooling -> linear (NIN/GoogLeNet/ResNet); ``fc`` flatten the
  last feature map -> hidden -> hidden -> classes (AlexNet/VGG).

Init: He-normal for ReLU, Glorot-uniform (with the activation's gain) for tanh/sigmoid, the usual
pairing for each (He et al. 2015; Glorot & Bengio 2010).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from convnetlab.errors import InputError

BLOCKS = ("conv", "stack3", "plain", "residual", "inception", "inception_naive")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def conv_unit(c_in: int, c_out: int, kernel: int, norm: bool, activation: str) -> nn.Sequential:
    """conv (same padding) -> [BatchNorm] -> activation; the conv has no bias when BN follows."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class TwoConvBlock(nn.Module):
    """Two 3x3 convs, with an identity (or 1x1 projection) skip added before the last activation
    when ``residual``; without it, the same layers as a plain stack."""

    def __init__(self, c_in: int, c_out: int, norm: bool, activation: str, residual: bool) -> None:
        super().__init__()
        self.conv1 = conv_unit(c_in, c_out, 3, norm, activation)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=not norm),
                                   *([nn.BatchNorm2d(c_out)] if norm else []))
        self.residual = residual
        self.shortcut = nn.Identity()
        if residual and c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=not norm), *([nn.BatchNorm2d(c_out)] if norm else []))
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return self.act(out + self.shortcut(x) if self.residual else out)


class InceptionBlock(nn.Module):
    """GoogLeNet's module: 1x1, 3x3, 5x5 and 3x3-max-pool branches, concatenated. With ``reduce``,
    1x1 convs shrink the input of the 3x3/5x5 branches and project the pool branch (Szegedy et al.
    2014, Fig. 2b); without, the "naive" module of Fig. 2a whose pool branch keeps all input channels.
    Branch widths follow inception3a's proportions: 1x1 1/4, 3x3 1/2, 5x5 1/8, pool 1/8 of ``c_out``."""

    def __init__(self, c_in: int, c_out: int, norm: bool, activation: str, reduce: bool) -> None:
        super().__init__()
        c1, c3, c5 = c_out // 4, c_out // 2, c_out // 8
        unit = lambda i, o, k: conv_unit(i, o, k, norm, activation)  # noqa: E731
        self.branch1 = unit(c_in, c1, 1)
        if reduce:
            self.branch3 = nn.Sequential(unit(c_in, max(1, c3 * 3 // 4), 1), unit(max(1, c3 * 3 // 4), c3, 3))
            self.branch5 = nn.Sequential(unit(c_in, max(1, c5 // 2), 1), unit(max(1, c5 // 2), c5, 5))
            self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), unit(c_in, c_out - c1 - c3 - c5, 1))
            self.out_channels = c_out
        else:
            self.branch3, self.branch5 = unit(c_in, c3, 3), unit(c_in, c5, 5)
            self.branch_pool = nn.MaxPool2d(3, stride=1, padding=1)
            self.out_channels = c1 + c3 + c5 + c_in

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


def make_block(block: str, c_in: int, c_out: int, kernel: int, norm: bool, activation: str) -> tuple[nn.Module, int]:
    """One block of type ``block`` and its output channels."""
    if block == "conv":
        return conv_unit(c_in, c_out, kernel, norm, activation), c_out
    if block == "stack3":
        units = [conv_unit(c_in if i == 0 else c_out, c_out, 3, norm, activation) for i in range((kernel - 1) // 2)]
        return nn.Sequential(*units), c_out
    if block in ("plain", "residual"):
        return TwoConvBlock(c_in, c_out, norm, activation, residual=block == "residual"), c_out
    module = InceptionBlock(c_in, c_out, norm, activation, reduce=block == "inception")
    return module, module.out_channels


def _check(block: str, kernel: int, activation: str, head: str, depth: int | None) -> None:
    if block not in BLOCKS:
        raise InputError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if head not in ("gap", "fc"):
        raise InputError(f"head must be gap or fc, got {head!r}")
    if kernel < 3 or kernel % 2 == 0:
        raise InputError(f"kernel must be odd and >= 3, got {kernel}")
    if depth is not None and (block not in ("plain", "residual") or depth < 8 or (depth - 2) % 6):
        raise InputError(f"depth={depth} needs block=plain|residual and depth = 6n + 2 (8, 14, 20, 26, 32, ...)")


class DesignNet(nn.Module):
    """See the module docstring. ``features`` is the conv body, ``classifier`` the head."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        input_size: int = 32,
        widths: tuple[int, ...] = (16, 32, 64),
        block: str = "conv",
        kernel: int = 3,
        blocks_per_stage: int = 1,
        depth: int | None = None,
        norm: bool = True,
        activation: str = "relu",
        head: str = "gap",
        hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check(block, kernel, activation, head, depth)
        n_blocks = (depth - 2) // 6 if depth is not None else blocks_per_stage
        layers: list[nn.Module] = [conv_unit(in_channels, widths[0], 3, norm, activation)]
        channels = widths[0]
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(n_blocks):
                module, channels = make_block(block, channels, width, kernel, norm, activation)
                layers.append(module)
        self.features = nn.Sequential(*layers)
        act = ACTIVATIONS[activation]
        if head == "gap":
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        else:
            side = input_size // 2 ** (len(widths) - 1)
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(channels * side * side, hidden), act(), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), act(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self._init(activation)

    def _init(self, activation: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                if activation == "relu":
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(activation))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
