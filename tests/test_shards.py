"""Sharded data: shards round-trip images and labels; DDP ranks and workers see disjoint, complete samples."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, clean_env
from convnetlab.data.folder import count_classes
from convnetlab.data.shards import ShardedDataModule, ShardedImageDataset, write_shards

N = 16  # images per split; image i is a flat grey of value 10 * i, so a pixel identifies its sample


def _numbered_tree(root: Path) -> Path:
    for split in ("train", "val"):
        for i in range(N):
            folder = root / split / ("even" if i % 2 == 0 else "odd")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 10 * i, dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return root


def _ids(images: torch.Tensor) -> list[int]:
    return [round(v / 10) for v in images[:, 0, 0, 0].float().tolist()]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = _numbered_tree(tmp_path_factory.mktemp("folder"))
    return write_shards(root, root.parent / "shards", num_shards=4)


def test_shards_round_trip_images_and_labels(shards):
    index = json.loads((shards / "index.json").read_text())
    assert index["classes"] == ["even", "odd"] and index["splits"]["train"] == [4, 4, 4, 4]
    assert count_classes(shards) == 2
    dataset = ShardedImageDataset(shards / "train", index["splits"]["train"])
    items = list(dataset)
    assert sorted(_ids(torch.stack([x for x, _ in items]))) == list(range(N))
    assert all(label == int(x[0, 0, 0]) // 10 % 2 for x, label in items)
    before = (shards / "train" / "shard-000000.tar").stat().st_mtime_ns
    assert write_shards(shards.parent / "elsewhere", shards) == shards  # already written: a no-op
    assert (shards / "train" / "shard-000000.tar").stat().st_mtime_ns == before


def test_ranks_and_workers_split_the_shards_disjointly_and_completely(shards):
    counts = json.loads((shards / "index.json").read_text())["splits"]["train"]
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            dataset = ShardedImageDataset(shards / "train", counts, shuffle=True)
            dataset.rank, dataset.world_size = rank, 2
            dataset.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
            rank_ids = [i for images, _ in loader for i in _ids(images)]
            assert len(rank_ids) == len(dataset) == N // 2
            seen += rank_ids
        assert sorted(seen) == list(range(N))


def test_sharded_datamodule_batches(shards):
    dm = ShardedDataModule(shards, image_size=8, resize_size=8, batch_size=4, num_workers=0)
    assert dm.num_classes == 2 and dm.classes == ["even", "odd"]
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 8, 8) and labels.dtype == torch.int64
    assert sorted(i for x, _ in dm.val_dataloader() for i in _ids(x)) == list(range(N))


RECORDER = """
import json, sys
from pathlib import Path
import pytorch_lightning as pl, torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from convnetlab.data.shards import ShardedDataModule

shards, out, conf = sys.argv[1:4]

class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer, self.seen = torch.nn.Linear(1, 1), []

    def training_step(self, batch, batch_idx):
        self.seen += [round(v / 10) for v in batch[0][:, 0, 0, 0].float().tolist()]
        return self.layer(batch[0][:, :1, 0, 0].float()).sum()

    def on_train_epoch_end(self):
        Path(out, f"rank{self.global_rank}-epoch{self.current_epoch}.json").write_text(json.dumps(self.seen))
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

with initialize_config_dir(conf, version_base="1.3"):
    cfg = compose("train", overrides=["trainer=ddp_cpu"])
trainer = instantiate(cfg.trainer, default_root_dir=out, max_epochs=2, logger=False, enable_checkpointing=False,
                      limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False, callbacks=[])
dm = ShardedDataModule(shards, image_size=8, resize_size=8, batch_size=2, num_workers=2, augment={"name": "none"})
trainer.fit(Recorder(), datamodule=dm)
"""


@pytest.mark.slow
def test_ddp_cpu_ranks_see_disjoint_samples_and_every_sample_once_per_epoch(shards, tmp_path):
    script = tmp_path / "record.py"
    script.write_text(textwrap.dedent(RECORDER))
    args = [sys.executable, str(script), str(shards), str(tmp_path), str(REPO / "conf")]
    proc = subprocess.run(args, cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for epoch in (0, 1):
        ranks = [json.loads((tmp_path / f"rank{r}-epoch{epoch}.json").read_text()) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == N // 2  # equal step counts, as DDP needs
        assert not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == list(range(N))


# --- shards work with every tool folders do (in-process, one ImageDataModule) ----------------------------

PRESETS_AT_8PX = ("default", "none", "alexnet", "vgg", "inception", "resnet", "tv_v2")


@pytest.mark.parametrize("preset", PRESETS_AT_8PX)
def test_every_augment_preset_runs_on_shards(shards, tmp_path, preset):
    import shutil

    from convnetlab.data.augment import PRESET_CLASSES
    from convnetlab.data.pca_lighting import CACHE_NAME

    copy = tmp_path / "shards"  # PCA statistics are cached in the root: keep the shared fixture clean
    shutil.copytree(shards, copy)
    preset_object = PRESET_CLASSES[preset]()  # the class defaults, as conf/augment/<preset>.yaml has them
    dm = ShardedDataModule(copy, image_size=8, resize_size=8, batch_size=4, num_workers=0, augment=preset_object)
    assert dm.augment is preset_object
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 8, 8)
    if preset == "tv_v2":  # MixUp/CutMix batches: float images, soft targets
        assert images.dtype == torch.float32 and targets.shape == (4, 2)
    else:
        assert images.dtype == torch.uint8 and targets.dtype == torch.int64
    assert (copy / CACHE_NAME).is_file() == (preset in ("alexnet", "vgg", "resnet"))  # lighting: auto


@pytest.mark.parametrize(("protocol", "crops"), [("center", None), ("10crop", 10), ("multiscale", 30)])
def test_eval_protocols_run_on_shards(shards, protocol, crops):
    from convnetlab.data.multicrop import CropAveraging, use_protocol

    module = torch.nn.Module()
    module.backbone = torch.nn.Identity()
    dm = ShardedDataModule(shards, image_size=8, resize_size=8, batch_size=60, num_workers=0)
    use_protocol(module, dm, protocol)
    assert dm.preprocessing.eval_protocol == protocol
    dm.setup("test")
    images, labels = next(iter(dm.test_dataloader()))
    if crops is None:
        assert images.shape == (16, 3, 8, 8) and not isinstance(module.backbone, CropAveraging)
    else:
        assert dm.eval_batch_size == 60 // crops and isinstance(module.backbone, CropAveraging)
        assert images.shape == (60 // crops, crops, 3, 8, 8)
        assert dm.eval_decode_size == max(dm.preprocessing.eval_sizes)


def _with_bad_sample(shards: Path, out: Path) -> Path:
    """A copy of ``shards`` whose first train shard ends with an undecodable PNG (header fine, body garbage)."""
    import io
    import shutil
    import tarfile

    shutil.copytree(shards, out)
    shard = out / "train" / "shard-000000.tar"
    with tarfile.open(shard, "a") as tar:
        for name, data in (("99999999.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20 + b"IEND"), ("99999999.cls", b"0")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_bad_image_policy_applies_to_shard_samples(shards, tmp_path):
    from convnetlab.errors import BadImageError

    bad = _with_bad_sample(shards, tmp_path / "bad")
    dm = ShardedDataModule(bad, image_size=8, resize_size=8, batch_size=17, num_workers=0)
    dm.setup("fit")
    with pytest.raises(BadImageError, match=r"shard-000000\.tar:99999999.*data\.bad_images=skip"):
        list(dm.train_dataset)
    dm = ShardedDataModule(bad, image_size=8, resize_size=8, batch_size=17, num_workers=0, bad_images="skip",
                           augment={"name": "none"})
    dm.setup("fit")
    assert sorted(_ids(torch.stack([x for x, _ in dm.train_dataset]))) == list(range(N))
    with pytest.raises(ValueError, match="bad_images=maybe"):
        ShardedDataModule(bad, bad_images="maybe")
    with pytest.raises(ValueError, match="in_memory"):
        ShardedDataModule(bad, in_memory=True)


def test_shards_config_instantiates_the_one_datamodule(shards):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from convnetlab.data import ImageDataModule
    from convnetlab.data.folder import register_resolvers
    from convnetlab.data.shards import ShardSource

    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=shards", f"data.root={shards}", "data.image_size=8",
                                          "data.num_workers=0", "augment=alexnet", "augment.lighting=imagenet"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, ImageDataModule) and isinstance(dm.source, ShardSource)
    assert not dm.source.ordered_by_sampler and dm.num_classes == cfg.data.num_classes == 2
    assert dm.train_transform is not None  # published lighting values: nothing to compute at setup
