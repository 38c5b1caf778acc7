"""scikit-learn's bundled 8x8 digits written as PNG class folders, so they go through the ImageFolder path.

No download is needed (the 1,797 images ship with scikit-learn), which makes this the smallest
real-image dataset for smoke tests and CPU runs.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from convnetlab.data.folder import atomic_dir


def split_digits(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices; deterministic for a given seed."""
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest], random_state=seed
    )
    return {"train": train, "val": val, "test": test}


def write_digits(
    out_dir: str | Path,
    image_size: int = 32,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> Path:
    """Write ``out_dir/<split>/<digit>/<index>.png`` once (atomically); reuse a complete ``out_dir``.

    Pixels go from 0..16 to 0..255 and are upsampled bilinearly to ``image_size``; file names
    are the original dataset indices so samples can be traced back.
    """
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        return out_dir
    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    with atomic_dir(out_dir) as tmp:
        for split, indices in split_digits(digits.target, val_fraction, test_fraction, seed).items():
            for i in indices:
                class_dir = tmp / split / str(digits.target[i])
                class_dir.mkdir(parents=True, exist_ok=True)
                image = Image.fromarray(pixels[i]).resize((image_size, image_size), Image.Resampling.BILINEAR)
                image.save(class_dir / f"{i:04d}.png")
    return out_dir
