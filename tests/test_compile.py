"""module.compile=true: the backbone is compiled in place (nn.Module.compile), so checkpoints keep clean keys,
results equal eager within float tolerance, and a compiled run resumes (from its own or an eager checkpoint)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from conftest import random_image_loader as loader
from conftest import run_cli
from convnetlab.lit import ImageClassifier

LENET = {"arch": "lenet5", "num_classes": 4, "in_channels": 3, "input_size": 32}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9}


def make_module(compile: bool) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=LENET, num_classes=4, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3,
                           channels_last=True, compile=compile)


def fit(tmp_path, module: ImageClassifier, epochs: int, ckpt_path=None) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, num_sanity_val_steps=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)])
    trainer.fit(module, train_dataloaders=loader(32), val_dataloaders=loader(16, seed=1), ckpt_path=ckpt_path)
    return trainer


def test_compiled_logits_equal_eager_on_the_same_weights_and_keys_stay_clean(one_torch_thread):
    eager, compiled = make_module(False), make_module(True)
    compiled.compile_backbone()
    assert compiled.backbone._compiled_call_impl is not None
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    assert not any("_orig_mod" in k for k in compiled.state_dict())
    images = next(iter(loader(16, seed=2)))[0]
    eager.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), eager(images), rtol=1e-4, atol=1e-5)
    eager.train(), compiled.train()
    targets = torch.arange(len(images)) % 4
    eager.loss(eager(images), targets).backward()
    compiled.loss(compiled(images), targets).backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_a_compiled_run_checkpoints_clean_keys_and_resumes(tmp_path, one_torch_thread):
    module = make_module(True)
    fit(tmp_path / "run", module, epochs=1)
    ckpt = torch.load(tmp_path / "run" / "epoch=0.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["compile"] is True
    assert ckpt["state_dict"].keys() == make_module(False).state_dict().keys()
    eager = ImageClassifier.load_from_checkpoint(tmp_path / "run" / "epoch=0.ckpt", map_location="cpu")  # strict
    assert eager.backbone._compiled_call_impl is None  # compiled only when fitting

    resumed = make_module(True)
    trainer = fit(tmp_path / "run", resumed, epochs=2, ckpt_path=tmp_path / "run" / "epoch=0.ckpt")
    assert trainer.current_epoch == 2 and resumed.backbone._compiled_call_impl is not None
    final = torch.load(tmp_path / "run" / "epoch=1.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert final.keys() == ckpt["state_dict"].keys()
    assert any(not torch.equal(final[k], ckpt["state_dict"][k]) for k in final)  # it trained on

    # the same resume in eager mode ends at the same weights within float tolerance
    eager_resumed = make_module(False)
    fit(tmp_path / "eager", eager_resumed, epochs=2, ckpt_path=tmp_path / "run" / "epoch=0.ckpt")
    eager_final = torch.load(tmp_path / "eager" / "epoch=1.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for key in final:
        torch.testing.assert_close(final[key], eager_final[key], rtol=1e-3, atol=1e-4, msg=key)


@pytest.mark.slow
def test_compile_under_ddp_trains_checkpoints_clean_keys_and_resumes(tmp_path, data_dir):
    run = tmp_path / "run"
    short = ["model=lenet5", "data=digits", "trainer=ddp_cpu", "module.compile=true", "trainer.limit_train_batches=4",
             "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "logger=csv", "data.num_workers=0"]
    run_cli("train", *short, "trainer.max_epochs=2", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 8 and saved["hyper_parameters"]["compile"] is True  # 2 epochs x 4 steps, 2 ranks
    assert not [k for k in saved["state_dict"] if "_orig_mod" in k]
    run_cli("train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=3", cwd=tmp_path,
            data_dir=data_dir)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
