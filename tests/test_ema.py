"""callbacks=ema: Lightning's EMAWeightAveraging validates and saves the averaged weights, keeps them through
a checkpoint round trip and a resume (equal to the uninterrupted run), and logs the raw weights' val/acc1_raw."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_lightning.callbacks import ModelCheckpoint

from conftest import random_image_loader as loader
from convnetlab.callbacks.ema import WeightEMA, torchvision_ema_decay
from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.lit import ImageClassifier

RESNET = {"arch": "resnet18", "num_classes": 4, "in_channels": 3, "input_size": 32, "width": 0.125}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": 0.9}


def make_module() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=RESNET, num_classes=4, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)


def fit(tmp_path, ema: WeightEMA, epochs: int, module=None, ckpt_path=None) -> tuple[pl.Trainer, ImageClassifier]:
    """Fit with a checkpoint after every epoch's validation (``tmp_path/epoch=<e>.ckpt``), as runs do."""
    module = module or make_module()
    every_epoch = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, num_sanity_val_steps=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=[ema, every_epoch], deterministic=True)
    trainer.fit(module, train_dataloaders=loader(32), val_dataloaders=loader(16, seed=1), ckpt_path=ckpt_path)
    return trainer, module


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ema_weights_differ_from_raw_and_are_what_training_leaves(tmp_path, one_torch_thread):
    ema = WeightEMA(decay=0.8, every_n_steps=1)
    trainer, module = fit(tmp_path, ema, epochs=2)
    average = ema._average_model.module.state_dict()
    ckpt = load(tmp_path / "epoch=1.ckpt")  # written during training, at the last validation
    weights = [k for k in ckpt["state_dict"] if k.endswith("weight")]
    assert any(not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k]) for k in weights)
    assert all(torch.equal(module.state_dict()[k], average[k]) for k in module.state_dict())  # model = average
    assert all(torch.equal(ckpt["state_dict"][k], average[k]) for k in ckpt["state_dict"])  # checkpoint = average
    assert int(ema._average_model.n_averaged) == 8  # 2 epochs x 4 steps, every step


def test_the_average_survives_a_checkpoint_round_trip_and_a_resume_equals_the_uninterrupted_run(tmp_path,
                                                                                            one_torch_thread):
    fit(tmp_path / "ref", WeightEMA(decay=0.7, every_n_steps=3), epochs=3)
    reference = load(tmp_path / "ref" / "epoch=2.ckpt")
    mid = load(tmp_path / "ref" / "epoch=0.ckpt")
    assert any(not torch.equal(mid["state_dict"][k], mid["current_model_state"][k]) for k in mid["state_dict"])
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "ref" / "epoch=0.ckpt", map_location="cpu")
    assert all(torch.equal(loaded.state_dict()[k], mid["state_dict"][k]) for k in mid["state_dict"])  # averaged

    fit(tmp_path / "resumed", WeightEMA(decay=0.7, every_n_steps=3), epochs=3,
        ckpt_path=tmp_path / "ref" / "epoch=0.ckpt")
    result = load(tmp_path / "resumed" / "epoch=2.ckpt")
    for part in ("state_dict", "current_model_state", "averaging_state"):
        assert result[part].keys() == reference[part].keys()
        assert all(torch.equal(result[part][k], reference[part][k]) for k in reference[part]), part


def test_raw_accuracy_is_logged_and_equals_the_average_when_the_average_is_the_weights(tmp_path, one_torch_thread):
    trainer, _ = fit(tmp_path, WeightEMA(decay=0.0), epochs=1)
    metrics = trainer.callback_metrics
    assert "val/acc1_raw" in metrics and 0.0 <= float(metrics["val/acc1_raw"]) <= 1.0
    assert float(metrics["val/acc1_raw"]) == pytest.approx(float(metrics["val/acc1"]))
    summary = trainer.callbacks[0].summary_metrics(trainer)
    assert summary["val/acc1_raw"] == float(metrics["val/acc1_raw"]) and summary["ema/decay_per_update"] == 0.0


def test_copy_epochs_keep_the_average_at_the_weights(tmp_path, one_torch_thread):
    ema = WeightEMA(decay=0.5, every_n_steps=1, copy_epochs=5)
    fit(tmp_path, ema, epochs=1)
    ckpt = load(tmp_path / "epoch=0.ckpt")
    # the last update copied the weights (n_averaged was reset to 0 before it), so average == weights
    assert all(torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k]) for k in ckpt["state_dict"])


def test_torchvision_decay_adjustment():
    # torchvision's V2 recipe: decay 0.99998, 8 x 128 images, every 32 steps, 600 epochs
    assert torchvision_ema_decay(0.99998, 8, 128, 32, 600) == pytest.approx(1 - 2e-5 * 1024 * 32 / 600)
    assert torchvision_ema_decay(0.5, 8, 128, 32, 1) == 0.0  # alpha capped at 1


def test_callbacks_ema_composes_on_the_default_callbacks(tmp_path):
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["callbacks=ema", "callbacks.ema.every_n_steps=4"])
        default = compose(config_name="train")
    assert set(cfg.callbacks) == set(default.callbacks) | {"ema"}
    ema = instantiate(cfg.callbacks.ema)
    assert isinstance(ema, WeightEMA) and ema.every_n_steps == 4 and ema.update_every_n_steps == 4
