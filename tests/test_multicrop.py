"""Evaluation protocols: 10-crop/multi-scale transforms, softmax averaging, and the eval CLI's metric names."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from convnetlab.data.multicrop import CropAveraging, StackedTenCrops, protocol_sizes, protocol_transform
from convnetlab.lit import ImageClassifier
from conftest import TINY_DATA, read_metrics, run_cli

LENET = {"_target_": "convnetlab.models.build_model", "arch": "lenet5", "num_classes": 4, "in_channels": 3,
         "input_size": 32, "variant": "modern"}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05}


def test_ten_crop_is_corners_centre_and_their_mirrors():
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    crops = protocol_transform("10crop", 32, resize_size=40)(image)
    assert crops.shape == (10, 3, 32, 32) and crops.dtype == torch.uint8
    assert torch.equal(crops[0], image[:, :32, :32]) and torch.equal(crops[3], image[:, 8:, 18:])
    assert torch.equal(crops[5], crops[1].flip(-1)) and torch.equal(crops[9], crops[4].flip(-1))  # mirrored image
    multi = protocol_transform("multiscale", 32)(image)
    assert multi.shape == (30, 3, 32, 32) and protocol_sizes(224) == [256, 288, 320]
    with pytest.raises(ValueError, match="protocol=5crop is not one of center, 10crop, multiscale"):
        protocol_transform("5crop", 32)


def test_ten_crop_prediction_is_the_mean_of_the_ten_crop_softmaxes():
    torch.manual_seed(0)
    module = ImageClassifier(backbone=LENET, num_classes=4, optimizer=SGD).eval()
    images = torch.randint(0, 256, (2, 3, 37, 45), dtype=torch.uint8)
    transform = StackedTenCrops(32, [37])
    batch = torch.stack([transform(image) for image in images])  # (2, 10, 3, 32, 32)
    with torch.no_grad():
        individual = torch.stack([
            torch.stack([module(crop[None])[0].softmax(-1) for crop in v2.TenCrop(32)(image)]).mean(0)
            for image in images
        ])
        module.backbone = CropAveraging(module.backbone)
        averaged = module.logits(batch).exp()
        assert torch.allclose(averaged, individual, atol=1e-5)
        assert torch.allclose(module.logits(batch[:, 0]), ImageClassifier.logits(module, batch[:, 0]))  # 4-D passes


@pytest.mark.slow
def test_eval_cli_reports_10crop_beside_the_centre_crop(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", *TINY_DATA, "model=lenet5", "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={run}",
            cwd=tmp_path, data_dir=data_dir)
    ckpt = read_metrics(run)["ckpt_best"]
    run_cli("evaluate", f"ckpt_path={ckpt}", "protocol=10crop", f"hydra.run.dir={tmp_path / 'eval'}",
            cwd=tmp_path, data_dir=data_dir)
    metrics = read_metrics(run)
    assert all(0 <= metrics[name] <= 1 for name in ("test/acc1", "test/acc1_10crop", "test/acc5_10crop"))
    assert "test/loss_10crop" in metrics and "test/acc1_10crop" in read_metrics(tmp_path / "eval")
