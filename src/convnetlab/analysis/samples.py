"""Which images to look at: a fixed, class-balanced pick from a dataset, or a user's own files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from convnetlab.data.folder import IMAGE_EXTENSIONS, read_image
from convnetlab.errors import MissingFileError


def _name(path: Path) -> str:
    """``<folder>/<file>``: embedded datasets reuse file names across class folders."""
    return f"{path.parent.name}/{path.name}"


def _labels(dataset: Dataset, limit: int) -> list[int]:
    """All labels without decoding images when the dataset keeps ``samples`` (ImageFolderDataset
    does); otherwise the labels of the first ``limit`` items, so a huge dataset is not decoded."""
    if hasattr(dataset, "samples"):
        return [int(label) for _, label in dataset.samples]
    return [int(dataset[i][1]) for i in range(min(len(dataset), limit))]


def pick_images(dataset: Dataset, n: int) -> tuple[Tensor, Tensor, list[str]]:
    """The first image of each class in dataset order, then the next ones, up to ``n``.

    Deterministic, so the images watched during training (or compared across checkpoints) never
    change. Returns uint8 images (n, C, H, W), labels and names (``<class folder>/<file>`` when known).
    """
    labels = _labels(dataset, limit=max(1000, 20 * n))
    first: dict[int, int] = {}
    for index, label in enumerate(labels):
        first.setdefault(label, index)
    chosen = sorted(first.values())[:n]
    taken = set(chosen)
    chosen += [i for i in range(len(labels)) if i not in taken][: n - len(chosen)]
    items = [dataset[i] for i in chosen]
    names = [_name(Path(dataset.samples[i][0])) if hasattr(dataset, "samples") else f"#{i}" for i in chosen]
    return torch.stack([image for image, _ in items]), torch.tensor([labels[i] for i in chosen]), names


def image_files(images: str | Sequence[str]) -> list[Path]:
    """A folder (searched recursively) or a list of image files, sorted; fails if none is found."""
    given = [images] if isinstance(images, str | Path) else list(images)
    files: list[Path] = []
    for entry in map(Path, given):
        if entry.is_dir():
            files += sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif entry.is_file():
            files.append(entry)
        else:
            raise MissingFileError(f"images={entry} does not exist; pass an image folder or a list of image files.")
    if not files:
        raise MissingFileError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {', '.join(map(str, given))}; "
            "pass a folder holding images or a list of image files.")
    return files


def load_images(
    files: Sequence[Path], channels: int, transform: Callable[[Tensor], Tensor], classes: Sequence[str]
) -> tuple[Tensor, Tensor, list[str]]:
    """Decode and eval-transform ``files``; the label is the parent folder's name if it is a class,
    else -1 (unknown: attribution then explains the predicted class)."""
    images = torch.stack([transform(read_image(str(path), channels)) for path in files])
    index = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([index.get(path.parent.name, -1) for path in files])
    return images, labels, [_name(path) for path in files]
