"""callbacks=ema: Lightning's EMAWeightAveraging validates and saves the averaged weights, keeps them through
a checkpoint round trip and a resume (equal to the uninterrupted run), and logs the raw weights' val/acc1_raw."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_lightning.callbacks import ModelCheckpoint

from conftest import random_image_loader as loader
from convnetlab.callbacks import AuxiliaryClassifiers
from convnetlab.callbacks.ema import WeightEMA, averaging_last, torchvision_ema_decay
from convnetlab.errors import InputError
from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.lit import ImageClassifier

RESNET = {"arch": "resnet18", "num_classes": 4, "in_channels": 3, "input_size": 32, "width": 0.125}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": 0.9}


def make_module() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=RESNET, num_classes=4, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)


def fit(tmp_path, ema: WeightEMA | list[pl.Callback], epochs: int, module=None,
        ckpt_path=None) -> tuple[pl.Trainer, ImageClassifier]:
    """Fit with a checkpoint after every epoch's validation (``tmp_path/epoch=<e>.ckpt``), as runs do."""
    module = module or make_module()
    every_epoch = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, num_sanity_val_steps=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[*(ema if isinstance(ema, list) else [ema]), every_epoch], deterministic=True)
    trainer.fit(module, train_dataloaders=loader(32), val_dataloaders=loader(16, seed=1), ckpt_path=ckpt_path)
    return trainer, module


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ema_weights_differ_from_raw_and_are_what_training_leaves(tmp_path, one_torch_thread):
    ema = WeightEMA(decay=0.8, every_n_steps=1)
    trainer, module = fit(tmp_path, ema, epochs=2)
    ckpt = load(tmp_path / "epoch=1.ckpt")  # written at the last validation, after the last update
    weights = [k for k in ckpt["state_dict"] if k.endswith("weight")]
    assert any(not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k]) for k in weights)
    assert all(torch.equal(module.state_dict()[k], ckpt["state_dict"][k]) for k in module.state_dict())  # model = average
    assert int(ckpt["averaging_state"]["n_averaged"]) == 8  # 2 epochs x 4 steps, every step
    raw = ema._average_model.module.state_dict()  # after fit the copy holds the raw weights, for val/acc1_raw
    assert all(torch.equal(raw[k], ckpt["current_model_state"][k]) for k in ckpt["current_model_state"])


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
        default = compose(config_name="train", overrides=["callbacks=default"])
    assert "ema" not in default.callbacks and set(cfg.callbacks) == set(default.callbacks) | {"ema"}
    ema = instantiate(cfg.callbacks.ema)
    assert isinstance(ema, WeightEMA) and ema.every_n_steps == 4 and ema.update_every_n_steps == 4


@pytest.mark.parametrize("adjust", [False, True])
def test_each_update_moves_every_parameter_and_buffer_by_the_decay(adjust):
    """The foreach average (multi_avg_fn) is the EMA: avg <- decay * avg + (1 - decay) * weights, for the
    parameters and the BatchNorm statistics, with the decay torchvision's adjustment gives when asked."""
    ema = WeightEMA(decay=0.9 if not adjust else 0.99, adjust_decay=adjust)
    module = make_module()
    trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=8), world_size=1, max_epochs=2)  # every step
    ema.setup(trainer, module, "fit")
    average = ema._average_model
    average.update_parameters(module)  # the first update copies
    before = {k: v.clone() for k, v in average.module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
        for name, b in module.named_buffers():
            if b.is_floating_point():
                b.add_(1.0)
    average.update_parameters(module)
    decay = ema.decay_per_update
    assert decay == (0.9 if not adjust else pytest.approx(1 - 0.01 * 8 / 2))
    after, weights = average.module.state_dict(), module.state_dict()
    floats = [k for k in before if before[k].is_floating_point()]
    assert any("running_mean" in k for k in floats) and any(k.endswith("conv1.weight") for k in floats)
    for k in floats:
        torch.testing.assert_close(after[k], decay * before[k] + (1 - decay) * weights[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(after[k], before[k]), k


def test_an_average_set_up_before_auxiliary_heads_joined_is_refused_and_averaging_last_orders_it(tmp_path,
                                                                                               one_torch_thread):
    """Lightning pairs the average's parameters with the model's by position: an average copied before the
    heads were attached would update and swap the wrong tensors, so it is refused; convnetlab-train orders
    the callbacks with averaging_last, and then the heads are averaged and checkpointed with the rest."""
    def heads() -> AuxiliaryClassifiers:
        return AuxiliaryClassifiers({"layer2": 0.3}, head_type="gap")

    with pytest.raises(InputError, match="before aux_heads joined"):
        fit(tmp_path / "wrong", [WeightEMA(decay=0.8), heads()], epochs=1)
    ordered = averaging_last([WeightEMA(decay=0.8), heads()])
    assert isinstance(ordered[-1], WeightEMA)
    fit(tmp_path / "ordered", ordered, epochs=1)
    ckpt = load(tmp_path / "ordered" / "epoch=0.ckpt")
    head_weights = [k for k in ckpt["state_dict"] if k.startswith("aux_heads.") and k.endswith("weight")]
    assert head_weights and all(not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k])
                                for k in head_weights)  # averaged, not the raw weights


def test_validate_and_test_after_fit_use_the_checkpoints_averaged_weights(tmp_path, one_torch_thread):
    """convnetlab-train validates and tests the best checkpoint on the trainer that fitted it: both must see
    the checkpoint's average (its state_dict), as convnetlab-eval does, and val/acc1_raw is that checkpoint's
    raw weights' top-1 (Lightning's callback tested the raw weights)."""
    ema = WeightEMA(decay=0.9)
    trainer, module = fit(tmp_path, ema, epochs=2)
    first = tmp_path / "epoch=0.ckpt"
    tested = trainer.test(module, dataloaders=loader(16, seed=1), ckpt_path=first, verbose=False)[0]
    validated = trainer.validate(module, dataloaders=loader(16, seed=1), ckpt_path=first, verbose=False)[0]
    ckpt = load(first)
    assert all(torch.equal(module.state_dict()[k], ckpt["state_dict"][k]) for k in ckpt["state_dict"])
    fresh = ImageClassifier.load_from_checkpoint(first, map_location="cpu")
    plain = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    alone = plain.test(fresh, dataloaders=loader(16, seed=1), verbose=False)[0]
    assert tested["test/acc1"] == alone["test/acc1"] and tested["test/loss"] == pytest.approx(alone["test/loss"])
    assert validated["val/loss"] == pytest.approx(alone["test/loss"])  # the same images, the same weights
    assert not any(torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k])
                   for k in ckpt["state_dict"] if k.endswith("conv1.weight"))  # so raw weights would differ
    fresh.load_state_dict(ckpt["current_model_state"])  # the checkpoint's raw weights: its val/acc1_raw
    raw = plain.test(fresh, dataloaders=loader(16, seed=1), verbose=False)[0]
    assert validated["val/acc1_raw"] == pytest.approx(raw["test/acc1"]) != validated["val/acc1"]
    assert ema.summary_metrics(trainer)["val/acc1_raw"] == pytest.approx(raw["test/acc1"])
