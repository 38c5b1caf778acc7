"""Embeddings: the exported features are the model's pre-classifier output, the probes score them, and
`data=embeddings` trains a new head on them without images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import read_metrics, run_cli
from convnetlab.analysis.embeddings import extract_embeddings, knn_accuracy, linear_probe_accuracy
from convnetlab.data import read_image
from convnetlab.data.embeddings import EmbeddingsDataModule, load_embeddings, save_embeddings
from convnetlab.lit import ImageClassifier

SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05}
# Source task: 4 shapes; the embedded task: 3 other shapes (the point of embeddings is reuse).
SHAPES = {"_target_": "convnetlab.data.ShapesDataModule", "name": "shapes", "num_classes": 3, "class_offset": 4,
          "per_class_train": 6, "per_class_val": 4, "per_class_test": 4, "num_workers": 0, "in_memory": False}


def classifier(arch: str, **kwargs) -> ImageClassifier:
    torch.manual_seed(0)
    backbone = {"_target_": "convnetlab.models.build_model", "arch": arch, "num_classes": 4, "input_size": 32,
                "width": 0.125, **kwargs}
    return ImageClassifier(backbone=backbone, num_classes=4, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)


def images(n: int = 10) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 4)


def without_head(module: ImageClassifier, head: str) -> ImageClassifier:
    """An independent reference: the same network with its classifier replaced by Identity."""
    reference = copy.deepcopy(module).eval()
    setattr(reference.backbone, head, nn.Identity())
    return reference


def cosine_knn(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int) -> float:
    """k nearest training vectors by cosine similarity, each voting with its similarity (written out in numpy)."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(test_x.astype(np.float64)) @ unit(train_x.astype(np.float64)).T
    correct = 0
    for row, truth in zip(similarity, test_y):
        nearest = np.argsort(-row)[:k]
        votes = np.bincount(train_y[nearest], weights=row[nearest], minlength=int(train_y.max()) + 1)
        correct += int(votes.argmax() == truth)
    return correct / len(test_y)


@pytest.mark.parametrize("arch, head", [("resnet18", "fc"), ("vgg11_bn", "classifier")])
def test_embeddings_are_the_pre_classifier_output(arch, head):
    module = classifier(arch)
    features, labels = extract_embeddings(module, images(), batch_size=4)
    with torch.no_grad():
        expected = without_head(module, head)(images().tensors[0])
    torch.testing.assert_close(torch.from_numpy(features), expected.flatten(1))
    assert labels.tolist() == (torch.arange(10) % 4).tolist() and module.training  # mode restored


def test_probes_read_separable_features_and_knn_votes_by_similarity():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    y = np.repeat(np.arange(3), 20)
    x = centres[y] + rng.normal(size=(60, 16))
    assert linear_probe_accuracy(x[::2], y[::2], x[1::2], y[1::2]) == 1.0
    assert knn_accuracy(x[::2], y[::2], x[1::2], y[1::2], k=5) == 1.0
    # One very close neighbour of class 1 outweighs two distant ones of class 0.
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    assert knn_accuracy(train, np.array([1, 0, 0]), np.array([[1.0, 0.1]]), np.array([1]), k=3) == 1.0


def test_embeddings_datamodule_checks_sizes_and_keeps_the_first_n_per_class(tmp_path):
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    for split in ("train", "test"):
        save_embeddings(tmp_path / f"embeddings_{split}.npz", np.arange(18, dtype=np.float32).reshape(9, 2), labels,
                        [f"{split}/{i}.jpg" for i in range(9)], ["a", "b", "c"])
    dm = EmbeddingsDataModule(tmp_path, num_classes=3, feature_dim=2, per_class_train=2)
    dm.setup()
    features, targets = dm.datasets["train"].tensors
    assert targets.tolist() == [0, 0, 1, 1, 2, 2] and features[2].tolist() == [6.0, 7.0]
    assert len(dm.datasets["val"]) == 9  # no val file: val is test
    assert (dm.channels, dm.image_size, dm.mean, dm.std) == (2, 1, (), ())
    with pytest.raises(ValueError, match="data.num_classes=3 data.feature_dim=2"):
        EmbeddingsDataModule(tmp_path, num_classes=4, feature_dim=2).setup()


@pytest.mark.slow
def test_convnetlab_embed_writes_the_models_features_and_a_head_trains_on_them(data_dir, tmp_path):
    module = classifier("resnet18")
    data = TensorDataset(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 4, (8,)))
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(data, batch_size=8))
    trainer.save_checkpoint(tmp_path / "model.ckpt")

    overrides = ["data=shapes", *(f"data.{k}={v}" for k, v in SHAPES.items() if not k.startswith("_"))]
    run_cli("embed", f"ckpt_path={tmp_path / 'model.ckpt'}", *overrides, f"hydra.run.dir={tmp_path / 'embed'}",
            cwd=tmp_path, data_dir=data_dir)
    metrics = read_metrics(tmp_path / "embed")
    assert metrics["embed/dim"] == 64

    datamodule = instantiate(OmegaConf.create({**SHAPES, "root": str(data_dir)}))
    datamodule.setup()
    module.eval()
    for split, dataset in (("train", datamodule.train_dataset), ("test", datamodule.test_dataset)):
        saved = load_embeddings(tmp_path / "embed" / f"embeddings_{split}.npz")
        batch = torch.stack([datamodule.eval_transform(read_image(path, 3)) for path, _ in dataset.samples])
        with torch.no_grad():
            expected = without_head(module, "fc")(batch)
        torch.testing.assert_close(torch.from_numpy(saved["features"]), expected, rtol=1e-4, atol=1e-5)
        assert saved["paths"].tolist() == [p for p, _ in dataset.samples]
        assert saved["labels"].tolist() == [label for _, label in dataset.samples]
        assert saved["classes"].tolist() == ["cross", "heart", "ring"]
    # The reported probe accuracies, recomputed here from the saved train/test embeddings.
    train, test = (load_embeddings(tmp_path / "embed" / f"embeddings_{split}.npz") for split in ("train", "test"))
    assert metrics["embed/knn_acc1"] == pytest.approx(cosine_knn(train["features"], train["labels"], test["features"],
                                                                 test["labels"], k=5))
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train["features"])
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(train["features"]), train["labels"])
    predicted = probe.predict(scaler.transform(test["features"]))
    assert metrics["embed/linear_acc1"] == pytest.approx(float((predicted == test["labels"]).mean()))

    run_cli("train", "data=embeddings", f"data.root={tmp_path / 'embed'}", "data.num_classes=3", "data.feature_dim=64",
            "model=linear_head", "trainer.max_epochs=2", "logger=csv", f"hydra.run.dir={tmp_path / 'head'}",
            cwd=tmp_path, data_dir=data_dir)
    head = read_metrics(tmp_path / "head")
    assert head["model"] == "linear_head" and head["data"] == "embeddings" and head["params"] == 64 * 3 + 3
    trained_head = ImageClassifier.load_from_checkpoint(head["ckpt_best"], map_location="cpu", weights_only=True).eval()
    with torch.no_grad():  # the head's test top-1 is its best checkpoint's accuracy on the saved test embeddings
        predicted = trained_head(torch.from_numpy(test["features"])).argmax(1).numpy()
    assert head["test/acc1"] == pytest.approx(float((predicted == test["labels"]).mean()), abs=1e-6)
