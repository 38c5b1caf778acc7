"""`convnetlab-embed` and `convnetlab-visualize` on streaming data (an IterableDataset: no indexing, no paths)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from convnetlab.cli.embed import embed
from convnetlab.cli.visualize import visualize
from convnetlab.data.embeddings import load_embeddings
from convnetlab.data.streaming_writer import optimize_folder
from convnetlab.lit import ImageClassifier
from test_streaming import N, numbered_tree

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def streaming_and_checkpoint(tmp_path_factory) -> tuple[dict, Path]:
    root = numbered_tree(tmp_path_factory.mktemp("folder"))
    streaming = optimize_folder(root, root.parent / "streaming", chunk_size=4)
    data = {"_target_": "convnetlab.data.streaming.StreamingDataModule", "name": "streaming", "root": streaming,
            "num_classes": 2, "image_size": 8, "resize_size": 8, "batch_size": 4, "num_workers": 0,
            "persistent_workers": False}
    torch.manual_seed(0)
    backbone = {"_target_": "convnetlab.models.build_model", "arch": "resnet18", "num_classes": 2, "input_size": 8,
                "width": 0.125}
    module = ImageClassifier(backbone=backbone, num_classes=2, mean=[0.5] * 3, std=[0.25] * 3,
                             optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    ckpt = root.parent / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    return data, ckpt


def test_embed_reads_every_streamed_sample_in_stored_order(streaming_and_checkpoint, tmp_path):
    data, ckpt = streaming_and_checkpoint
    cfg = OmegaConf.create({"ckpt_path": str(ckpt), "seed": 0, "batch_size": 4, "device": "cpu", "knn_k": 3,
                            "data": data})
    metrics = embed(cfg, tmp_path)
    assert metrics["num_classes"] == 2 and 0 <= metrics["embed/knn_acc1"] <= 1
    for split in ("train", "test"):  # no test split: test falls back to val
        saved = load_embeddings(tmp_path / f"embeddings_{split}.npz")
        assert saved["features"].shape == (N, metrics["embed/dim"])
        assert sorted(saved["labels"].tolist()) == [0] * (N // 2) + [1] * (N // 2)
        assert saved["paths"].tolist() == [f"{split}#{i}" for i in range(N)]
        assert saved["classes"].tolist() == ["even", "odd"]
    first = load_embeddings(tmp_path / "embeddings_train.npz")
    (tmp_path / "again").mkdir()
    embed(cfg, tmp_path / "again")  # the train split is read in stored order, not reshuffled
    assert (load_embeddings(tmp_path / "again" / "embeddings_train.npz")["labels"] == first["labels"]).all()


def test_visualize_picks_one_image_per_class_first_by_iterating(streaming_and_checkpoint, tmp_path):
    data, ckpt = streaming_and_checkpoint
    cfg = OmegaConf.create({"ckpt_path": str(ckpt), "seed": 0, "device": "cpu", "data": data, "images": None,
                            "n_images": 3, "layers": None, "n_layers": 2, "max_channels": 4, "grad_cam_layer": None,
                            "smoothgrad": {"samples": 2, "noise": 0.15}, "sanity_check": {"threshold": 0.5}})
    summary = visualize(cfg, tmp_path)
    images = summary["images"]
    assert len(images) == 3 and all(i["name"].startswith("#") for i in images)
    assert {images[0]["label"], images[1]["label"]} == {"even", "odd"}  # one of each class comes first
    assert (tmp_path / "sanity_check.png").is_file() and (tmp_path / "feature_maps.png").is_file()
