"""Data layer: embedded dataset generation, ImageFolder reading, DataModules and data configs."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

import convnetlab.data.shapes as shapes
from convnetlab.data import (
    DigitsDataModule,
    ImageFolderDataModule,
    ShapesDataModule,
    generate_shapes,
    register_resolvers,
)
from convnetlab.data.folder import ImageFolderDataset

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"
TINY = {"train": 6, "val": 3, "test": 3}


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _tiny_shapes(tmp_path: Path, **kwargs) -> ShapesDataModule:
    params = dict(root=tmp_path, num_classes=4, per_class_train=6, per_class_val=3, per_class_test=3)
    return ShapesDataModule(**params, batch_size=8, num_workers=0, **kwargs)


def _image_tree(root: Path, splits: dict[str, list[str]], per_class: int = 2, ext: str = ".png") -> Path:
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}{ext}")
    return root


# --- shapes generation -------------------------------------------------------------------


def test_shapes_generation_is_deterministic(tmp_path):
    a = generate_shapes(tmp_path / "a" / "s", 4, 37, TINY, "medium", seed=3)
    b = generate_shapes(tmp_path / "b" / "s", 4, 37, TINY, "medium", seed=3)
    files_a, files_b = _files(a), _files(b)
    assert files_a.keys() == files_b.keys() and len(files_a) == 4 * 12 + 1
    assert all(files_a[k].read_bytes() == files_b[k].read_bytes() for k in files_a)
    c = generate_shapes(tmp_path / "c" / "s", 4, 37, TINY, "medium", seed=4)
    assert (a / "train/circle/00000.jpg").read_bytes() != (c / "train/circle/00000.jpg").read_bytes()


def test_shapes_generation_is_idempotent(tmp_path):
    out = generate_shapes(tmp_path / "s", 4, 37, TINY)
    before = {k: p.stat().st_mtime_ns for k, p in _files(out).items()}
    assert generate_shapes(tmp_path / "s", 4, 37, TINY) == out
    assert {k: p.stat().st_mtime_ns for k, p in _files(out).items()} == before


def test_interrupted_shapes_generation_is_never_reused(tmp_path, monkeypatch):
    target = tmp_path / "s"
    leftover = tmp_path / ".s.tmp-killed"  # what a SIGKILLed run leaves behind
    (leftover / "train" / "circle").mkdir(parents=True)
    real_render, calls = shapes.render_shape, []

    def failing_render(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real_render(*args)

    monkeypatch.setattr(shapes, "render_shape", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_shapes(target, 4, 37, TINY)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name]  # our own temp dir was removed

    monkeypatch.setattr(shapes, "render_shape", real_render)
    generate_shapes(target, 4, 37, TINY)
    assert len(_files(target)) == 4 * 12 + 1


def test_shapes_mean_colour_does_not_identify_the_class(tmp_path):
    """Nearest-class-mean on per-image mean RGB must stay near chance (10%), far below 50%."""
    out = generate_shapes(tmp_path / "s", 10, 37, {"train": 40, "val": 20}, "medium")
    classes = sorted(p.name for p in (out / "train").iterdir())

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        x = [np.asarray(Image.open(f)).mean((0, 1)) for c in classes for f in sorted((out / split / c).iterdir())]
        y = [k for k, c in enumerate(classes) for _ in (out / split / c).iterdir()]
        return np.array(x), np.array(y)

    (xt, yt), (xv, yv) = features("train"), features("val")
    centroids = np.stack([xt[yt == k].mean(0) for k in range(10)])
    predicted = np.linalg.norm(xv[:, None] - centroids[None], axis=2).argmin(1)
    assert (predicted == yv).mean() < 0.3


# --- DataModules -------------------------------------------------------------------------


def test_shapes_datamodule_batches(tmp_path):
    dm = _tiny_shapes(tmp_path)
    assert dm.num_classes == 4 and dm.channels == 3 and dm.image_size == 32  # before any disk access
    assert dm.classes == sorted(shapes.SHAPE_NAMES[:4])
    dm.prepare_data()
    assert dm.root == tmp_path / "shapes-c4-s37-n6-3-3-medium-seed0"
    assert sorted(p.name for p in (dm.root / "train").iterdir()) == dm.classes
    assert json.loads((dm.root / "classes.json").read_text()) == {str(i): c for i, c in enumerate(dm.classes)}
    dm.setup()
    assert len(dm.train_dataset) == 24 and len(dm.val_dataset) == 12 and len(dm.test_dataset) == 12
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        images, labels = next(iter(loader))
        assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
        assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 4
    path, label = dm.val_dataset.samples[0]
    assert Path(path).parent.name == dm.classes[label]


def test_train_loader_with_workers(tmp_path):
    dm = _tiny_shapes(tmp_path, in_memory=True)
    dm.num_workers, dm.persistent_workers = 1, False
    dm.setup("fit")
    images, _ = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)


def test_in_memory_gives_the_same_eval_batches(tmp_path):
    batches = []
    for in_memory in (False, True):
        dm = _tiny_shapes(tmp_path, in_memory=in_memory)
        dm.setup("validate")
        batches.append(list(dm.val_dataloader()))
    for (xa, ya), (xb, yb) in zip(*batches, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_digits_datamodule(tmp_path):
    dm = DigitsDataModule(root=tmp_path / "a", num_workers=0, batch_size=16)
    assert dm.num_classes == 10 and dm.channels == 1 and len(dm.mean) == 1
    dm.setup()
    splits = {"train": dm.train_dataset, "val": dm.val_dataset, "test": dm.test_dataset}
    assert sum(len(d) for d in splits.values()) == 1797
    totals = np.bincount([label for d in splits.values() for _, label in d.samples])
    for name, fraction in (("val", 0.15), ("test", 0.15)):
        per_class = np.bincount([label for _, label in splits[name].samples])
        assert np.all(np.abs(per_class - fraction * totals) <= 1.5), name  # stratified
    images, _ = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 32, 32)

    again = DigitsDataModule(root=tmp_path / "b")
    again.prepare_data()
    files_a, files_b = _files(dm.root), _files(again.root)
    assert files_a.keys() == files_b.keys()
    assert all(files_a[k].read_bytes() == files_b[k].read_bytes() for k in files_a)


def test_imagefolder_uses_val_for_missing_test_and_reads_any_extension_case(tmp_path):
    root = _image_tree(tmp_path / "ds", {"train": ["b", "a"], "val": ["a", "b"]}, ext=".JPEG")
    dm = ImageFolderDataModule(root, image_size=16, num_workers=0, batch_size=4)
    assert dm.classes == ["a", "b"] and dm.num_classes == 2
    dm.setup()
    assert dm.test_dataset.samples == dm.val_dataset.samples
    images, labels = next(iter(dm.test_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]


def test_grayscale_decoding_of_rgb_files(tmp_path):
    root = _image_tree(tmp_path / "ds", {"train": ["a"], "val": ["a"]}, ext=".webp")
    dataset = ImageFolderDataset(root / "train", ["a"], channels=1)
    assert dataset[0][0].shape == (1, 20, 24)


# --- errors name the offending path ------------------------------------------------------


def test_missing_root_names_the_path(tmp_path):
    dm = ImageFolderDataModule(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*train/<class>"):
        dm.num_classes


def test_missing_val_names_the_path(tmp_path):
    root = _image_tree(tmp_path / "ds", {"train": ["a", "b"]})
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "val"))):
        ImageFolderDataModule(root, num_workers=0).setup("fit")


def test_class_mismatch_names_folder_and_classes(tmp_path):
    root = _image_tree(tmp_path / "ds", {"train": ["a", "b"], "val": ["a", "c"]})
    with pytest.raises(ValueError, match=re.escape(str(root / "val")) + r".*missing \['b'\], extra \['c'\]"):
        ImageFolderDataModule(root, num_workers=0).setup("fit")


def test_corrupt_image_names_the_file(tmp_path):
    root = _image_tree(tmp_path / "ds", {"train": ["a"], "val": ["a"]})
    bad = root / "val" / "a" / "bad.jpg"
    bad.write_bytes(b"not an image")
    dm = ImageFolderDataModule(root, image_size=16, num_workers=0)
    dm.setup("validate")
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        list(dm.val_dataloader())
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        ImageFolderDataModule(root, image_size=16, in_memory=True).setup("validate")


# --- configs -----------------------------------------------------------------------------


def _data_config(name: str, **overrides) -> DictConfig:
    cfg = OmegaConf.create({"data": OmegaConf.load(CONF / f"{name}.yaml"), "paths": {}})
    return OmegaConf.merge(cfg, {"data": overrides})


def test_resolver_counts_class_folders_and_is_idempotent(tmp_path):
    register_resolvers()
    register_resolvers()
    root = _image_tree(tmp_path / "ds", {"train": ["a", "b", "c"], "val": ["a", "b", "c"]}, per_class=1)
    for name in ("imagefolder", "imagenet"):
        cfg = _data_config(name, root=str(root), num_workers=0)
        assert {"name", "num_classes", "image_size", "channels"} <= cfg.data.keys()
        assert cfg.data.num_classes == 3
        dm = instantiate(cfg.data)
        assert dm.num_classes == 3 and dm.name == name and dm.mean == (0.485, 0.456, 0.406)
        dm.setup("validate")


@pytest.mark.parametrize("name", ["shapes", "digits"])
def test_embedded_configs_instantiate(tmp_path, name):
    cfg = _data_config(name, num_workers=0)
    cfg.paths.data_dir = str(tmp_path)
    dm = instantiate(cfg.data)
    assert (dm.name, dm.num_classes, dm.image_size, dm.channels) == (
        name, cfg.data.num_classes, cfg.data.image_size, cfg.data.channels
    )
    assert dm.root.parent == tmp_path and not dm.persistent_workers

