"""What the convolutions hold: kernel grids and feature maps, as image tensors in [0, 1].

Tiles are min-max scaled one by one (a kernel's sign pattern is what matters, not its norm), so a
grid shows structure even when layers have very different weight scales.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from convnetlab.analysis.hooks import capture_outputs
from convnetlab.errors import InputError


def conv_layers(backbone: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(name, layer) of every ``nn.Conv2d``, in registration (roughly forward) order."""
    return [(name, m) for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]


def resolve_layers(backbone: nn.Module, names: list[str]) -> list[str]:
    """Check that every name is a sub-module; the error lists the conv layers to choose from."""
    known = dict(backbone.named_modules())
    unknown = [n for n in names if n not in known or not n]
    if unknown:
        valid = ", ".join(name for name, _ in conv_layers(backbone))
        raise InputError(f"no layer named {', '.join(map(repr, unknown))} in the model; conv layers are: {valid}")
    return names


def scale_each(tiles: Tensor) -> Tensor:
    """Min-max scale every tile (dim 0) to [0, 1]; a constant tile becomes 0.5."""
    flat = tiles.flatten(1).float()
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.full_like(flat, 0.5))
    return scaled.view_as(tiles)


def tile(images: Tensor, ncol: int | None = None, pad: int = 1, pad_value: float = 1.0) -> Tensor:
    """Arrange (N, C, h, w) as one (C, rows*(h+pad)+pad, ncol*(w+pad)+pad) image, row by row."""
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    rows = math.ceil(n / ncol)
    grid = images.new_full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value)
    for i, image in enumerate(images):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top:top + h, left:left + w] = image
    return grid


def filter_grid(weight: Tensor, max_filters: int = 64, max_inputs: int = 16) -> Tensor:
    """Kernels of a conv weight (out, in, kh, kw) as an image grid in [0, 1].

    A stem on RGB (or grayscale) input gives one colour (or gray) tile per filter; any other layer
    one grayscale tile per (filter, input channel) pair: a row per filter, a column per input channel.
    """
    weight = weight.detach().float().cpu()[:max_filters]
    if weight.shape[1] in (1, 3):
        return tile(scale_each(weight))
    weight = weight[:, :max_inputs]
    out, inp, kh, kw = weight.shape
    return tile(scale_each(weight.reshape(out * inp, 1, kh, kw)), ncol=inp)


@torch.no_grad()
def feature_maps(backbone: nn.Module, inputs: Tensor, layers: list[str]) -> dict[str, Tensor]:
    """Outputs of the named sub-modules for normalised ``inputs``, captured by temporary hooks.

    Outputs are cloned because a following in-place ReLU would otherwise rewrite them. A layer that
    did not run, or returned no tensor, is missing from the result (see ``capture_outputs``).
    """
    with capture_outputs(backbone, resolve_layers(backbone, layers), clone=True) as captured:
        backbone(inputs)
    return captured


def feature_map_grid(activation: Tensor, max_channels: int = 32) -> Tensor:
    """One image's (C, h, w) activation as a grayscale grid, one min-max scaled tile per channel."""
    maps = activation.detach().float().cpu()[:max_channels].unsqueeze(1)
    return tile(scale_each(maps))


@torch.no_grad()
def default_feature_layers(backbone: nn.Module, inputs: Tensor, count: int = 3) -> list[str]:
    """``count`` evenly spaced conv layers (first and last included) whose outputs are still maps
    (more than one pixel), so a feature-map picture has something to show."""
    with capture_outputs(backbone, [name for name, _ in conv_layers(backbone)]) as outputs:
        backbone(inputs[:1])
    names = [name for name, _ in conv_layers(backbone) if name in outputs and outputs[name].shape[-1] > 1]
    if len(names) <= count:
        return names
    step = (len(names) - 1) / (count - 1) if count > 1 else 0
    return [names[round(i * step)] for i in range(count)]
