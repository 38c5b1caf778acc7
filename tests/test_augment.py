"""Augmentation presets, PCA lighting and MixUp/CutMix: shapes, labels, statistics and the mixed loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import TINY_DATA, read_metrics, run_cli
from convnetlab.data import ImageFolderDataModule, read_image
from convnetlab.data.augment import PRESET_CLASSES, PRESETS, MixUpCutMix, build_preset, decode_size, scaled
from convnetlab.data.pca_lighting import CACHE_NAME, IMAGENET_EIGVAL, IMAGENET_EIGVEC, PCALighting, cached_pixel_pca
from convnetlab.lit import ImageClassifier

LENET = {"_target_": "convnetlab.models.build_model", "arch": "lenet5", "num_classes": 3, "in_channels": 3,
         "input_size": 32, "variant": "modern"}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05}


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = (np.linspace(0, 255, w)[None, :, None] * 0.6 + rng.integers(0, 100, (h, w, 3))).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def jpeg_tree(tmp_path_factory) -> Path:
    """3 classes x 4 JPEGs per split at 100x75 (a 4:3 ImageNet-like shape)."""
    root = tmp_path_factory.mktemp("jpegs")
    for split in ("train", "val"):
        for label, name in enumerate(("a", "b", "c")):
            for i in range(4):
                _jpeg(root / split / name / f"{i}.JPEG", (100, 75), seed=10 * label + i)
    return root


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_keeps_shape_dtype_and_label_on_real_jpegs(jpeg_tree, preset):
    dm = ImageFolderDataModule(jpeg_tree, image_size=32, batch_size=4, num_workers=0, augment={"name": preset})
    dm.setup("fit")
    for index in range(len(dm.train_dataset)):
        image, label = dm.train_dataset[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
        assert label == dm.train_dataset.samples[index][1]
    # Called the v2 way with the label alongside, no per-image preset touches it.
    image = read_image(str(jpeg_tree / "train" / "b" / "0.JPEG"), 3)
    for _ in range(5):
        out, label = dm.train_transform(image, 1)
        assert label == 1 and out.shape == (3, 32, 32)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_at_imagenet_resolution(tmp_path, preset):
    image = read_image(str(_jpeg(tmp_path / "x.jpg", (500, 375), seed=0)), 3)
    out = build_preset(preset, 224)(image)
    assert out.dtype == torch.uint8 and out.shape == (3, 224, 224)


def test_sizes_scale_with_the_resolution():
    assert scaled(256, 224) == 256 and scaled(256, 32) == 37 and scaled(512, 64) == 146
    shortest = build_preset("vgg", 32).transforms[0]
    assert min(shortest.min_size) == 37 and max(shortest.min_size) == 73
    assert decode_size("alexnet", 224) == 256 and decode_size("none", 32) == 37


def test_reduced_size_decoding_keeps_the_needed_side(tmp_path):
    path = str(_jpeg(tmp_path / "big.jpg", (500, 375), seed=1))
    assert read_image(path, 3).shape == (3, 375, 500)
    small = read_image(path, 3, decode_size=37)
    assert small.shape == (3, 47, 63)  # 1/8 scale, shorter side still >= 37
    assert read_image(path, 3, decode_size=256).shape == (3, 375, 500)  # 1/2 would go below 256
    assert read_image(path, 3, decode_size=90).shape == (3, 94, 125)  # 1/4 scale
    assert read_image(path, 3, decode_size=120).shape == (3, 375, 500)  # 1/2 is not used (decode.py)


def test_pca_lighting_noise_has_the_published_statistics():
    """On a flat grey image every pixel moves by 255 * eigvec @ (alpha * eigval), alpha ~ N(0, 0.1)."""
    torch.manual_seed(0)
    lighting = PCALighting(IMAGENET_EIGVAL, IMAGENET_EIGVEC, alpha_std=0.1)
    grey = torch.full((3, 2, 2), 128, dtype=torch.uint8)
    offsets = torch.stack([lighting(grey)[:, 0, 0].float() - 128 for _ in range(4000)])
    eigvec = torch.tensor(IMAGENET_EIGVEC)
    projected = offsets @ eigvec  # coordinates along the principal axes
    expected_std = 255 * 0.1 * torch.tensor(IMAGENET_EIGVAL)
    assert abs(projected[:, 0].std() / expected_std[0] - 1) < 0.05
    assert abs(projected[:, 1].std() / expected_std[1] - 1) < 0.25  # ~0.5 grey levels, rounding adds noise
    assert projected.mean(0).abs().max() < 0.3
    out = lighting(grey)
    assert torch.all(out == out[:, :1, :1])  # one shift for the whole image


def test_pixel_pca_recovers_known_axes_and_is_cached(tmp_path):
    """Pixels spread along two known orthogonal RGB axes give those axes back, largest first."""
    torch.manual_seed(0)
    axis1 = torch.tensor([1.0, 1.0, 1.0]) / 3**0.5
    axis2 = torch.tensor([1.0, -1.0, 0.0]) / 2**0.5
    images = []
    for _ in range(20):
        a, b = torch.randn(2, 1, 32, 32) * torch.tensor([0.2, 0.05]).view(2, 1, 1, 1)
        pixels = 0.5 + axis1.view(3, 1, 1) * a + axis2.view(3, 1, 1) * b
        images.append((pixels.clamp(0, 1) * 255).round().to(torch.uint8))
    stats = cached_pixel_pca(tmp_path, images)
    eigvec = torch.tensor(stats["eigvec"])
    assert abs(abs(eigvec[:, 0] @ axis1) - 1) < 0.01 and abs(abs(eigvec[:, 1] @ axis2) - 1) < 0.02
    assert stats["eigval"][0] == pytest.approx(0.2, rel=0.05) and stats["eigval"][1] == pytest.approx(0.05, rel=0.1)
    assert json.loads((tmp_path / CACHE_NAME).read_text()) == stats
    assert cached_pixel_pca(tmp_path) == stats  # second use reads the cache, needs no images


def test_alexnet_preset_on_a_folder_computes_and_caches_its_statistics(jpeg_tree):
    dm = ImageFolderDataModule(jpeg_tree, image_size=32, num_workers=0, augment={"name": "alexnet"})
    assert dm.train_transform is None  # needs the training pixels
    dm.setup("fit")
    stats = json.loads((jpeg_tree / CACHE_NAME).read_text())
    # Against the PCA of every training pixel, computed here (the preset samples pixels, so close, not equal).
    pixels = np.concatenate([np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255
                             for path in sorted((jpeg_tree / "train").rglob("*.JPEG"))])
    values, vectors = np.linalg.eigh(np.cov(pixels.T))
    assert stats["eigval"] == pytest.approx(np.sqrt(values[::-1]).tolist(), rel=0.1)
    assert abs(np.dot(np.array(stats["eigvec"])[:, 0], vectors[:, -1])) > 0.99  # the shared-gradient axis
    lighting = dm.train_transform.transforms[-1]  # the preset lights with exactly the cached statistics
    assert torch.allclose(lighting.eigval.double(), torch.tensor(stats["eigval"], dtype=torch.float64))
    imagenet = ImageFolderDataModule(jpeg_tree, image_size=32, num_workers=0, name="imagenet",
                                     augment={"name": "resnet"})
    imagenet.setup("fit")
    lighting = imagenet.train_transform.transforms[-1]
    assert torch.allclose(lighting.eigval, torch.tensor(IMAGENET_EIGVAL))


def test_tv_v2_loader_yields_soft_targets(jpeg_tree):
    augment = {"name": "tv_v2", "mixup_alpha": 0.2, "cutmix_alpha": 1.0}
    dm = ImageFolderDataModule(jpeg_tree, image_size=32, batch_size=6, num_workers=0, augment=augment)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32 and images.max() <= 255
    assert targets.shape == (6, 3) and torch.allclose(targets.sum(1), torch.ones(6))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_mixup_and_cutmix_loss_is_the_mixed_target_loss(label_smoothing):
    """Cross-entropy on the mixed soft target equals lam * CE(y_a) + (1 - lam) * CE(y_b)."""
    torch.manual_seed(0)
    module = ImageClassifier(backbone=LENET, num_classes=3, optimizer=SGD, label_smoothing=label_smoothing)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    batch = [(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), int(y)) for y in labels]
    for alphas in ((0.2, 0.0), (0.0, 1.0)):  # MixUp alone, then CutMix alone
        images, targets = MixUpCutMix(3, *alphas)(batch)
        logits = module.logits(images)
        y_b = labels.roll(1)  # torchvision mixes each sample with its predecessor in the batch
        lam = targets[torch.arange(6), labels]
        lam = torch.where(labels == y_b, torch.ones_like(lam), lam)  # same class: the target is one-hot
        per_sample_a = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
        per_sample_b = F.cross_entropy(logits, y_b, reduction="none", label_smoothing=label_smoothing)
        expected = (lam * per_sample_a + (1 - lam) * per_sample_b).mean()
        assert torch.allclose(module.loss(logits, targets), expected, atol=1e-5)
        assert torch.equal(targets.argmax(1), torch.where(lam >= 0.5, labels, y_b))  # train accuracy's hard label


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="augment=foo is not a preset; choose one of default"):
        build_preset("foo", 32)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tv_v2"])
def test_training_runs_with_a_preset(preset, data_dir, tmp_path):
    run = tmp_path / preset
    run_cli("train", *TINY_DATA, "model=lenet5", "trainer.max_epochs=1", "logger=csv", f"augment={preset}",
            f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    config = (run / ".hydra" / "config.yaml").read_text()
    assert f"_target_: convnetlab.data.augment.{PRESET_CLASSES[preset].__name__}" in config
    assert "test/acc1" in read_metrics(run)
    if preset == "tv_v2":
        assert "label_smoothing: 0.1" in config
