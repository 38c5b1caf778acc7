"""AuxiliaryClassifiers and GradientFlow callbacks: loss arithmetic, gradients, inference isolation,
checkpoints without the callback, resume, and the gradient-flow plot."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from conftest import random_image_loader as loader
import torch.nn.functional as F

from convnetlab.callbacks import AuxiliaryClassifiers, GradientFlow
from convnetlab.lit import ImageClassifier

RESNET = {"_target_": "convnetlab.models.build_model", "arch": "resnet18", "num_classes": 4, "in_channels": 3,
          "input_size": 32, "width": 0.125}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9}
HEADS = {"layer2": 0.3, "layer3": 0.5}


def make_module(backbone=RESNET) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=backbone, num_classes=4, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)


def trainer(tmp_path, callbacks, **kwargs) -> pl.Trainer:
    kwargs = {"max_epochs": 1, "num_sanity_val_steps": 0, **kwargs}
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=tmp_path, callbacks=callbacks, **kwargs)


def attached(head_type: str = "gap") -> tuple[ImageClassifier, AuxiliaryClassifiers]:
    module, callback = make_module(), AuxiliaryClassifiers(HEADS, head_type=head_type)
    callback.setup(pl.Trainer(accelerator="cpu", logger=False), module, "fit")
    return module, callback


@pytest.mark.parametrize("head_type", ["gap", "googlenet"])
def test_training_loss_is_main_plus_weighted_aux_losses_and_reaches_every_head(head_type):
    module, callback = attached(head_type)
    module.train()
    images, targets = next(iter(loader()))
    features = {}
    for name in HEADS:
        getattr(module.backbone, name).register_forward_hook(lambda m, i, o, name=name: features.__setitem__(name, o))

    callback.on_train_batch_start(None, module, (images, targets), 0)
    torch.manual_seed(1)  # the googlenet head has dropout: same mask for both computations
    total = module.training_step((images, targets), 0)
    torch.manual_seed(1)
    main = F.cross_entropy(module(images), targets)
    aux = {name: F.cross_entropy(module.aux_heads[name](features[name]), targets) for name in HEADS}
    torch.testing.assert_close(total, main + sum(w * aux[n] for n, w in HEADS.items()))
    assert total > main

    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.aux_heads.parameters())
    assert module.backbone.conv1.weight.grad.abs().sum() > 0


def test_heads_are_optimised_validated_and_never_run_in_test(tmp_path):
    module, callback = make_module(), AuxiliaryClassifiers(HEADS, head_type="gap")
    t = trainer(tmp_path, [callback], limit_train_batches=2)
    t.fit(module, loader(), loader(8, seed=1))
    optimised = {id(p) for group in t.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in module.aux_heads.parameters())
    for name in HEADS:
        assert f"val/aux_acc1/{name}" in t.callback_metrics
        assert math.isfinite(float(t.callback_metrics[f"train/aux_loss/{name}_epoch"]))

    calls = []
    for head in module.aux_heads.values():
        head.register_forward_hook(lambda *a: calls.append(1))
    t.test(module, loader(8, seed=2), verbose=False)
    t.predict(module, loader(8, seed=2))
    assert calls == []


def test_checkpoint_with_heads_evaluates_without_the_callback(tmp_path):
    module, callback = make_module(), AuxiliaryClassifiers(HEADS, head_type="googlenet")
    t = trainer(tmp_path, [callback], limit_train_batches=2, limit_val_batches=0)
    t.fit(module, loader())
    path = tmp_path / "heads.ckpt"
    t.save_checkpoint(path)
    assert any(k.startswith("aux_heads.") for k in torch.load(path, weights_only=True)["state_dict"])
    (with_heads,) = t.test(module, loader(8, seed=2), verbose=False)

    plain = ImageClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert not hasattr(plain, "aux_heads")
    assert not any("aux" in k for k in plain.state_dict())
    (without,) = trainer(tmp_path, []).test(plain, loader(8, seed=2), verbose=False)
    assert without["test/acc1"] == with_heads["test/acc1"]
    images, _ = next(iter(loader(8, seed=2)))
    module.eval()
    plain.eval()
    torch.testing.assert_close(plain.logits(images), module.logits(images), rtol=0, atol=0)


def test_resume_restores_the_heads(tmp_path):
    module = make_module()
    t = trainer(tmp_path, [AuxiliaryClassifiers(HEADS, head_type="gap")], limit_train_batches=2, limit_val_batches=0)
    t.fit(module, loader())
    path = tmp_path / "last.ckpt"
    t.save_checkpoint(path)
    saved = {k: v for k, v in torch.load(path, weights_only=True)["state_dict"].items() if k.startswith("aux_heads.")}

    seen = {}
    check = pl.callbacks.LambdaCallback(on_train_start=lambda tr, pm: seen.update(
        {f"aux_heads.{k}": v.clone() for k, v in pm.aux_heads.state_dict().items()}))
    resumed = make_module()
    trainer(tmp_path, [AuxiliaryClassifiers(HEADS, head_type="gap"), check], max_epochs=2, limit_train_batches=2,
            limit_val_batches=0).fit(resumed, loader(), ckpt_path=path)
    assert seen.keys() == saved.keys()
    assert all(torch.equal(seen[k], saved[k]) for k in saved)


def test_unknown_module_name_lists_the_real_names():
    with pytest.raises(ValueError, match="layer2"):
        AuxiliaryClassifiers({"nope": 0.3}).setup(pl.Trainer(accelerator="cpu", logger=False), make_module(), "fit")


def test_torchvision_googlenet_aux_logits_add_their_weighted_losses():
    net = {"_target_": "convnetlab.models.build_model", "arch": "googlenet", "num_classes": 4, "in_channels": 3,
           "input_size": 32, "width": 0.125, "aux_logits": True}
    module = make_module(net).train()
    images, targets = next(iter(loader()))
    torch.manual_seed(1)
    total = module.training_step((images, targets), 0)
    torch.manual_seed(1)
    out = module(images)
    expected = sum(w * F.cross_entropy(o, targets) for w, o in zip((1.0, 0.3, 0.3), out))
    torch.testing.assert_close(total, expected)


def test_gradient_flow_logs_finite_norms_and_writes_the_plot(tmp_path):
    flow = GradientFlow(every_n_steps=1, output_dir=str(tmp_path))
    t = trainer(tmp_path, [flow], limit_train_batches=2, limit_val_batches=0)
    t.fit(make_module(), loader())
    assert (tmp_path / "gradient_flow.png").stat().st_size > 0
    names = list(flow.history)
    assert names[0] == "conv1" and names[-1] == "fc"
    assert all(len(v) == 2 and all(math.isfinite(x) and x > 0 for x in v) for v in flow.history.values())
    assert math.isfinite(float(t.callback_metrics["train/grad_norm/conv1"]))
