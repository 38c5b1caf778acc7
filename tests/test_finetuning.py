"""FeatureExtraction / FinetuningSchedule: what is frozen, when stages unfreeze and at which LR, the
scheduler for groups added later, LR names in the logs, and resuming in the middle of a schedule."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from conftest import random_image_loader as loader
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger

from convnetlab.callbacks import FeatureExtraction, FinetuningSchedule
from convnetlab.lit import ImageClassifier, schedules

RESNET = {"_target_": "convnetlab.models.build_model", "arch": "resnet18", "num_classes": 4, "in_channels": 3,
          "input_size": 32, "width": 0.125}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
COSINE = {"_target_": "convnetlab.lit.schedules.cosine", "_partial_": True, "warmup_epochs": 1}
PHASES = [{"epoch": 1, "modules": ["layer4"], "lr": 0.01},
          {"epoch": 2, "modules": ["layer3", "layer2.1"], "lr_ratio": 0.5, "name": "mid"}]


def make_module(scheduler=None) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=RESNET, num_classes=4, optimizer=SGD, scheduler=scheduler,
                           mean=[0.5] * 3, std=[0.25] * 3)


def trainer(tmp_path, callbacks, **kwargs) -> pl.Trainer:
    kwargs = {"max_epochs": 1, "num_sanity_val_steps": 0, "logger": False, "enable_checkpointing": False, **kwargs}
    return pl.Trainer(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, callbacks=callbacks, **kwargs)


class Recorder(pl.Callback):
    """At each epoch's first batch (after every epoch-start hook): trainable modules, groups, BN modes."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx:
            return
        backbone = pl_module.backbone
        self.epochs[trainer.current_epoch] = {
            "trainable": {n for n, p in backbone.named_parameters() if p.requires_grad},
            "groups": {g["name"]: (g.get("initial_lr"), g["lr"]) for g in trainer.optimizers[0].param_groups},
            "layer3_bn_training": backbone.layer3[0].bn1.training,
            "layer1_bn_training": backbone.layer1[0].bn1.training,
        }


class StopAfter(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = trainer.should_stop or trainer.current_epoch == self.epoch


def params_under(module: torch.nn.Module, *prefixes: str) -> set[str]:
    return {n for n, _ in module.named_parameters() if n.startswith(prefixes)}


def test_feature_extraction_changes_only_the_head_and_keeps_batchnorm_statistics(tmp_path):
    module = make_module()
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    t = trainer(tmp_path, [FeatureExtraction()], max_epochs=2)
    t.fit(module, loader())
    after = module.backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # running_mean/var and num_batches_tracked included
    assert {g["name"] for g in t.optimizers[0].param_groups} == {"head", "head_no_decay"}
    assert all(not m.training for m in module.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_each_phase_unfreezes_the_named_modules_at_its_epoch_with_its_lr(tmp_path):
    module, recorder = make_module(), Recorder()
    start = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    trainer(tmp_path, [FinetuningSchedule(phases=PHASES), recorder], max_epochs=3).fit(module, loader())
    backbone, seen = module.backbone, recorder.epochs
    assert seen[0]["trainable"] == params_under(backbone, "fc.")
    assert seen[1]["trainable"] == params_under(backbone, "fc.", "layer4.")
    assert seen[2]["trainable"] == params_under(backbone, "fc.", "layer4.", "layer3.", "layer2.1.")
    assert seen[0]["groups"] == {"head": (None, 0.05), "head_no_decay": (None, 0.05)}
    assert seen[1]["groups"]["layer4"] == (0.01, 0.01) and seen[1]["groups"]["layer4_no_decay"] == (0.01, 0.01)
    assert "mid" not in seen[1]["groups"] and seen[2]["groups"]["mid"] == (0.025, 0.025)
    assert not seen[1]["layer3_bn_training"] and seen[2]["layer3_bn_training"]  # frozen BN in eval mode
    assert not seen[2]["layer1_bn_training"]
    end = backbone.state_dict()
    assert torch.equal(start["layer1.0.conv1.weight"], end["layer1.0.conv1.weight"])  # never unfrozen
    assert torch.equal(start["layer1.0.bn1.running_mean"], end["layer1.0.bn1.running_mean"])
    assert not torch.equal(start["layer4.1.conv2.weight"], end["layer4.1.conv2.weight"])
    assert not torch.equal(start["layer2.1.conv1.weight"], end["layer2.1.conv1.weight"])
    assert torch.equal(start["layer2.0.conv1.weight"], end["layer2.0.conv1.weight"])


@pytest.mark.parametrize("arch, expected", [
    ("resnet18", ["layer4", "layer3"]), ("googlenet", ["inception5", "inception4"]),
    ("vgg11_bn", ["block5", "block4"]), ("alexnet", ["block3", "block2"]), ("lenet5", ["c5", "c3"]),
])
def test_presets_unfreeze_the_last_stages_first_at_decaying_ratios(arch, expected):
    width = {"lenet5": 1.0}.get(arch, 0.125)
    backbone = {"_target_": "convnetlab.models.build_model", "arch": arch, "num_classes": 4, "input_size": 32,
                "width": width, **({"in_channels": 1} if arch == "lenet5" else {})}
    module = ImageClassifier(backbone=backbone, num_classes=4, optimizer=SGD, mean=[0.5], std=[0.25])
    phases = FinetuningSchedule(start_epoch=2, every_n_epochs=3).resolve_phases(module)
    assert [p.name for p in phases] == expected
    assert [p.epoch for p in phases] == [2, 5] and [p.lr_ratio for p in phases] == [0.1, 0.05]
    assert all(p.modules for p in phases)
    assert len(FinetuningSchedule(num_stages=None).resolve_phases(module)) >= 3


@pytest.mark.parametrize("phases, message", [
    ([{"epoch": 1, "modules": ["layer9"], "lr": 0.1}], "no module"),
    ([{"epoch": 1, "modules": ["layer4"], "lr": 0.1, "lr_ratio": 0.1}], "exactly one of lr"),
    ([{"epoch": 1, "modules": ["fc"], "lr": 0.1}], "overlaps the head"),
    ([{"epoch": 1, "modules": ["layer4"], "lr": 0.1}, {"epoch": 2, "modules": ["layer4.1"], "lr": 0.1}], "overlaps"),
    ([{"epoch": 1, "modules": ["layer4"], "learning_rate": 0.1}], "unknown keys"),
])
def test_bad_phases_are_one_line_errors(phases, message):
    with pytest.raises(ValueError, match=message):
        FinetuningSchedule(phases=phases).resolve_phases(make_module())


def test_scheduler_drives_groups_added_after_it_was_built():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([params[0]], lr=1.0)
    sched = schedules.cosine(opt, steps_per_epoch=10, max_epochs=4, warmup_epochs=1, warmup_start_factor=0.0)
    for step in range(40):
        if step == 15:
            factor = opt.param_groups[0]["lr"]  # base lr 1.0, so lr == multiplier
            opt.add_param_group({"params": [params[1]], "lr": 0.1 * factor, "initial_lr": 0.1})
        if step >= 15:
            assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 30 / 30)), abs=1e-12)
    assert "factor" not in sched.state_dict()  # plain numbers only: loads with weights_only=True


def test_learning_rates_are_logged_under_group_names(tmp_path):
    t = trainer(tmp_path, [FinetuningSchedule(phases=PHASES[:1]), LearningRateMonitor(logging_interval="step")],
                max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=1)
    t.fit(make_module(COSINE), loader())
    logged = {k for k in t.callback_metrics if k.startswith("lr")}
    assert logged == {"lr/head", "lr/head_no_decay", "lr/layer4", "lr/layer4_no_decay"}


def test_resume_in_the_middle_of_a_schedule_restores_phases_and_learning_rates(tmp_path):
    phases = [{"epoch": 1, "modules": ["layer4"], "lr_ratio": 0.1}, {"epoch": 3, "modules": ["layer3"], "lr": 0.002}]
    full = Recorder()
    trainer(tmp_path / "full", [FinetuningSchedule(phases=phases), full], max_epochs=4).fit(make_module(COSINE), loader(8))

    first = trainer(tmp_path / "a", [FinetuningSchedule(phases=phases), StopAfter(epoch=1)], max_epochs=4)
    first.fit(make_module(COSINE), loader(8))  # the same 4-epoch schedule, interrupted after epoch 1
    ckpt = tmp_path / "mid.ckpt"
    first.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["callbacks"]  # callback state is plain containers

    resumed, module = Recorder(), make_module(COSINE)
    trainer(tmp_path / "b", [FinetuningSchedule(phases=phases), resumed], max_epochs=4).fit(module, loader(8), ckpt_path=ckpt)
    assert set(resumed.epochs) == {2, 3}
    for epoch in (2, 3):
        assert resumed.epochs[epoch]["trainable"] == full.epochs[epoch]["trainable"]
        expected = full.epochs[epoch]["groups"]
        assert resumed.epochs[epoch]["groups"].keys() == expected.keys()
        assert all(resumed.epochs[epoch]["groups"][k] == pytest.approx(v) for k, v in expected.items())
    assert resumed.epochs[2]["trainable"] == params_under(module.backbone, "fc.", "layer4.")
    assert set(resumed.epochs[3]["groups"]) == {"head", "head_no_decay", "layer4", "layer4_no_decay", "layer3",
                                                "layer3_no_decay"}

