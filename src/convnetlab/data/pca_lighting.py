"""AlexNet's "fancy PCA" lighting noise on uint8 images, and the RGB eigen-decomposition it needs.

Krizhevsky et al. (2012) add ``eigvec @ (alpha * eigval)`` to every pixel, with one
``alpha ~ N(0, 0.1)`` per component and image: shifting colour along the training set's principal
RGB axes models changes of illumination intensity and colour, to which object identity is invariant.
The eigen-decomposition is a property of the training set, so it is computed once from a pixel
sample and cached as JSON beside the data; ImageNet's published values are the ImageNet default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from convnetlab.errors import InputError, MissingFileError

log = logging.getLogger(__name__)

# Published ImageNet RGB statistics (pixels in [0, 1]), as used by fb.resnet.torch and torchvision's ports.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
CACHE_NAME = "pca_lighting.json"
SAMPLE_IMAGES = 500  # training images (evenly spaced) the statistics are computed from


class PCALighting(v2.Transform):
    """Add ``255 * eigvec @ (alpha * eigval)``, ``alpha ~ N(0, alpha_std)``, to every pixel of a uint8 image.

    ``eigvec`` columns are the principal axes (C x C), ``eigval`` their variances' square roots as
    published (pixels in [0, 1]). Other inputs (labels, boxes) pass through unchanged.
    """

    def __init__(self, eigval: Sequence[float], eigvec: Sequence[Sequence[float]], alpha_std: float = 0.1) -> None:
        super().__init__()
        self.alpha_std = float(alpha_std)
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32), persistent=False)
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32), persistent=False)
        if self.eigvec.shape != (len(self.eigval), len(self.eigval)):
            raise InputError(f"eigvec must be {len(self.eigval)}x{len(self.eigval)} for {len(self.eigval)} eigval")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        alpha = torch.randn(len(self.eigval)) * self.alpha_std
        return {"offset": 255.0 * self.eigvec @ (alpha * self.eigval)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or inpt.dtype != torch.uint8 or inpt.ndim < 3:
            return inpt
        if inpt.shape[-3] != len(self.eigval):
            raise InputError(f"PCALighting has {len(self.eigval)} channels but the image has {inpt.shape[-3]}")
        shifted = (inpt.float() + params["offset"].view(-1, 1, 1)).round_().clamp_(0, 255).to(torch.uint8)
        return tv_tensors.wrap(shifted, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else shifted


def pixel_pca(images: Iterable[torch.Tensor], pixels_per_image: int = 1024, seed: int = 0) -> dict[str, list]:
    """Eigen-decomposition of the RGB covariance of a random pixel sample, pixels scaled to [0, 1].

    Returns ``{"eigval": sqrt of the eigenvalues (descending), "eigvec": columns = axes}``, the form
    AlexNet's published values take.
    """
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for image in images:
        flat = image.reshape(image.shape[0], -1)
        index = torch.randint(flat.shape[1], (min(pixels_per_image, flat.shape[1]),), generator=generator)
        samples.append(flat[:, index].double().T / 255.0)
    pixels = torch.cat(samples)
    values, vectors = torch.linalg.eigh(torch.cov(pixels.T).reshape(pixels.shape[1], pixels.shape[1]))
    order = values.argsort(descending=True)
    return {
        "eigval": values[order].clamp(min=0).sqrt().tolist(),
        "eigvec": vectors[:, order].tolist(),
    }


def cached_pixel_pca(cache_dir: str | Path, images: Iterable[torch.Tensor] | None = None, **kwargs: Any) -> dict:
    """``pixel_pca`` read from ``cache_dir/pca_lighting.json``, computed and written there on first use.

    ``images`` may be a lazy iterable; it is only read when the cache is missing. A read-only data
    folder simply skips the write.
    """
    path = Path(cache_dir) / CACHE_NAME
    if path.is_file():
        return json.loads(path.read_text())
    if images is None:
        raise MissingFileError(f"{path} does not exist; pass training images to compute it")
    stats = pixel_pca(images, **kwargs)
    try:
        path.write_text(json.dumps(stats, indent=1) + "\n")
    except OSError as error:
        log.warning("could not cache PCA lighting statistics at %s (%s); they will be recomputed", path, error)
    return stats


def sample_indices(n: int) -> range:
    """Evenly spaced indices of (about) ``SAMPLE_IMAGES`` of ``n`` training images."""
    return range(0, n, max(1, n // SAMPLE_IMAGES))


class LazyImages:
    """The images of ``items()`` (``(image, label)`` pairs, ``None`` for a skipped file), read only when
    iterated, so a cache hit reads none."""

    def __init__(self, items: Callable[[], Iterable]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from (item[0] for item in self.items() if item is not None)


def lighting_stats(name: str, channels: int, cache_dir: str | Path, images: Iterable[torch.Tensor]) -> dict[str, list]:
    """Statistics for ``lighting: auto``: ImageNet's published ones for RGB ImageNet, else ``cached_pixel_pca``
    of ``images`` (a lazy training sample) in ``cache_dir``."""
    if name == "imagenet" and channels == 3:
        return {"eigval": list(IMAGENET_EIGVAL), "eigvec": [list(row) for row in IMAGENET_EIGVEC]}
    return cached_pixel_pca(cache_dir, images)
