"""Pictures of filters, feature maps and attribution maps: tensors for loggers, PNGs for people.

Attribution maps are shown divided by their own 99th percentile (clipped at 1): a handful of
extreme gradient pixels would otherwise turn the rest of the heatmap black. Figures use matplotlib's
object API (no pyplot), so importing this module never switches a notebook's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

CMAP = "inferno"


def unit_map(attribution: Tensor) -> Tensor:
    """(H, W) map scaled to [0, 1] by its 99th percentile; an all-zero map stays zero."""
    attribution = attribution.detach().float().cpu().abs()
    top = torch.quantile(attribution.flatten(), 0.99)
    return (attribution / top).clamp(max=1.0) if top > 0 else torch.zeros_like(attribution)


def as_rgb(image: Tensor) -> Tensor:
    """uint8 (C, H, W) image (C = 1 or 3) -> float (3, H, W) in [0, 1]."""
    image = image.detach().cpu().float() / 255.0
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def colorize(attribution: Tensor) -> Tensor:
    """(H, W) attribution -> (3, H, W) colour heatmap in [0, 1]."""
    rgba = matplotlib.colormaps[CMAP](unit_map(attribution).numpy())
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def overlay(image: Tensor, attribution: Tensor, alpha: float = 0.55) -> Tensor:
    """The heatmap blended over the image: the dark end of the colour map dims unimportant pixels,
    so the important ones read as a lit-up spot."""
    return (1 - alpha) * as_rgb(image) + alpha * colorize(attribution)


def upscale(image: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour enlargement of a (C, H, W) image, so 5x5 kernels are visible in a logger."""
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def save_figure(fig: Figure, path: Path, dpi: int = 100, **kwargs) -> Path:
    """Every PNG of the project is written here: the parent folder is created, ``path`` returned.

    Build ``fig`` as ``matplotlib.figure.Figure`` (not pyplot): it needs no backend and is freed with
    its last reference, so library code never switches a notebook's backend or leaks open figures.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **kwargs)
    return path


def _show(ax: Axes, image: Tensor, title: str = "") -> None:
    """Show a (C, H, W) float image in [0, 1] (gray for one channel) without axes."""
    array = image.permute(1, 2, 0).numpy()
    ax.imshow(array[..., 0] if image.shape[0] == 1 else array, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def save_grid(grid: Tensor, path: Path, title: str, inches: float = 5.0) -> Path:
    """A filter or feature-map grid (C, H, W in [0, 1]) as a titled PNG."""
    fig = Figure(figsize=(inches, inches * grid.shape[1] / grid.shape[2] + 0.3))
    ax = fig.subplots()
    _show(ax, grid)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path, bbox_inches="tight")


def save_feature_maps(image: Tensor, grids: Mapping[str, Tensor], path: Path, title: str) -> Path:
    """The input image, then one grid of channel maps per layer, left to right."""
    fig = Figure(figsize=(1.5 + 3.2 * len(grids), 3.6))
    axes = fig.subplots(1, 1 + len(grids), squeeze=False, gridspec_kw={"width_ratios": [0.45] + [1.0] * len(grids)})
    _show(axes[0, 0], as_rgb(image), "input")
    for ax, (name, grid) in zip(axes[0, 1:], grids.items()):
        _show(ax, grid, name)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, bbox_inches="tight")


def save_heatmaps(images: Tensor, maps: Tensor, captions: Sequence[str], path: Path, title: str) -> Path:
    """One column per image: the image, its heatmap beside it, and the heatmap over it."""
    n = len(images)
    fig = Figure(figsize=(1.45 * n, 4.3))
    axes = fig.subplots(3, n, squeeze=False)
    for k in range(n):
        _show(axes[0, k], as_rgb(images[k]), captions[k])
        _show(axes[1, k], colorize(maps[k]))
        _show(axes[2, k], overlay(images[k], maps[k]))
    for row, label in enumerate(("image", "map", "overlay")):
        axes[row, 0].text(-0.1, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, bbox_inches="tight")


def save_sanity(
    images: Tensor, results: Mapping[str, object], path: Path, threshold: float, n_images: int = 4
) -> Path:
    """Randomisation test at a glance: per method, trained vs randomised heatmaps and the similarity."""
    n = min(n_images, len(images))
    fig = Figure(figsize=(1.1 * (1 + 2 * n), 1.3 * len(results)))
    axes = fig.subplots(len(results), 1 + 2 * n, squeeze=False)
    for row, (name, result) in enumerate(results.items()):
        verdict = "FLAGGED" if result.flagged else "ok"
        axes[row, 0].text(0.0, 0.5, f"{name}\nSpearman {result.spearman:.2f}\nPearson {result.pearson:.2f}\n{verdict}",
                          fontsize=7, va="center", color="crimson" if result.flagged else "black")
        axes[row, 0].axis("off")
        for k in range(n):
            _show(axes[row, 1 + 2 * k], colorize(result.trained[k]), "trained" if row == 0 else "")
            _show(axes[row, 2 + 2 * k], colorize(result.randomized[k]), "randomised" if row == 0 else "")
    fig.suptitle(f"Model-parameter randomisation test (flagged: rank similarity > {threshold:g})", fontsize=9)
    return save_figure(fig, path, bbox_inches="tight")
