"""Filters, feature maps, saliency, SmoothGrad, Grad-CAM, the randomisation sanity check, the
VisualLogging callback (W&B offline, TensorBoard, PNG) and `convnetlab-visualize` end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import TINY_DATA, run_cli
from convnetlab.analysis.attribution import (SANITY_THRESHOLD, grad_cam, input_edges, last_conv_stage, map_similarity,
                                             randomized_copy, saliency, sanity_check, smoothgrad)
from convnetlab.analysis.filters import default_feature_layers, feature_maps, filter_grid, resolve_layers
from convnetlab.analysis.samples import image_files, pick_images
from convnetlab.callbacks import VisualLogging
from convnetlab.lit import ImageClassifier
from convnetlab.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 16 * 16, 2))


def region_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images labelled by the sign of their top-left 4x4 patch: only that region matters."""
    x = torch.randn(n, 1, 16, 16, generator=generator)
    return x, (x[:, 0, :4, :4].mean((1, 2)) > 0).long()


@pytest.fixture(scope="module")
def trained_tiny_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = tiny_net()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(100):
        x, y = region_task(64, generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y = region_task(16, generator)
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.75  # it learned the task
    return model, x, y


# ----------------------------------------------------------------------------- filters, feature maps
@pytest.mark.parametrize(("shape", "grid_shape"), [
    ((6, 1, 5, 5), (1, 2 * 6 + 1, 3 * 6 + 1)),         # grayscale stem: 6 tiles, 3 per row
    ((8, 3, 3, 3), (3, 3 * 4 + 1, 3 * 4 + 1)),         # RGB stem: colour tiles
    ((16, 6, 5, 5), (1, 16 * 6 + 1, 6 * 6 + 1)),       # deeper layer: a row per filter, a column per input
])
def test_filter_grid_has_one_tile_per_kernel_and_values_in_unit_range(shape, grid_shape):
    grid = filter_grid(torch.randn(shape) * 7 + 3)
    assert tuple(grid.shape) == grid_shape
    assert grid.min() >= 0 and grid.max() <= 1
    assert torch.isclose(grid[:, 1:1 + shape[2], 1:1 + shape[3]].amin(), torch.tensor(0.0))
    assert torch.isclose(grid[:, 1:1 + shape[2], 1:1 + shape[3]].amax(), torch.tensor(1.0))  # each tile scaled


def test_feature_maps_capture_the_layer_outputs_and_remove_their_hooks():
    model = build_model("lenet5", 10, in_channels=1, input_size=32).eval()
    x = torch.randn(2, 1, 32, 32)
    maps = feature_maps(model, x, ["features.c1", "features.act3"])
    assert tuple(maps["features.c1"].shape) == (2, 6, 28, 28) and tuple(maps["features.act3"].shape) == (2, 16, 10, 10)
    assert torch.equal(maps["features.c1"], model.features.c1(x))  # not overwritten by the in-place ReLU
    assert all(not m._forward_hooks for m in model.modules())
    assert default_feature_layers(model, x) == ["features.c1", "features.c3"]  # c5 is 1x1 on 32 px


def test_an_unknown_layer_lists_the_valid_conv_layers():
    model = build_model("lenet5", 10, in_channels=1, input_size=32)
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*conv layers are: features\.c1, features\.c3, features\.c5"):
        resolve_layers(model, ["nope"])


# ----------------------------------------------------------------------------- attribution
def test_saliency_is_the_max_abs_input_gradient_of_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(leaf), y, reduction="sum"), leaf)
    assert torch.allclose(saliency(model, x, y), grad.abs().amax(dim=1), atol=1e-7)
    assert not x.requires_grad and all(p.grad is None for p in model.parameters())


def test_smoothgrad_is_reproducible_and_leaves_the_global_rng_alone(trained_tiny_net):
    model, x, y = trained_tiny_net
    state = torch.get_rng_state()
    first = smoothgrad(model, x[:2], y[:2], samples=4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, smoothgrad(model, x[:2], y[:2], samples=4, seed=3))
    assert first.shape == (2, 16, 16) and not torch.equal(first, saliency(model, x[:2], y[:2]))


@pytest.mark.parametrize(("arch", "channels", "layer"), [
    ("resnet18", 3, "layer4"), ("googlenet", 3, "inception5b"), ("lenet5", 1, "features.act3"),
])
def test_grad_cam_is_non_negative_input_sized_at_the_last_conv_stage(arch, channels, layer):
    torch.manual_seed(0)
    width = {} if arch == "lenet5" else {"width": 0.125}
    model = build_model(arch, 4, in_channels=channels, input_size=32, **width).eval()
    x = torch.randn(2, channels, 32, 32)
    assert last_conv_stage(model, x) == layer
    cam = grad_cam(model, x, torch.tensor([1, 3]), layer)
    assert cam.shape == (2, 32, 32) and cam.min() >= 0 and cam.max() > 0
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_sanity_check_flags_a_method_that_ignores_the_weights(trained_tiny_net):
    model, x, y = trained_tiny_net
    result = sanity_check(input_edges, model, x, y)
    assert result.spearman > 0.9 and result.pearson > 0.9 and result.flagged


def test_sanity_check_passes_gradients_of_a_trained_vs_randomised_model(trained_tiny_net):
    model, x, y = trained_tiny_net
    before = [p.clone() for p in model.parameters()]
    result = sanity_check(saliency, model, x, y)
    assert result.trained.std() > 0 and result.randomized.std() > 0  # real maps, not the constant-map rule
    assert abs(result.spearman) < 0.3 and not result.flagged and SANITY_THRESHOLD == 0.5
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the trained model is untouched


@pytest.mark.parametrize(("b", "spearman"), [
    ([1.0, 2.0, 3.0, 4.0, 5.0], 1.0),
    ([5.0, 4.0, 3.0, 2.0, 1.0], -1.0),
    ([2.0, 1.0, 3.0, 4.0, 5.0], 0.9),          # one adjacent swap: 1 - 6 * 2 / (5 * 24)
    ([1.0, 2.0, 3.0, 5.0, 5.0], 0.9746794),   # a tie shares rank 4.5 (scipy's spearmanr)
])
def test_map_similarity_is_the_spearman_correlation_of_the_two_rankings(b, spearman):
    a = [0.1, 0.2, 0.3, 0.4, 0.5]
    rho, pearson = map_similarity(torch.tensor(a), torch.tensor(b))
    assert rho == pytest.approx(spearman, abs=1e-6)
    assert pearson == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-6)
    assert map_similarity(torch.tensor(a), -torch.tensor(b))[0] == pytest.approx(spearman, abs=1e-6)  # |values|


def test_randomized_copy_redraws_every_parameter(trained_tiny_net):
    model, _, _ = trained_tiny_net
    copy = randomized_copy(model, seed=1)
    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), copy.parameters()))


# ----------------------------------------------------------------------------- image selection
def test_pick_images_takes_one_image_per_class_first_in_dataset_order():
    data = TensorDataset(torch.arange(6).view(6, 1, 1, 1).to(torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]))
    images, labels, _ = pick_images(data, 4)
    assert labels.tolist() == [0, 1, 2, 0] and images.flatten().tolist() == [0, 2, 4, 1]


def test_an_image_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(FileNotFoundError, match="no images .* found in"):
        image_files(str(tmp_path))


# ----------------------------------------------------------------------------- callback
def _module() -> ImageClassifier:
    torch.manual_seed(0)
    backbone = {"_target_": "convnetlab.models.build_model", "arch": "lenet5", "num_classes": 4, "in_channels": 3,
                "input_size": 32}
    return ImageClassifier(backbone=backbone, num_classes=4, optimizer={"_target_": "torch.optim.SGD", "_partial_": True,
                           "lr": 0.01}, mean=[0.5] * 3, std=[0.25] * 3)


def _loader(n: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                                    torch.arange(n) % 4), batch_size=8)


def test_pictures_restore_train_mode_and_leave_no_hooks_or_grads():
    module, callback = _module(), VisualLogging(n_images=4)
    callback.images, callback.labels, _ = pick_images(_loader().dataset, 4)
    module.train()
    pictures = callback.pictures(module)
    assert module.training and all(m.training for m in module.modules())
    assert all(p.grad is None and p.requires_grad for p in module.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in module.modules())
    assert set(pictures) == {"filters", "saliency", "grad_cam"}
    assert all(p.shape[0] == 3 and 0 <= p.min() and p.max() <= 1 and p.std() > 0.05 for p in pictures.values())
    assert not torch.equal(pictures["saliency"], pictures["grad_cam"])  # two methods, two pictures


def test_callback_logs_images_to_wandb_tensorboard_and_csv(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for key in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = [CSVLogger(tmp_path, name="", version=""), TensorBoardLogger(tmp_path / "tb", name="", version=""),
               WandbLogger(save_dir=str(tmp_path), offline=True, project="test")]
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=loggers, callbacks=[VisualLogging(n_images=4)],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)
    try:
        trainer.fit(_module(), _loader(), _loader())
    finally:
        import wandb

        wandb.finish()
    kinds = ("filters", "saliency", "grad_cam")
    assert {p.name for p in (tmp_path / "visual").glob("*.png")} == {
        f"epoch{e:03d}_{k}.png" for e in (0, 1, 2) for k in kinds}  # before training + after each epoch
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert {f"visual/{k}" for k in kinds} <= set(events.Tags()["images"])
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    media = run / "files" / "media" / "images" / "visual"
    for kind in kinds:
        png = np.asarray(Image.open(tmp_path / "visual" / f"epoch000_{kind}.png"))
        assert png.std() > 10  # a real picture, not a flat or 0/1 image
        first_tb = events.Images(f"visual/{kind}")[0]
        assert len(events.Images(f"visual/{kind}")) == 3 and first_tb.step == 0
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(first_tb.encoded_image_string))), png)
        wandb_files = sorted(media.glob(f"{kind}_*.png"), key=lambda p: int(p.name.split("_")[-2]))
        assert len(wandb_files) == 3 and np.array_equal(np.asarray(Image.open(wandb_files[0])), png)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("visualize-train")
    run_cli("train", *TINY_DATA, "model=lenet5", "trainer.max_epochs=2", "logger=csv", f"hydra.run.dir={root / 'run'}",
            cwd=root, data_dir=data_dir)
    return next((root / "run" / "checkpoints").glob("best-*.ckpt"))


@pytest.mark.slow
def test_visualize_writes_every_picture_and_the_summary(tiny_checkpoint, data_dir, tmp_path):
    out = tmp_path / "vis"
    proc = run_cli("visualize", f"ckpt_path={tiny_checkpoint}", "n_images=4", "smoothgrad.samples=4",
                   f"hydra.run.dir={out}", cwd=tmp_path, data_dir=data_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "lenet5" and summary["data"] == "shapes" and len(summary["images"]) == 4
    assert summary["grad_cam_layer"] == "features.act3" and summary["feature_layers"] == ["features.c1", "features.c3"]
    written = [name for names in summary["files"].values() for name in names]
    assert {"filters_features.c1.png", "filters_features.c3.png", "feature_maps.png", "saliency.png",
            "smoothgrad.png", "grad_cam.png", "sanity_check.png"} == set(written)
    pictures = {name: np.asarray(Image.open(out / name).convert("RGB")) for name in written}
    for name, picture in pictures.items():
        assert picture.shape[0] >= 200 and picture.shape[1] >= 200 and picture.std() > 10, name  # drawn, not blank
    assert pictures["saliency.png"].shape == pictures["smoothgrad.png"].shape
    assert not np.array_equal(pictures["saliency.png"], pictures["smoothgrad.png"])  # each method its own maps
    sanity = summary["sanity_check"]
    assert sanity["threshold"] == 0.5 and set(sanity) == {"threshold", "saliency", "smoothgrad", "grad_cam", "input_edges"}
    assert sanity["input_edges"]["spearman"] == pytest.approx(1.0) and sanity["input_edges"]["flagged"]
    # The saliency score recomputed here: the same 4 test images (one per class), plain input gradients of the
    # trained and of the re-initialised network (seed 42, visualize.yaml), Spearman per image by scipy, averaged.
    from scipy.stats import spearmanr

    from convnetlab.cli.checkpoint import load_checkpoint

    module, datamodule, _ = load_checkpoint(tiny_checkpoint)
    datamodule.setup("test")
    images, labels, _ = pick_images(datamodule.test_dataloader().dataset, 4)
    inputs, backbone = module.normalize(images), module.eval().backbone
    trained, randomized = saliency(backbone, inputs, labels), saliency(randomized_copy(backbone, seed=42), inputs, labels)
    expected = np.mean([spearmanr(t.flatten().numpy(), r.flatten().numpy()).statistic
                        for t, r in zip(trained, randomized)])
    assert sanity["saliency"]["spearman"] == pytest.approx(expected, abs=1e-6)
    assert sanity["saliency"]["flagged"] == (expected > 0.5)
    assert f"{sanity['saliency']['spearman']:.2f}" in proc.stdout and "sanity check" in proc.stdout


@pytest.mark.slow
def test_visualize_explains_a_users_images_and_rejects_bad_input(tiny_checkpoint, data_dir, tmp_path):
    images = sorted(data_dir.glob("shapes-c4-s37-n24-8-8-medium-seed0/test/*/*.jpg"))[:2]  # TINY_DATA, as trained
    out = tmp_path / "vis"
    run_cli("visualize", f"ckpt_path={tiny_checkpoint}", f"images=[{images[0]},{images[1]}]", "smoothgrad.samples=2",
            "layers=[features.c1]", f"hydra.run.dir={out}", cwd=tmp_path, data_dir=data_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert [i["name"] for i in summary["images"]] == [f"{p.parent.name}/{p.name}" for p in images]
    assert [i["label"] for i in summary["images"]] == [p.parent.name for p in images]  # class folder -> label
    assert summary["feature_layers"] == ["features.c1"]
    proc = run_cli("visualize", f"ckpt_path={tiny_checkpoint}", "layers=[nope]", cwd=tmp_path, data_dir=data_dir,
                   check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no layer named 'nope' in the model; conv layers are: features.c1")
