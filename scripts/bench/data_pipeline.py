"""Data-pipeline throughput: our uint8 pipeline vs the torchvision reference, images/s per worker.

Run: python scripts/bench/data_pipeline.py   (prints markdown tables; ratio > 1 means ours is faster)

Writes ~500x375 JPEGs (ImageNet's typical size) to a temp folder, then loads them through a
DataLoader with num_workers=0 and one torch thread (what each worker process gets), alternating
the pipelines, median of several passes; then times the JPEG decoders alone on the same files:

- reference: torchvision.datasets.ImageFolder (PIL decode) + RandomResizedCrop + flip + ToTensor +
  Normalize for training; Resize + CenterCrop + ToTensor + Normalize for evaluation.
- ours: ImageFolderDataset (``data/decode.py``: libjpeg-turbo into the tensor's memory, 1/4 or 1/8
  DCT-scaled when the crop allows it, and for random-resized crops only the crop's region, through
  ``data/jpeg_region.py``) + the same crops as uint8 v2 ops; batches stay uint8 and are normalised later
  on the device, so that work leaves the workers.
- whole-JPEG: the same, decoding every JPEG whole (simplejpeg) before cropping, to show what the region
  decode adds.
- previous: the same, decoding as before data/decode.py (torchvision ``decode_image`` from the path, PIL
  ``draft`` for reduced sizes), to show what the decoder alone changed.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import simplejpeg
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from convnetlab.data.augment import build_preset, decode_size
from convnetlab.data.datamodule import IMAGENET_MEAN, IMAGENET_STD
from convnetlab.data.decode import decode_bytes, read_image
from convnetlab.data.folder import ImageFolderDataset, collate_present, list_classes
from convnetlab.data.transforms import default_resize_size, eval_transform


def write_jpegs(root: Path, count: int, size: tuple[int, int] = (500, 375), classes: int = 4) -> Path:
    """Photo-like JPEGs (smooth colour fields plus texture) at quality 90, about ImageNet's file size."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    for i in range(count):
        folder = root / "train" / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(-6, 6, 3), rng.uniform(-6, 6, 3), rng.uniform(0, 6, 3)
        base = 128 + 90 * np.sin(a * xx[..., None] + b * yy[..., None] + c)
        pixels = np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def reference_loader(root: Path, image_size: int, train: bool, batch: int) -> DataLoader:
    crop = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()] if train else \
        [T.Resize(default_resize_size(image_size)), T.CenterCrop(image_size)]
    transform = T.Compose([*crop, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return DataLoader(datasets.ImageFolder(str(root / "train"), transform), batch_size=batch, shuffle=train)


class PreviousDecode(ImageFolderDataset):
    """ImageFolderDataset decoding RGB as read_image did before data/decode.py (torchvision, PIL draft)."""

    def _read(self, path: str, transform: Callable | None = None) -> torch.Tensor:
        with Image.open(path) as im:
            if self.decode_size and min(im.size) >= 4 * self.decode_size:
                im.draft("RGB", (self.decode_size, self.decode_size))
                image = pil_to_tensor(im.convert("RGB"))
            else:
                image = decode_image(path, mode=ImageReadMode.RGB)
        return transform(image) if transform is not None else image


class WholeDecode(ImageFolderDataset):
    """ImageFolderDataset decoding every JPEG whole with simplejpeg, then cropping (no region decode)."""

    def _read(self, path: str, transform: Callable | None = None) -> torch.Tensor:
        image = read_image(path, self.channels, self.decode_size)
        return transform(image) if transform is not None else image


def our_loader(root: Path, image_size: int, train: bool, batch: int, preset: str = "default",
               dataset_class: type[ImageFolderDataset] = ImageFolderDataset) -> DataLoader:
    if train:
        transform, size = build_preset(preset, image_size), decode_size(preset, image_size)
    else:
        transform, size = eval_transform(image_size), default_resize_size(image_size)
    dataset = dataset_class(root / "train", list_classes(root / "train"), 3, transform, decode_size=size)
    return DataLoader(dataset, batch_size=batch, shuffle=train, collate_fn=collate_present)


def images_per_second(loader: DataLoader) -> float:
    start, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += len(images)
    return seen / (time.perf_counter() - start)


def decoders(decode_size: int | None) -> dict[str, Callable[[bytes], object]]:
    """The JPEG decoders compared (RGB, from bytes in memory); ``decode_size`` asks for DCT scaling where
    the decoder has it (torchvision's decode_jpeg has none, so it is left out then)."""
    def pil(data: bytes) -> object:
        with Image.open(io.BytesIO(data)) as im:
            if decode_size:
                im.draft("RGB", (decode_size, decode_size))
            return pil_to_tensor(im.convert("RGB"))

    options = {"PIL (draft when scaled)": pil, "simplejpeg (ours)": lambda data: decode_bytes(data, 3, decode_size)}
    if not decode_size:
        options["torchvision decode_jpeg"] = lambda data: decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    return options


def decode_ms(blobs: list[bytes], decode: Callable[[bytes], object]) -> float:
    start = time.perf_counter()
    for data in blobs:
        decode(data)
    return (time.perf_counter() - start) / len(blobs) * 1e3


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker process
    torch.manual_seed(0)
    cases = [("train", 224, True), ("eval", 224, False), ("train", 32, True), ("eval", 32, False)]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_jpegs(Path(tmp), args.images)
        mean_kb = np.mean([p.stat().st_size for p in root.rglob("*.jpg")]) / 1024
        print(f"command: python scripts/bench/data_pipeline.py --images {args.images} --repeats {args.repeats}")
        print(f"machine: {cpu_name()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch thread, "
              f"Python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
              f"Pillow {PIL.__version__}; {args.images} JPEGs of 500x375 px, {mean_kb:.0f} KB mean\n")
        print(f"simplejpeg {simplejpeg.__version__}; load average before: {os.getloadavg()[0]:.2f}\n")
        print("| pipeline | crop px | reference img/s | previous img/s | whole-JPEG img/s | ours img/s | previous / ref "
              "| whole-JPEG / ref | ours / ref |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, size, train in cases:
            loaders = {"ref": reference_loader(root, size, train, args.batch),
                       "previous": our_loader(root, size, train, args.batch, dataset_class=PreviousDecode),
                       "whole": our_loader(root, size, train, args.batch, dataset_class=WholeDecode),
                       "ours": our_loader(root, size, train, args.batch)}
            rates = {key: [] for key in loaders}
            for _ in range(args.repeats):
                for key, loader in loaders.items():
                    rates[key].append(images_per_second(loader))
            ref, previous, whole, ours = (statistics.median(rates[k]) for k in ("ref", "previous", "whole", "ours"))
            print(f"| {name} | {size} | {ref:.0f} | {previous:.0f} | {whole:.0f} | {ours:.0f} | {previous / ref:.2f}x | "
                  f"{whole / ref:.2f}x | {ours / ref:.2f}x |")
        print("\nJPEG decode alone, RGB from bytes in memory, ms per image (median of the repeats):\n")
        print("| decode | decoder | ms/image |")
        print("|---|---|---|")
        blobs = [path.read_bytes() for path in sorted(root.rglob("*.jpg"))]
        for label, size in (("full size", None), ("1/8 (decode_size 37, eval at 32 px)", 37)):
            for decoder, decode in decoders(size).items():
                ms = statistics.median(decode_ms(blobs, decode) for _ in range(args.repeats))
                print(f"| {label} | {decoder} | {ms:.2f} |")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
