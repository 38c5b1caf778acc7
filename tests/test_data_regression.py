"""The seeded training data is pinned: the first batches of every default datamodule hash to fixed values.

The hashes were computed before the data layer was rebuilt by composition (sources + preprocessing spec +
augment preset classes); any change to order, augmentation, decoding or statistics changes them. Each case
is composed from the real configs (conf/data, conf/augment) and built after ``torch.manual_seed(42)``, as
``pl.seed_everything(42)`` does in training.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import REPO
from convnetlab.data.folder import register_resolvers

TINY_SHAPES = ["data=shapes", "data.num_classes=4", "data.per_class_train=24", "data.per_class_val=8",
               "data.per_class_test=8", "data.batch_size=16", "data.num_workers=0"]
PRESETS = ("default", "none", "alexnet", "vgg", "inception", "resnet", "tv_v2")


def compose_train(*overrides: str):
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _update(h, *tensors: torch.Tensor) -> None:
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.contiguous().numpy().tobytes())


def digest(dm) -> str:
    """sha256 of the first two train batches of epochs 0 and 1, the first val and test batch and the statistics."""
    h = hashlib.sha256()
    h.update(repr((dm.num_classes, list(dm.classes), tuple(dm.mean), tuple(dm.std), dm.image_size, dm.resize_size,
                   dm.channels, dm.eval_decode_size)).encode())
    dm.setup("fit")
    dm.setup("test")
    loader = dm.train_dataloader()
    for epoch in (0, 1):
        if dm.train_sampler is not None:
            dm.train_sampler.set_epoch(epoch)
        else:
            dm.train_dataset.set_epoch(epoch)
        batches = iter(loader)
        for _ in range(2):
            _update(h, *next(batches))
    _update(h, *next(iter(dm.val_dataloader())))
    _update(h, *next(iter(dm.test_dataloader())))
    return h.hexdigest()


def composed_digest(*overrides: str) -> str:
    cfg = compose_train(*overrides)
    torch.manual_seed(42)
    return digest(instantiate(cfg.data))


TINY_SHAPES_HASHES = {
    "default": "622f0ccd933b8f30e6708a41864a72fbd14cd16880f01116c9c0778f21ce796c",
    "none": "922736f7e504b9bcb4afb10df181ea27b35ecfbcd507c237b94e77ca8251cd91",
    "alexnet": "8a4cfe189dc3b215325d4e02d77d61e32b3be3717f4242c7f212334862e0d037",
    "vgg": "c6a259a57514bdfb889375243a86375bcf360a0760f78ceda60e30d54a265893",
    "inception": "f4db174cd4f390c61167a31a977f3f936f86ea4cf5be8e5e89f03aaa8c9a736b",
    "resnet": "062e0935ae4cfa110b28d5d5c85bfaa5faf7984429a910fdb289802ec261f9d4",
    "tv_v2": "da7727576fe80900e88f6ea4238fdc05b98d06b1bc77ec03e75bcdf89452e8de",
}
DIGITS_HASH = "d1e6c3b0cbc29a456a6bcd51aec6f3d2fd4810b8e665dd50e69192bd88fb5e6c"
# Streaming data (litdata chunks) replaced the tar shards in 0.2; pinned since then.
STREAMING_HASH = "e310e14dc28e948598a7d28e869aa76b88735c88f247cf7bafbd7d6292f51d62"
SHAPES_DEFAULT_HASH = "51121c95ae39dc3466cda892881f13632943fc81f3a4488ed7c18fe2e17e476f"


@pytest.mark.parametrize("preset", PRESETS)
def test_tiny_shapes_batches_are_pinned_for_every_augment_preset(preset, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "pinned-data"
    assert composed_digest(*TINY_SHAPES, f"augment={preset}", f"data.root={root}") == TINY_SHAPES_HASHES[preset]


def test_default_digits_batches_are_pinned(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "pinned-data"
    assert composed_digest("data=digits", "data.num_workers=0", f"data.root={root}") == DIGITS_HASH


def streaming_digest(root: Path) -> str:
    from convnetlab.data.streaming_writer import optimize_folder

    folder = instantiate(compose_train(*TINY_SHAPES, f"data.root={root}").data)
    folder.prepare_data()
    chunks = optimize_folder(folder.root, root / "tiny-streaming", chunk_bytes="64kb")
    return composed_digest("data=streaming", f"data.root={chunks}", "data.image_size=32", "data.batch_size=16",
                           "data.num_workers=0", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]")


def test_streaming_batches_are_pinned(tmp_path_factory):
    assert streaming_digest(tmp_path_factory.getbasetemp() / "pinned-data") == STREAMING_HASH


@pytest.mark.slow
def test_default_shapes_batches_are_pinned(tmp_path_factory):
    """The default training run's data (conf/train.yaml: data=shapes, augment=default, seed 42)."""
    root = tmp_path_factory.getbasetemp() / "pinned-data"
    assert composed_digest("data.num_workers=0", f"data.root={root}") == SHAPES_DEFAULT_HASH


if __name__ == "__main__":  # prints the hashes to pin (python tests/test_data_regression.py <scratch dir>)
    import sys

    root = Path(sys.argv[1])
    print({p: composed_digest(*TINY_SHAPES, f"augment={p}", f"data.root={root}") for p in PRESETS})
    print("digits", composed_digest("data=digits", "data.num_workers=0", f"data.root={root}"))
    print("streaming", streaming_digest(root))
    print("shapes", composed_digest("data.num_workers=0", f"data.root={root}"))
