"""End-to-end transfer: pretrain on some shapes, fine-tune on others from the checkpoint with `trainer=ddp_cpu`
(ranks must stay identical after a stage unfreezes), and the CLI's answer when torchvision weights are not
in the local cache."""

from __future__ import annotations

import csv

import pytest
import torch

from conftest import read_metrics, run_cli

pytestmark = pytest.mark.slow

TINY = ["data=shapes", "data.num_classes=4", "data.per_class_train=24", "data.per_class_val=8",
        "data.per_class_test=8", "data.batch_size=16", "data.num_workers=0", "model=resnet18", "model.width=0.125",
        "logger=csv"]
TARGET = [*TINY, "data.class_offset=4", "trainer.max_epochs=2", "callbacks=finetune", "callbacks.finetune.start_epoch=1"]

SAVE_RANK_WEIGHTS = '''
import torch
import pytorch_lightning as pl


class SaveRankWeights(pl.Callback):
    """Each DDP rank writes its own final weights, so the test can compare them."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(pl_module.backbone.state_dict(), f"{self.out_dir}/rank{trainer.global_rank}.pt")
'''


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("pretrain")
    run_cli("train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={root / 'run'}", cwd=root, data_dir=data_dir)
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def finetuned_ddp(pretrained, data_dir, tmp_path_factory):
    """Fine-tune the pretrained checkpoint on 4 other shapes with two DDP ranks; each rank saves its weights."""
    root = tmp_path_factory.mktemp("finetune")
    (root / "rank_weights.py").write_text(SAVE_RANK_WEIGHTS)  # importable: the CLI runs with cwd on sys.path
    run_cli("train", *TARGET, f"model.weights={pretrained}", "trainer=ddp_cpu", "trainer.log_every_n_steps=1",
            "+callbacks.rank_weights._target_=rank_weights.SaveRankWeights", f"+callbacks.rank_weights.out_dir={root}",
            f"hydra.run.dir={root / 'run'}", cwd=root, data_dir=data_dir)
    return root


def test_fine_tuning_from_a_checkpoint_on_other_classes_logs_each_groups_lr(pretrained, finetuned_ddp):
    run_dir = finetuned_ddp / "run"
    assert 0 <= read_metrics(run_dir)["test/acc1"] <= 1
    columns = next(csv.reader((run_dir / "metrics.csv").open()))
    assert {"lr/head", "lr/head_no_decay", "lr/layer4", "lr/layer4_no_decay"} <= set(columns)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["backbone_weights"] == str(pretrained)
    assert "weights" not in ckpt["hyper_parameters"]["backbone"]  # the checkpoint restores on its own
    assert "applied_phases" in ckpt["callbacks"]["FinetuningSchedule"]


def test_ddp_cpu_ranks_keep_identical_weights_after_unfreezing(pretrained, finetuned_ddp):
    rank0, rank1 = (torch.load(finetuned_ddp / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    start = {k.removeprefix("backbone."): v for k, v in torch.load(pretrained, weights_only=True)["state_dict"].items()}
    assert not torch.equal(rank0["layer4.1.conv2.weight"], start["layer4.1.conv2.weight"])  # unfrozen and trained
    assert torch.equal(rank0["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])  # still frozen


def test_missing_torchvision_weights_tell_which_file_to_put_where(data_dir, tmp_path):
    proc = run_cli("train", *TINY, "model.weights=DEFAULT", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, data_dir=data_dir, check=False)
    folder = tmp_path / ".cache" / "torch" / "hub" / "checkpoints"  # HOME is the test's cwd
    assert proc.returncode != 0
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert f"put resnet18-f37072fd.pth ({url}) into {folder}" in proc.stderr
