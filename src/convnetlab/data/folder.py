"""Class-folder image datasets (``<split>/<class>/<image>``) read as uint8 tensors.

Also holds the small on-disk helpers shared by every class-folder dataset: cheap class
listing (for the ``num_classes_in`` config resolver) and atomic directory creation (so the
embedded generators never leave a half-written dataset that looks complete).
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor, rgb_to_grayscale

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
LAYOUT = "expected <root>/train/<class>/<image>, <root>/val/<class>/<image> and optionally <root>/test/..."


def list_classes(split_dir: str | Path) -> list[str]:
    """Sorted class-folder names of one split; lists a single directory level, so it is cheap even for ImageNet."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        missing = split_dir if split_dir.parent.is_dir() else split_dir.parent
        raise FileNotFoundError(f"{missing} does not exist; {LAYOUT}")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{split_dir} has no class folders; {LAYOUT}")
    return classes


def check_classes(split_dir: str | Path, classes: list[str]) -> None:
    """Fail early when a split's class folders differ from train's, since labels are folder indices."""
    found = list_classes(split_dir)
    if found != classes:
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise ValueError(f"{split_dir}: class folders differ from train (missing {missing}, extra {extra})")


def find_samples(split_dir: str | Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) for every image under ``split_dir/<class>/``, in a stable sorted order."""
    samples = []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(Path(split_dir) / name, followlinks=True):
            dirnames.sort()
            samples += [
                (os.path.join(dirpath, f), label)
                for f in sorted(filenames)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            ]
    if not samples:
        raise FileNotFoundError(f"{split_dir} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return samples


def read_image(path: str, channels: int) -> torch.Tensor:
    """Decode to uint8 (C, H, W) with torchvision; PIL only for BMP, which torchvision cannot decode."""
    try:
        if path.lower().endswith(".bmp"):
            with Image.open(path) as im:
                image = pil_to_tensor(im.convert("L" if channels == 1 else "RGB"))
        else:
            image = decode_image(path, mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        raise RuntimeError(f"cannot decode image {path}: {e}") from e
    if image.shape[0] != channels:  # WebP ignores GRAY mode and stays RGB
        image = rgb_to_grayscale(image)
    return image


class ImageFolderDataset(Dataset):
    """Items are ``(uint8 image (C, H, W), label)``; ``samples`` keeps ``(path, label)`` so exports can name files.

    With ``in_memory=True`` every image is decoded once up front, which removes per-epoch JPEG
    decoding for the small embedded datasets; transforms still run per item.
    """

    def __init__(
        self,
        split_dir: str | Path,
        classes: list[str],
        channels: int = 3,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        in_memory: bool = False,
    ) -> None:
        self.classes = classes
        self.channels = channels
        self.transform = transform
        self.samples = find_samples(split_dir, classes)
        self._images = [read_image(p, channels) for p, _ in self.samples] if in_memory else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = self._images[index] if self._images is not None else read_image(path, self.channels)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def register_resolvers() -> None:
    """Register ``${num_classes_in:<dir>}`` so configs can size the classifier from disk; safe to call repeatedly."""
    if not OmegaConf.has_resolver("num_classes_in"):
        OmegaConf.register_new_resolver("num_classes_in", lambda path: len(list_classes(path)))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``target`` and rename it into place only once the block completes.

    An interrupted write therefore never produces ``target``; if another process published
    ``target`` first, ours is discarded and theirs kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.chmod(0o755)  # mkdtemp creates 0700; a shared data dir should stay readable
    try:
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
