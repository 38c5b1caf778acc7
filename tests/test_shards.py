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
