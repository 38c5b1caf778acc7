"""LeNet-5 after LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to
document recognition", written here because torchvision has no LeNet.

Layout on a 32x32 input: C1 6@5x5 -> 28x28, S2 -> 14x14, C3 16@5x5 -> 10x10, S4 -> 5x5,
C5 120@5x5 -> 1x1 (a convolution, as in the paper), F6 84, output.

Two variants:
- ``classic`` stays close to the paper: scaled tanh ``1.7159 * tanh(2x/3)``, average pooling
  standing in for the paper's subsampling (which also had a trainable coefficient and bias per
  map; dropped here), and C3 wired by the paper's Table I so each C3 map sees only some S2 maps.
  60,806 effective parameters with in_channels=1, num_classes=10 (C3: 1,516). The C3 weight
  tensor still stores all 2,416 entries, the 900 unconnected ones held at zero by a mask, so
  ``sum(p.numel())`` reports 61,706.
- ``modern`` is the usual re-implementation: ReLU, max pooling, fully connected C3; 61,706
  parameters. It trains faster on CPU, hence the default in ``conf/model/lenet5.yaml``.

In both, the paper's Euclidean RBF output units are replaced by a linear layer giving logits for
cross-entropy, and ``width`` scales the convolution channels (C1, C3, C5) but not F6, whose 84
units came from the 7x12 character bitmaps of the RBF targets.
"""

from collections import OrderedDict
from typing import Literal

import torch
from torch import Tensor, nn

from convnetlab.errors import InputError

# Table I of the paper: row = S2 map, column = C3 map, "X" = connected.
_C3_TABLE = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


def c3_connection_mask() -> Tensor:
    """(16, 6) bool tensor, True where C3 map ``o`` reads S2 map ``i`` in the paper's Table I."""
    return torch.tensor([[row[o] == "X" for row in _C3_TABLE] for o in range(16)])


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3), chosen so f(+-1) = +-1."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class MaskedConv2d(nn.Conv2d):
    """Conv2d whose weight is multiplied by a fixed 0/1 (out, in) mask on every forward.

    Multiplying in forward zeroes the gradient of unconnected weights, and they start at zero,
    so they stay exactly zero under any optimizer (weight decay of zero is zero).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask: Tensor) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        if mask.shape != (out_channels, in_channels):
            raise InputError(f"mask shape {tuple(mask.shape)} != ({out_channels}, {in_channels})")
        self.register_buffer("mask", mask.to(self.weight.dtype)[:, :, None, None])
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 inputs; ``features.c1`` ... ``classifier.output`` follow the paper's names.

    ``c3_table`` defaults to True for ``classic`` and False for ``modern``; the table is defined
    for 6 -> 16 maps, so it needs ``width=1``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        variant: Literal["classic", "modern"] = "classic",
        width: float = 1.0,
        c3_table: bool | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("classic", "modern"):
            raise InputError(f"LeNet-5 variant must be 'classic' or 'modern', got {variant!r}")
        if width <= 0:
            raise InputError(f"width must be positive, got {width}")
        classic = variant == "classic"
        c3_table = classic if c3_table is None else c3_table
        if c3_table and width != 1.0:
            raise InputError("the C3 connection table is defined for width=1; pass c3_table=False")
        c1, c3, c5 = (max(1, round(c * width)) for c in (6, 16, 120))

        def act() -> nn.Module:
            return ScaledTanh() if classic else nn.ReLU(inplace=True)

        def pool() -> nn.Module:
            return nn.AvgPool2d(2) if classic else nn.MaxPool2d(2)

        conv3 = MaskedConv2d(c1, c3, 5, c3_connection_mask()) if c3_table else nn.Conv2d(c1, c3, 5)
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, c1, 5),
                act1=act(),
                s2=pool(),
                c3=conv3,
                act3=act(),
                s4=pool(),
                c5=nn.Conv2d(c3, c5, 5),
                act5=act(),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(f6=nn.Linear(c5, 84), act6=act(), output=nn.Linear(84, num_classes))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
