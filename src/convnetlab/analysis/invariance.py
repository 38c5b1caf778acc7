"""Invariance probe: test top-1 under growing translation, scaling, rotation, squeezing, stroke width
and noise, the six distortions LeNet-5 was shown to tolerate (LeCun et al. 1998).

Transforms act on uint8 (N, C, H, W) batches and return uint8. Magnitude 0 returns the input
unchanged, so the first point of every curve is the plain test accuracy. Units:

- ``translate``: pixels, right and down at once; ``rotate``: degrees (counter-clockwise);
- ``scale``: zoom factor 1 + m; ``squeeze``: width times 1 + m, height divided by it (area kept);
- ``stroke``: m pixels of grayscale dilation (m > 0, thicker strokes) or erosion (m < 0). The
  foreground is the side away from the background: the median of the image's border pixels
  (grayscale); below mid-gray (128) strokes are bright (digits: white on black), else dark;
- ``noise``: additive Gaussian with std m in uint8 units, rounded and clamped to 0..255.

Pixels moved in from outside the frame take the border median colour, not black, so a geometric
transform does not also paint a frame.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from matplotlib.figure import Figure
from torch import Tensor

from convnetlab.analysis.plots import save_figure
from convnetlab.errors import InputError

Transform = Callable[[Tensor, float, torch.Generator], Tensor]
CSV_COLUMNS = ("ckpt", "model", "transform", "magnitude", "acc1")


def border_median(image: Tensor) -> list[float]:
    """Per-channel median of the outermost pixels of one (C, H, W) image: its background colour."""
    border = torch.cat([image[:, 0], image[:, -1], image[:, 1:-1, 0], image[:, 1:-1, -1]], dim=1)
    return border.float().median(dim=1).values.tolist()


def _per_image(images: Tensor, warp: Callable[[Tensor, list[float]], Tensor]) -> Tensor:
    return torch.stack([warp(image, border_median(image)) for image in images])


def _affine(images: Tensor, angle: float = 0.0, shift: float = 0.0, zoom: float = 1.0) -> Tensor:
    return _per_image(images, lambda x, fill: TF.affine(
        x, angle=angle, translate=[shift, shift], scale=zoom, shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR, fill=fill))


def translate(images: Tensor, m: float, generator: torch.Generator) -> Tensor:
    return _affine(images, shift=m)


def rotate(images: Tensor, m: float, generator: torch.Generator) -> Tensor:
    return _affine(images, angle=m)


def scale(images: Tensor, m: float, generator: torch.Generator) -> Tensor:
    if m <= -1:
        raise InputError(f"scale magnitude {m} gives a zoom factor <= 0; use values above -1")
    return _affine(images, zoom=1.0 + m)


def squeeze(images: Tensor, m: float, generator: torch.Generator) -> Tensor:
    if m <= -1:
        raise InputError(f"squeeze magnitude {m} gives a width factor <= 0; use values above -1")
    h, w = images.shape[-2:]
    size = [max(1, round(h / (1 + m))), max(1, round(w * (1 + m)))]

    def warp(image: Tensor, fill: list[float]) -> Tensor:
        resized = TF.resize(image, size, antialias=True)
        pad_h, pad_w = max(0, h - size[0]), max(0, w - size[1])
        padded = TF.pad(resized, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=fill)
        return TF.center_crop(padded, [h, w])

    return _per_image(images, warp)


def stroke(images: Tensor, m: float, generator: torch.Generator) -> Tensor:
    radius = int(round(abs(m)))
    if radius == 0:
        return images
    bright = torch.tensor([sum(border_median(image)) / len(image) < 128 for image in images])
    thicken_bright = bright if m > 0 else ~bright  # thinning bright strokes = thickening the dark side
    x = images.float()
    sign = torch.where(thicken_bright, 1.0, -1.0).view(-1, 1, 1, 1)  # max-pool of -x is a min-pool
    out = sign * F.max_pool2d(sign * x, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return out.round().clamp(0, 255).to(images.dtype)


def noise(images: Tensor, m: float, generator: torch.Generator) -> Tensor:
    sample = torch.randn(images.shape, generator=generator) * m
    return (images.float() + sample).round().clamp(0, 255).to(images.dtype)


TRANSFORMS: dict[str, Transform] = {
    "translate": translate, "scale": scale, "rotate": rotate, "squeeze": squeeze, "stroke": stroke, "noise": noise,
}


def check_transforms(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise InputError(f"unknown transform {', '.join(map(repr, unknown))}; valid: {', '.join(TRANSFORMS)}")


def apply(name: str, images: Tensor, magnitude: float, generator: torch.Generator | None = None) -> Tensor:
    """Transform ``name`` at ``magnitude`` (0: the input itself)."""
    check_transforms([name])
    if magnitude == 0:
        return images
    return TRANSFORMS[name](images, float(magnitude), generator or torch.Generator().manual_seed(0))


@torch.no_grad()
def invariance_table(
    module: torch.nn.Module, loader, magnitudes: Mapping[str, Sequence[float]], seed: int = 0
) -> list[dict]:
    """Top-1 of ``module`` (uint8 images -> logits via ``module.logits``) on ``loader`` for every
    transform and magnitude, in one pass over the data. Noise is seeded per (transform, magnitude)."""
    check_transforms(list(magnitudes))
    points = [(name, float(m)) for name, values in magnitudes.items() for m in values]
    generators = {p: torch.Generator().manual_seed(seed) for p in points}
    correct = dict.fromkeys(points, 0)
    total = 0
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        for images, labels in loader:
            total += len(labels)
            for point in points:
                distorted = apply(point[0], images, point[1], generators[point])
                predictions = module.logits(distorted.to(device)).argmax(dim=1).cpu()
                correct[point] += int((predictions == labels).sum())
    finally:
        module.train(was_training)
    return [{"transform": name, "magnitude": m, "acc1": correct[(name, m)] / total} for name, m in points]


def write_csv(rows: Sequence[Mapping], path: Path) -> Path:
    """``invariance.csv`` with the columns ckpt, model, transform, magnitude, acc1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def curve_labels(ckpts: Sequence[str], models: Sequence[str]) -> dict[str, str]:
    """Legend label per checkpoint: the model name, plus the run folder (and checkpoint) when a model repeats."""
    models = list(models)
    runs = [Path(c).parent.parent.name for c in ckpts]
    labels = {}
    for ckpt, model, run in zip(ckpts, models, runs):
        same = [r for m, r in zip(models, runs) if m == model]
        labels[ckpt] = model if len(same) == 1 else f"{model} ({run})" if same.count(run) == 1 else \
            f"{model} ({run}/{Path(ckpt).stem})"
    return labels


def plot_invariance(rows: Sequence[Mapping], path: Path, labels: Mapping[str, str] | None = None) -> Path:
    """One subplot per transform, one line per checkpoint (legend: ``labels[ckpt]`` or ``curve_labels``)."""
    ckpts = list(dict.fromkeys(r["ckpt"] for r in rows))
    labels = labels or curve_labels(ckpts, [next(r["model"] for r in rows if r["ckpt"] == c) for c in ckpts])
    names = [n for n in TRANSFORMS if any(r["transform"] == n for r in rows)]
    units = {"translate": "pixels", "scale": "zoom factor - 1", "rotate": "degrees", "squeeze": "width factor - 1",
             "stroke": "dilation (+) / erosion (-) px", "noise": "Gaussian std (of 255)"}
    cols = min(3, len(names))
    rows_of_plots = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows_of_plots), layout="tight")
    axes = fig.subplots(rows_of_plots, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        for ckpt in ckpts:
            points = sorted((r["magnitude"], r["acc1"]) for r in rows if r["ckpt"] == ckpt and r["transform"] == name)
            ax.plot(*zip(*points), marker="o", markersize=3, label=labels[ckpt])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(units[name], fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test top-1")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)
