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
    assert read_metrics(tmp_path / "eval")["test/acc1_10crop"] == metrics["test/acc1_10crop"]
    # Recomputed here, image by image: the centre crop's argmax, and the argmax of the ten crops' mean softmax.
    from convnetlab.cli.checkpoint import load_checkpoint

    module, centre_data, _ = load_checkpoint(ckpt)
    _, crop_data, _ = load_checkpoint(ckpt)
    crop_data.set_eval_protocol("10crop")
    centre_data.setup("test"), crop_data.setup("test")
    module.eval()
    centre_hits, crop_hits, losses = [], [], []
    with torch.no_grad():
        for (image, label), (crops, same_label) in zip(centre_data.test_dataset, crop_data.test_dataset, strict=True):
            assert label == same_label and crops.shape[0] == 10
            centre_hits.append(int(module(image[None]).argmax(1)) == label)
            mean_softmax = module(crops).softmax(-1).mean(0)
            crop_hits.append(int(mean_softmax.argmax()) == label)
            losses.append(-float(mean_softmax[label].log()))
    assert len(centre_hits) == 4 * 8  # TINY_DATA's test split: 4 classes x 8 images
    assert metrics["test/acc1"] == pytest.approx(sum(centre_hits) / len(centre_hits), abs=1e-6)
    assert metrics["test/acc1_10crop"] == pytest.approx(sum(crop_hits) / len(crop_hits), abs=1e-6)
    assert metrics["test/loss_10crop"] == pytest.approx(sum(losses) / len(losses), rel=1e-4)
    assert metrics["test/acc5_10crop"] == 1.0  # 4 classes: every label is among the top 5
