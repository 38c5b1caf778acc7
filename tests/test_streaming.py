"""Streaming data (litdata): optimize round-trips images and labels; ranks and workers split disjointly and
completely; batches, augment presets, eval protocols and the bad-image policy work as for folders; the
training stream resumes mid-epoch exactly."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from convnetlab.data.folder import count_classes
from convnetlab.data.streaming import StreamingDataModule, StreamingSource
from convnetlab.data.streaming_writer import optimize_folder

N = 16  # images per split; image i's red channel is flat 10 * i (a pixel identifies the sample under any crop),
# its green channel random texture (so crops and flips change the pixels)
GARBAGE_PNG = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20 + b"IEND"  # passes the header check, does not decode


def numbered_tree(root: Path) -> Path:
    for split in ("train", "val"):
        for i in range(N):
            folder = root / split / ("even" if i % 2 == 0 else "odd")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.full((8, 8, 3), 10 * i, dtype=np.uint8)
            pixels[..., 1] = np.random.default_rng(i).integers(0, 256, (8, 8))
            Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


def ids(images: torch.Tensor) -> list[int]:
    return [round(v / 10) for v in images[:, 0, 0, 0].float().tolist()]


@pytest.fixture(scope="module")
def streaming(tmp_path_factory) -> Path:
    root = numbered_tree(tmp_path_factory.mktemp("folder"))
    return Path(optimize_folder(root, root.parent / "streaming", chunk_size=4))  # 4 chunks per split


def datamodule(root: Path, **kwargs) -> StreamingDataModule:
    return StreamingDataModule(root, image_size=8, resize_size=8, **{"batch_size": 4, "num_workers": 0, **kwargs})


def test_optimize_round_trips_images_and_labels_and_is_a_no_op_once_written(streaming):
    info = json.loads((streaming / "classes.json").read_text())
    assert info == {"classes": ["even", "odd"], "splits": {"train": N, "val": N}}
    assert count_classes(streaming) == 2
    items = list(StreamingSource(streaming).dataset("train", 3, None))
    assert sorted(ids(torch.stack([x for x, _ in items]))) == list(range(N))
    assert all(label == int(x[0, 0, 0]) // 10 % 2 for x, label in items)
    before = (streaming / "train" / "index.json").stat().st_mtime_ns
    assert optimize_folder(streaming.parent / "elsewhere", streaming) == str(streaming)  # already written
    assert (streaming / "train" / "index.json").stat().st_mtime_ns == before


def test_optimize_leaves_out_bad_files_and_logs_them(tmp_path, caplog):
    root = tmp_path / "folder"
    for split in ("train", "val"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / split / label / "ok.png")
    (root / "train" / "a" / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        out = optimize_folder(root, tmp_path / "out", chunk_size=4)
    assert json.loads(Path(out, "classes.json").read_text())["splits"] == {"train": 2, "val": 2}
    assert "empty.png: zero-byte file" in caplog.text


def test_optimize_stages_in_its_own_folders_and_leaves_litdata_shared_ones_alone(tmp_path, monkeypatch):
    """litdata empties $TMPDIR/chunks and $TMPDIR/data at the start of every optimize; a concurrent job's files
    there (an s3 upload in progress) must survive ours, and the environment is as before afterwards."""
    import os
    import tempfile

    system_tmp = tmp_path / "system-tmp"
    for shared in ("chunks", "data"):
        (system_tmp / shared).mkdir(parents=True)
        (system_tmp / shared / "another-job.bin").write_bytes(b"x")
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.delenv("DATA_OPTIMIZER_CACHE_FOLDER", raising=False)
    optimize_folder(numbered_tree(tmp_path / "folder"), tmp_path / "out", chunk_size=4)
    assert (system_tmp / "chunks" / "another-job.bin").exists() and (system_tmp / "data" / "another-job.bin").exists()
    assert "DATA_OPTIMIZER_CACHE_FOLDER" not in os.environ
    assert not [p.name for p in system_tmp.iterdir() if p.name.startswith("convnetlab-optimize-")]


def split_over(streaming: Path, world: int, workers: int, epoch: int, batch_size: int = 2) -> list[list[int]]:
    """Per rank: the sample ids of one training epoch, as that rank's loader yields them."""
    source = StreamingSource(streaming, seed=3)
    seen = []
    for rank in range(world):
        dataset = source.dataset("train", 3, None)
        source.distribute(dataset, rank, world)
        loader = source.loader(dataset, batch_size, num_workers=workers, pin_memory=False, persistent_workers=False,
                               seed=0)
        loader.resume_at(epoch, 0)
        seen.append([i for images, _ in loader for i in ids(images)])
    return seen


@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_and_workers_see_disjoint_samples_and_every_sample_once_per_epoch(streaming, workers):
    orders = []
    for epoch in (0, 1):
        ranks = split_over(streaming, 2, workers, epoch)
        assert len(ranks[0]) == len(ranks[1]) == N // 2  # equal step counts, as DDP needs
        assert not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == list(range(N))
        assert split_over(streaming, 2, workers, epoch) == ranks  # the same order wherever it is computed
        orders.append(ranks)
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_ddp_drop_last_gives_every_rank_the_same_full_batches_when_the_split_is_uneven(streaming):
    ranks = split_over(streaming, 2, 2, epoch=0, batch_size=3)  # 16 items, 2 ranks x batches of 3
    assert len(ranks[0]) == len(ranks[1]) == 6 and not set(ranks[0]) & set(ranks[1])  # 4 items sit out


def test_streaming_datamodule_batches(streaming):
    dm = datamodule(streaming)
    assert dm.num_classes == 2 and dm.classes == ["even", "odd"] and dm.root == streaming
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 8, 8) and labels.dtype == torch.int64
    assert sorted(i for x, _ in dm.val_dataloader() for i in ids(x)) == list(range(N))
    with pytest.raises(ValueError, match="in_memory"):
        datamodule(streaming, in_memory=True)


PRESETS_AT_8PX = ("default", "none", "alexnet", "vgg", "inception", "resnet", "tv_v2")


@pytest.mark.parametrize("preset", PRESETS_AT_8PX)
def test_every_augment_preset_runs_on_streaming_data(streaming, tmp_path, preset):
    import shutil

    from convnetlab.data.augment import PRESET_CLASSES
    from convnetlab.data.pca_lighting import CACHE_NAME

    copy = tmp_path / "streaming"  # PCA statistics are cached in the root: keep the shared fixture clean
    shutil.copytree(streaming, copy)
    preset_object = PRESET_CLASSES[preset]()  # the class defaults, as conf/augment/<preset>.yaml has them
    dm = datamodule(copy, augment=preset_object)
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
def test_eval_protocols_run_on_streaming_data(streaming, protocol, crops):
    from convnetlab.data.multicrop import CropAveraging, use_protocol

    module = torch.nn.Module()
    module.backbone = torch.nn.Identity()
    dm = datamodule(streaming, batch_size=60)
    use_protocol(module, dm, protocol)
    assert dm.preprocessing.eval_protocol == protocol
    dm.setup("test")  # no test split: test reads val
    images, labels = next(iter(dm.test_dataloader()))
    if crops is None:
        assert images.shape == (16, 3, 8, 8) and not isinstance(module.backbone, CropAveraging)
    else:
        assert dm.eval_batch_size == 60 // crops and isinstance(module.backbone, CropAveraging)
        assert images.shape == (60 // crops, crops, 3, 8, 8)


@pytest.fixture(scope="module")
def with_bad_sample(tmp_path_factory) -> Path:
    root = numbered_tree(tmp_path_factory.mktemp("bad-folder"))
    (root / "train" / "even" / "99.png").write_bytes(GARBAGE_PNG)
    return Path(optimize_folder(root, root.parent / "bad-streaming", chunk_size=4))


def test_bad_image_policy_applies_to_streamed_samples(with_bad_sample):
    from convnetlab.errors import BadImageError

    assert json.loads((with_bad_sample / "classes.json").read_text())["splits"]["train"] == N + 1
    dm = datamodule(with_bad_sample, batch_size=17)
    dm.setup("fit")
    with pytest.raises(BadImageError, match=r"train: train/even/99\.png: .*data\.bad_images=skip"):
        list(dm.train_dataset)
    dm = datamodule(with_bad_sample, batch_size=17, bad_images="skip", augment={"name": "none"})
    dm.setup("fit")
    assert sorted(ids(torch.stack([x for x, _ in filter(None, dm.train_dataset)]))) == list(range(N))
    images, _ = next(iter(dm.train_dataloader()))
    assert len(images) == N  # the bad item is dropped from its batch
    with pytest.raises(ValueError, match="bad_images=maybe"):
        datamodule(with_bad_sample, bad_images="maybe")


def test_streaming_config_instantiates_the_one_datamodule(streaming):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from convnetlab.data import ImageDataModule
    from convnetlab.data.folder import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=streaming", f"data.root={streaming}", "data.image_size=8",
                                          "data.num_workers=0", "augment=alexnet", "augment.lighting=imagenet"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, ImageDataModule) and isinstance(dm.source, StreamingSource)
    assert not dm.source.ordered_by_sampler and dm.num_classes == cfg.data.num_classes == 2
    assert dm.train_transform is not None  # published lighting values: nothing to compute at setup


def test_a_missing_streaming_root_says_how_to_write_it(tmp_path):
    from convnetlab.errors import MissingFileError

    with pytest.raises(MissingFileError, match="action=optimize root="):
        datamodule(tmp_path / "nope").num_classes
    with pytest.raises(MissingFileError, match=r"nope does not exist; write streaming data with"):
        datamodule(tmp_path / "nope").setup("fit")
    assert not (tmp_path / "nope").exists()  # a wrong root is reported, not created


# --- exact mid-epoch resume of the training stream ----------------------------------------------------------

def epochs(dm: StreamingDataModule, loader, count: int, stop_after: int | None = None) -> list[list[tuple]]:
    """(sample ids, labels, pixel sum) per batch for ``count`` epochs, as the fit loop fetches them;
    ``stop_after`` ends every epoch after that many batches (``limit_train_batches``)."""
    out = []
    for _ in range(count):
        batches = []
        for images, labels in loader:
            batches.append((ids(images), labels.tolist(), int(images.sum())))
            if len(batches) == stop_after:
                break
        out.append(batches)
    return out


def fresh(streaming: Path, workers: int, batch_size: int) -> StreamingDataModule:
    torch.manual_seed(7)  # the run seed, as pl.seed_everything sets it before the datamodule is built
    dm = datamodule(streaming, num_workers=workers, batch_size=batch_size, augment={"name": "default"})
    dm.setup("fit")
    return dm


@pytest.mark.parametrize(("workers", "batches"), [(0, 2), (2, 2), (2, 5)])
def test_training_stream_resumes_mid_epoch_at_the_next_batch_with_the_same_augmentation(streaming, workers, batches):
    reference = fresh(streaming, workers, 2)
    full = epochs(reference, reference.train_dataloader(), 3)
    assert [len(e) for e in full] == [8, 8, 8] and full[0] != full[1]
    resumed = fresh(streaming, workers, 2)
    resumed.load_state_dict({"epoch": 1, "batches": batches})  # a checkpoint taken after that many batches
    torch.rand(5)  # the global RNG stands elsewhere after a resume
    assert epochs(resumed, resumed.train_dataloader(), 2) == [full[1][batches:], full[2]]


def test_the_run_seed_keys_the_augmentation_and_data_seed_the_order(streaming):
    first, other = (epochs(dm, dm.train_dataloader(), 1)[0] for dm in (fresh(streaming, 0, 2), fresh(streaming, 0, 2)))
    assert first == other
    torch.manual_seed(8)  # another run seed
    dm = datamodule(streaming, batch_size=2, augment={"name": "default"})
    dm.setup("fit")
    again = epochs(dm, dm.train_dataloader(), 1)[0]
    assert [b[0] for b in again] == [b[0] for b in first] and [b[2] for b in again] != [b[2] for b in first]
    dm = datamodule(streaming, batch_size=2, seed=1)
    dm.setup("fit")
    assert [b[0] for b in epochs(dm, dm.train_dataloader(), 1)[0]] != [b[0] for b in first]


def test_a_lone_last_image_sits_out_so_batchnorm_never_sees_a_batch_of_one(streaming):
    dm = fresh(streaming, 0, 3)
    assert [len(labels) for _, labels in dm.train_dataloader()] == [3] * 5  # 16 items: the 16th sits out


def test_epochs_shortened_by_limit_train_batches_resume_exactly(streaming):
    reference = fresh(streaming, 2, 2)
    short = epochs(reference, reference.train_dataloader(), 3, stop_after=3)
    assert short[0] != short[1] != short[2]  # each shortened epoch starts a new order
    resumed = fresh(streaming, 2, 2)
    resumed.load_state_dict({"epoch": 1, "batches": 1})  # mid-way through the shortened epoch 1
    assert epochs(resumed, resumed.train_dataloader(), 2, stop_after=2) == [short[1][1:], short[2][:2]]
