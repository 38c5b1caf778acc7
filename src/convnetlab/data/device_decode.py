"""``data.decode_on=device``: workers only read file bytes; the batch is decoded where the model runs.

On a GPU, ``torchvision.io.decode_jpeg(list, device="cuda")`` (nvJPEG) takes the decode off the CPU
workers. The DataModule's loaders then yield ``{"encoded", "label", "key", "split"}`` dicts (the bytes
as numpy arrays, so Lightning's transfer leaves them on the host where ``decode_jpeg`` wants them);
``DeviceDecoder`` runs in ``on_after_batch_transfer`` and returns the usual ``(uint8 (B, C, H, W),
labels)`` batch. Each image gets its split's per-image transform on the device, training images under
the same keyed RNG as in a worker (``resumable.keyed_rng``), so augmentation stays a function of
``(seed, key)`` and a resume stays exact; a batch mix (MixUp/CutMix) draws from the last item's keyed
stream, as it does in a worker process. Non-JPEG files are decoded on the host (``decode_bytes``).
The device decodes at full size: JPEG DCT scaling (``decode_size``) applies to worker decoding only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from convnetlab.data.decode import JPEG_SIGNATURE, decode_bytes
from convnetlab.data.folder import BAD_IMAGE_HINT
from convnetlab.data.resumable import keyed_rng
from convnetlab.errors import BadImageError, InputError

DECODE_ON = ("worker", "device")
log = logging.getLogger(__name__)


def check_decode_on(decode_on: str, name: str, ordered_by_sampler: bool, in_memory: bool) -> None:
    """Refuse ``decode_on`` values that cannot work for this data, in one line that says what to do."""
    if decode_on not in DECODE_ON:
        raise InputError(f"data.decode_on={decode_on!r} is not one of {', '.join(DECODE_ON)}")
    if decode_on == "device" and not ordered_by_sampler:
        raise InputError(f"data.decode_on=device reads class-folder files; data={name} decodes its own records: "
                         "set data.decode_on=worker")
    if decode_on == "device" and in_memory:
        raise InputError("data.decode_on=device reads file bytes per batch but data.in_memory=true decodes every "
                         "image once up front: set data.in_memory=false or data.decode_on=worker")


class EncodedImages(Dataset):
    """Items ``(file bytes as a uint8 numpy array, label, key)`` of a class-folder dataset's ``samples``.

    Keys are what the resumable samplers hand out (``key % n`` is the index); eval loaders pass indices.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> tuple[np.ndarray, int, int]:
        path, label = self.dataset.samples[key % len(self.dataset)]
        try:
            return np.fromfile(path, dtype=np.uint8), label, key
        except OSError:  # decoded later: the decoder names the file and applies data.bad_images
            return np.zeros(0, dtype=np.uint8), label, key


class EncodedCollate:
    """Batches of ``EncodedImages`` items as a dict naming their split (``train``, ``val``, ``test``): its transform."""

    def __init__(self, split: str) -> None:
        self.split = split

    def __call__(self, items: list[tuple[np.ndarray, int, int]]) -> dict[str, Any]:
        return {"encoded": [data for data, _, _ in items], "label": torch.tensor([label for _, label, _ in items]),
                "key": torch.tensor([key for _, _, key in items]), "split": self.split}


class DeviceDecoder:
    """Decode an encoded batch on the device of its labels, then transform each image (keyed when ``seed``).

    ``names(key)`` gives the file an error names; ``mix`` is the preset's batch mix (``mixing.MixUpCutMix``)
    or None; ``bad_images`` as in ``ImageFolderDataset`` (``skip`` drops an undecodable image from its batch).
    """

    def __init__(self, transform: Callable[[Tensor], Tensor] | None, channels: int, names: Callable[[int], str],
                 seed: int | None = None, mix: Callable | None = None, bad_images: str = "error") -> None:
        self.transform, self.channels, self.names = transform, channels, names
        self.seed, self.mix, self.bad_images = seed, mix, bad_images

    def __call__(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        labels, keys = batch["label"], batch["key"].tolist()
        images = self._decode(batch["encoded"], keys, labels.device)
        kept = [i for i, image in enumerate(images) if image is not None]
        if not kept:
            raise BadImageError(f"no image of a batch decodes ({self.names(keys[0])} first); {BAD_IMAGE_HINT}")
        out, last = [], kept[-1]
        for i in kept:
            if self.seed is None:
                out.append(self._transform(images[i]))
                continue
            with keyed_rng(self.seed, keys[i]):
                out.append(self._transform(images[i]))
                if i == last and self.mix is not None:  # a worker's collate draws right after the last item
                    return self.mix(list(zip(out, labels[kept])))
        return torch.stack(out), labels[kept]

    def _transform(self, image: Tensor) -> Tensor:
        return self.transform(image) if self.transform is not None else image

    def _decode(self, encoded: list[np.ndarray], keys: list[int], device: torch.device) -> list[Tensor | None]:
        """JPEGs in one ``decode_jpeg`` call on ``device`` (one by one if any fails), the rest on the host."""
        images: list[Tensor | None] = [None] * len(encoded)
        jpegs = [i for i, data in enumerate(encoded) if data[:3].tobytes() == JPEG_SIGNATURE]
        mode = ImageReadMode.GRAY if self.channels == 1 else ImageReadMode.RGB
        try:
            batch = [torch.from_numpy(encoded[i]) for i in jpegs]
            decoded = decode_jpeg(batch, mode=mode, device=device) if batch else []
            for i, image in zip(jpegs, decoded):
                images[i] = image
        except RuntimeError:
            pass  # some JPEG is bad: every image is decoded alone below, so the bad one is named
        for i, data in enumerate(encoded):
            if images[i] is None:
                images[i] = self._decode_one(data, keys[i], device, mode)
        return images

    def _decode_one(self, data: np.ndarray, key: int, device: torch.device, mode: ImageReadMode) -> Tensor | None:
        name = self.names(key)
        try:
            if data[:3].tobytes() == JPEG_SIGNATURE:
                try:
                    return decode_jpeg(torch.from_numpy(data), mode=mode, device=device)
                except RuntimeError as e:
                    raise BadImageError(f"cannot decode image {name}: {str(e).strip().splitlines()[0]}") from e
            return decode_bytes(data.tobytes(), self.channels, None, name).to(device)
        except BadImageError as error:
            if self.bad_images == "error":
                raise BadImageError(f"{error}; {BAD_IMAGE_HINT}") from error
            log.warning("skipping %s (data.bad_images=skip)", error)
            return None


def device_decoder(datamodule: Any, split: str) -> DeviceDecoder:
    """The decoder of ``split``'s encoded batches: its transform, keyed RNG and batch mix when training."""
    dataset = getattr(datamodule, f"{split}_dataset")

    def name(key: int) -> str:
        return dataset.samples[key % len(dataset)][0]

    if split == "train":
        return DeviceDecoder(datamodule.train_transform, datamodule.channels, name, datamodule._shuffle_seed,
                             datamodule.augment.collate(datamodule.num_classes), dataset.bad_images)
    return DeviceDecoder(datamodule.eval_transform, datamodule.channels, name, bad_images=dataset.bad_images)
