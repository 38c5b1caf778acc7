"""ImageClassifier: normalisation, losses, metrics, weight decay groups, schedules, checkpoints."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from convnetlab.lit import ImageClassifier
from convnetlab.lit import schedules

LENET = {"_target_": "convnetlab.models.build_model", "arch": "lenet5", "num_classes": 4, "in_channels": 1,
         "input_size": 32, "variant": "modern"}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}


def tiny_batches(n: int = 32, classes: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return TensorDataset(images, labels)


def make_module(**overrides) -> ImageClassifier:
    kwargs = dict(backbone=LENET, num_classes=4, optimizer=SGD, mean=[0.5], std=[0.25])
    kwargs.update(overrides)
    return ImageClassifier(**kwargs)


def quiet_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, **kwargs)


def test_normalisation_happens_in_the_module_on_uint8_batches():
    module = make_module()
    images = torch.full((2, 1, 32, 32), 255, dtype=torch.uint8)
    assert torch.allclose(module.normalize(images), torch.full((2, 1, 32, 32), (1.0 - 0.5) / 0.25))


def test_overfitting_a_few_batches_drives_loss_near_zero(tmp_path):
    pl.seed_everything(0)
    module = make_module(optimizer={**SGD, "lr": 0.02, "weight_decay": 0.0})
    loader = DataLoader(tiny_batches(16), batch_size=8)
    initial = torch.nn.functional.cross_entropy(module.logits(tiny_batches(16).tensors[0]), tiny_batches(16).tensors[1])
    trainer = quiet_trainer(tmp_path, max_epochs=60, enable_checkpointing=False)
    trainer.fit(module, loader)
    final = trainer.callback_metrics["train/loss_epoch"].item()
    assert initial.item() > 1.0
    assert final < 0.05


def test_norm_and_bias_parameters_get_no_weight_decay():
    module = ImageClassifier(
        backbone={"_target_": "convnetlab.models.build_model", "arch": "resnet18", "num_classes": 4,
                  "input_size": 32, "width": 0.25},
        num_classes=4, optimizer=SGD,
    )
    module.trainer = None
    groups = {g["name"]: g for g in module.configure_optimizers().param_groups}
    no_decay = {id(p) for p in groups["no_decay"]["params"]}
    bn = module.backbone.bn1
    assert groups["decay"]["weight_decay"] == SGD["weight_decay"] and groups["no_decay"]["weight_decay"] == 0.0
    assert id(bn.weight) in no_decay and id(bn.bias) in no_decay and id(module.backbone.fc.bias) in no_decay
    assert id(module.backbone.conv1.weight) not in no_decay and id(module.backbone.fc.weight) not in no_decay


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_is_the_closed_form_mix_of_cross_entropy_and_the_uniform_target(eps):
    """loss = (1 - eps) * CE(target) + eps * mean_k(-log p_k), here computed by hand for logits (4, 0, 0, 0)."""
    module = make_module(label_smoothing=eps)
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    log_z = math.log(math.exp(4.0) + 3.0)
    neg_log_p = [log_z - 4.0, log_z, log_z, log_z]  # -log softmax
    uniform = sum(neg_log_p) / 4
    hard = (1 - eps) * neg_log_p[0] + eps * uniform
    assert module.loss(logits, torch.tensor([0])).item() == pytest.approx(hard, rel=1e-12)
    soft = (1 - eps) * (0.5 * neg_log_p[0] + 0.5 * neg_log_p[1]) + eps * uniform  # a MixUp-style target
    assert module.loss(logits, torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)).item() == pytest.approx(
        soft, rel=1e-12)
    assert neg_log_p[0] == pytest.approx(0.053490, abs=1e-6) and uniform == pytest.approx(3.053490, abs=1e-6)


def test_mismatched_backbone_and_data_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="predicts 4 classes but the data has 7"):
        make_module(num_classes=7)


def _lrs(factory, epochs=4, steps=10, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = factory(opt, steps_per_epoch=steps, max_epochs=epochs, **kwargs)
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_floor():
    lrs = _lrs(schedules.cosine, warmup_epochs=1, warmup_start_factor=0.0, min_lr_ratio=0.1)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5)
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 29 / 30)))


def test_step_and_multistep_schedules_drop_at_epoch_boundaries():
    step = _lrs(schedules.step, step_size=2, gamma=0.1)
    assert step[19] == 1.0 and step[20] == pytest.approx(0.1)
    multi = _lrs(schedules.multistep, milestones=[1, 3], gamma=0.5)
    assert [multi[i] for i in (9, 10, 29, 30)] == pytest.approx([1.0, 0.5, 0.5, 0.25])


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(tmp_path):
    module = make_module(scheduler={"_target_": "convnetlab.lit.schedules.cosine", "_partial_": True,
                                    "warmup_epochs": 1})
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(module, DataLoader(tiny_batches(16), batch_size=8))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    # Hyperparameters name the architecture and schedule with plain kwargs, never convnetlab import paths.
    assert raw["hyper_parameters"]["backbone"] == {k: v for k, v in LENET.items() if k != "_target_"}
    assert raw["hyper_parameters"]["scheduler"] == {"name": "cosine", "warmup_epochs": 1}
    assert "convnetlab." not in repr(raw["hyper_parameters"])
    restored = ImageClassifier.load_from_checkpoint(path, weights_only=True)
    images = tiny_batches(4).tensors[0]
    module.eval(), restored.eval()
    assert torch.equal(module(images), restored(images))
