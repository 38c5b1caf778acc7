"""data.decode_on=device: workers read bytes, the batch decodes after transfer; on a CPU it must give the
batches worker decoding gives (same keyed augmentation), and refuse data it cannot apply to."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from convnetlab.data import DigitsDataModule, ImageFolderDataModule, ShapesDataModule
from convnetlab.data.augment import TorchvisionV2
from convnetlab.errors import BadImageError, InputError


def _tree(root: Path, fmt: str = "JPEG", per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, name in enumerate(("a", "b")):
            for i in range(per_class):
                pixels = (np.linspace(0, 200, 100)[None, :, None] + rng.integers(0, 50, (75, 100, 3))).astype(np.uint8)
                path = root / split / name / f"{i}.{fmt.lower()}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return root


def _batches(root: Path, decode_on: str, split: str = "train", **options) -> list[tuple[torch.Tensor, torch.Tensor]]:
    options = {"num_workers": 0, **options}
    dm = ImageFolderDataModule(root, image_size=32, batch_size=4, decode_on=decode_on, **options)
    dm.setup("fit")
    loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
    # What Lightning does after moving a batch to the device (here the CPU).
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def _assert_same_batches(device: list, worker: list) -> None:
    assert len(device) == len(worker)
    for (images, labels), (expected, expected_labels) in zip(device, worker):
        assert images.dtype == expected.dtype and images.shape == expected.shape
        assert (images.float() - expected.float()).abs().max() <= 1  # both libjpeg-turbo: equal, or a rounding apart
        assert torch.equal(labels, expected_labels)


@pytest.mark.parametrize("split", ["train", "val"])
def test_device_decode_on_cpu_gives_the_worker_batches(tmp_path, split):
    root = _tree(tmp_path)
    _assert_same_batches(_batches(root, "device", split), _batches(root, "worker", split))


def test_device_decode_keeps_the_keyed_mix_of_worker_processes(tmp_path):
    """tv_v2 mixes batches (MixUp/CutMix) in the collate; in a worker process that draws from the last item's
    keyed RNG stream, and so does the device path."""
    root = _tree(tmp_path)
    options = {"augment": TorchvisionV2(), "num_workers": 1, "persistent_workers": False}
    device, worker = _batches(root, "device", **options), _batches(root, "worker", **options)
    for (images, labels), (expected, expected_labels) in zip(device, worker, strict=True):
        assert images.dtype == torch.float32 and (images - expected).abs().max() <= 1
        assert labels.shape == (4, 2) and torch.allclose(labels, expected_labels)  # mixed: soft labels


def test_device_decode_resumes_mid_epoch_with_the_same_batches(tmp_path):
    root = _tree(tmp_path)
    full = _batches(root, "device")
    dm = ImageFolderDataModule(root, image_size=32, batch_size=4, num_workers=0, decode_on="device")
    dm.setup("fit")
    dm.resume_train_at(0, 1)
    resumed = [dm.on_after_batch_transfer(batch, 0) for batch in dm.train_dataloader()]
    for (images, labels), (expected, expected_labels) in zip(resumed, full[1:], strict=True):
        assert torch.equal(images, expected) and torch.equal(labels, expected_labels)


def test_device_decode_reads_non_jpeg_files_on_the_host(tmp_path):
    root = _tree(tmp_path, fmt="PNG", per_class=2)
    _assert_same_batches(_batches(root, "device"), _batches(root, "worker"))


def test_device_decode_names_a_bad_jpeg_or_skips_it(tmp_path):
    root = _tree(tmp_path, per_class=2)
    bad = root / "train" / "a" / "1.jpeg"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(BadImageError, match=rf"cannot decode image {bad}.*data\.bad_images=skip"):
        _batches(root, "device")
    batches = _batches(root, "device", bad_images="skip")  # the header check drops it when the dataset is built
    assert sum(len(labels) for _, labels in batches) == 3


def test_device_decode_skips_a_file_that_only_fails_to_decode(tmp_path):
    root = _tree(tmp_path, per_class=2)
    dm = ImageFolderDataModule(root, image_size=32, batch_size=4, num_workers=0, decode_on="device",
                               bad_images="skip")
    dm.setup("fit")
    bad = root / "train" / "b" / "0.jpeg"
    data = bytearray(bad.read_bytes())
    data[200:260] = b"\x00" * 60  # corrupt entropy data after the header check passed
    bad.write_bytes(bytes(data[:400]) + b"\xff\xd9")
    images, labels = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert len(images) == len(labels) == 3


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: ImageFolderDataModule(root, decode_on="gpu"), "data.decode_on='gpu' is not one of worker, device"),
    (lambda root: ImageFolderDataModule(root, decode_on="device", in_memory=True), "set data.in_memory=false"),
    (lambda root: ShapesDataModule(root, decode_on="device", in_memory=True), "set data.in_memory=false"),
    (lambda root: DigitsDataModule(root, decode_on="device"), "digits are PNG files: keep data.decode_on=worker"),
])
def test_decode_on_device_is_refused_where_it_cannot_apply(tmp_path, make, message):
    with pytest.raises(InputError, match=message) as error:
        make(tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_train_composes_with_decode_on_device(tmp_path, data_dir):
    run_cli("train", "data=shapes", "data.in_memory=false", "data.decode_on=device", "data.num_workers=1",
            "data.per_class_train=8", "data.per_class_val=4", "data.per_class_test=4", "model=lenet5",
            "trainer.max_epochs=1", "logger=csv", cwd=tmp_path, data_dir=data_dir)
    assert list(tmp_path.rglob("metrics.json"))


def test_the_visualize_tool_reads_images_of_a_device_decoding_datamodule(tmp_path):
    """Tools that read data outside a Trainer (visualize, probe) have no device to decode on: they decode
    in the loader, whatever data.decode_on says."""
    from omegaconf import OmegaConf

    from convnetlab.cli.visualize import _inputs

    dm = ImageFolderDataModule(_tree(tmp_path), image_size=32, batch_size=4, num_workers=0, decode_on="device")
    images, labels, names = _inputs(OmegaConf.create({"images": None, "n_images": 2}), dm)
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32) and len(labels) == len(names) >= 2
