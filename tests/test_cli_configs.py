"""Each debug mode and each experiment does what it is for, checked on a short run of it (tiny data).

No test adds ``trainer.fast_dev_run``: it would override what a mode or an experiment sets. Every config
under conf/debug/ and conf/experiment/ (outside findings/ and ilsvrc/, tested in their own modules) must
have its own test here, or be listed in TESTED_ELSEWHERE with the module that runs it
(``test_every_config_has_its_own_test``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import TINY_DATA, read_metrics, run_cli

pytestmark = pytest.mark.slow

CONF = Path(__file__).resolve().parents[1] / "conf"

DEBUG_MODES = {"fdr", "limit", "overfit", "profiler"}
EXPERIMENTS = {"googlenet_aux", "lenet5_digits", "mini_ilsvrc", "resnet18_shapes_sgd", "resnet_deep_supervision",
               "transfer_features", "transfer_finetune", "transfer_pretrain", "transfer_scratch", "vgg19_plain_aux"}

# Shapes experiments keep their own data config (classes, offsets); only the sizes shrink.
SMALL_SHAPES = ["data.per_class_train=8", "data.per_class_val=4", "data.per_class_test=4", "data.batch_size=16",
                "data.num_workers=0", "logger=csv"]
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "trainer.log_every_n_steps=1"]

RECORD_BATCHES = '''
import json

import pytorch_lightning as pl


class RecordBatches(pl.Callback):
    """Write [epoch, pixel sum, labels] of every train/val/test batch and the final global step to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen = {"train": [], "val": [], "test": []}
        self.global_step = None

    def _add(self, stage, trainer, batch) -> None:
        images, targets = batch
        self.seen[stage].append([trainer.current_epoch, float(images.double().sum()), targets.tolist()])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._add("train", trainer, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._add("val", trainer, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._add("test", trainer, batch)

    def on_train_end(self, trainer, pl_module) -> None:
        self.global_step = trainer.global_step

    def teardown(self, trainer, pl_module, stage) -> None:
        with open(self.path, "w") as handle:
            json.dump({"global_step": self.global_step, **self.seen}, handle)
'''


def record_batches(cwd: Path) -> list[str]:
    """Overrides adding the RecordBatches callback (importable: the CLI runs with cwd on sys.path)."""
    (cwd / "record_batches.py").write_text(RECORD_BATCHES)
    return ["+callbacks.record._target_=record_batches.RecordBatches", f"+callbacks.record.path={cwd / 'batches.json'}"]


def batches(cwd: Path) -> dict:
    return json.loads((cwd / "batches.json").read_text())


def per_epoch(seen: list) -> dict[int, list]:
    epochs: dict[int, list] = {}
    for epoch, pixels, labels in seen:
        epochs.setdefault(epoch, []).append((pixels, labels))
    return epochs


def metric_rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def columns(run: Path) -> set[str]:
    return set(next(csv.reader((run / "metrics.csv").open())))


def resolved(run: Path) -> dict:
    return yaml.safe_load((run / "config_resolved.yaml").read_text())


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def backbone(path: Path) -> dict[str, torch.Tensor]:
    return {k.removeprefix("backbone."): v for k, v in checkpoint(path)["state_dict"].items()
            if k.startswith("backbone.")}


TESTED_ELSEWHERE = {"modern_vs_classic": "test_timm.py", "default": "test_cli_train.py"}


def test_every_config_has_its_own_test():
    assert {p.stem for p in (CONF / "debug").glob("*.yaml")} == DEBUG_MODES
    assert {p.stem for p in (CONF / "experiment").glob("*.yaml")} == EXPERIMENTS | TESTED_ELSEWHERE.keys()
    for experiment, module in TESTED_ELSEWHERE.items():
        assert f"experiment={experiment}" in (Path(__file__).parent / module).read_text()


# ----------------------------------------------------------------------------- debug modes
def test_debug_fdr_runs_one_batch_of_train_val_and_test_and_writes_no_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "debug=fdr", *TINY_DATA, "model=lenet5", "logger=csv", *record_batches(tmp_path),
            f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    seen = batches(tmp_path)
    assert seen["global_step"] == 1
    assert (len(seen["train"]), len(seen["test"])) == (1, 1)  # of 6 train batches
    assert len(seen["val"]) == 2  # one in fit, one in the post-fit validation
    metrics = read_metrics(run)
    assert metrics["test/acc1"] is not None and metrics["ckpt_best"] is None and metrics["ckpt_last"] is None
    assert not (run / "checkpoints").exists()  # fast_dev_run turns checkpointing off


def test_debug_limit_runs_two_epochs_of_three_train_and_two_val_batches(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "debug=limit", *TINY_DATA, "model=lenet5", "logger=csv", "trainer.log_every_n_steps=1",
            *record_batches(tmp_path), f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    seen = batches(tmp_path)
    assert {e: len(b) for e, b in per_epoch(seen["train"]).items()} == {0: 3, 1: 3}  # of 6
    assert {e: len(b) for e, b in per_epoch(seen["val"]).items()} == {0: 2, 1: 2, 2: 2}  # + post-fit val of the best
    assert len(seen["test"]) == 2
    rows = metric_rows(run)
    assert len([r for r in rows if r.get("train/loss")]) == 6  # one logged row per step
    assert [int(r["epoch"]) for r in rows if r.get("train/loss_epoch")] == [0, 1]
    assert checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 6


def test_debug_profiler_writes_a_report_naming_the_training_hooks(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "debug=profiler", *TINY_DATA, "model=lenet5", "logger=csv", *record_batches(tmp_path),
            f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    assert len(batches(tmp_path)["train"]) == 6  # limit_train_batches=20 of 6: one whole epoch
    reports = sorted(run.glob("*profile*.txt"))
    assert reports, sorted(p.name for p in run.iterdir())
    text = "\n".join(p.read_text() for p in reports)
    assert "run_training_epoch" in text and "training_step" in text and "optimizer_step" in text


def test_debug_overfit_trains_the_same_two_unaugmented_batches_every_epoch_to_zero_loss(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "debug=overfit", "trainer.max_epochs=30", *TINY_DATA, "model=lenet5", "logger=csv",
            *record_batches(tmp_path), f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    train = per_epoch(batches(tmp_path)["train"])
    assert sorted(train) == list(range(30)) and len(train[0]) == 2
    assert all(train[e] == train[0] for e in train)  # no shuffling, no random crops or flips
    assert len(set(label for _, labels in train[0] for label in labels)) > 1
    val = per_epoch(batches(tmp_path)["val"])
    assert len(val[0]) == 2  # no sanity steps: validation starts at epoch 0 with 2 batches
    rows = [r for r in metric_rows(run) if r.get("train/loss_epoch")]
    assert float(rows[0]["train/loss_epoch"]) > 1.0 and float(rows[-1]["train/loss_epoch"]) < 0.05
    assert float(rows[-1]["train/acc1"]) == 1.0
    assert checkpoint(run / "checkpoints" / "last.ckpt")["lr_schedulers"] == []  # scheduler: null


# ----------------------------------------------------------------------------- experiments
@pytest.fixture(scope="module")
def pretrain(tmp_path_factory, data_dir) -> Path:
    """experiment=transfer_pretrain, shortened: the source checkpoint of the transfer experiments."""
    root = tmp_path_factory.mktemp("pretrain")
    run_cli("train", "experiment=transfer_pretrain", *SMALL_SHAPES, *SHORT, f"hydra.run.dir={root / 'run'}",
            cwd=root, data_dir=data_dir)
    return root / "run"


def test_transfer_pretrain_trains_the_cpu_resnet18_on_the_first_eight_shapes(pretrain):
    config = resolved(pretrain)
    assert (config["data"]["num_classes"], config["data"]["class_offset"]) == (8, 0)
    state = backbone(pretrain / "checkpoints" / "last.ckpt")
    assert state["fc.weight"].shape[0] == 8 and state["conv1.weight"].shape[0] == 16  # width 0.25 of 64
    assert state["conv1.weight"].shape[-1] == 3  # the small-input stem


def test_transfer_scratch_learns_the_eight_other_shapes_from_random_weights_and_tests_the_final_ones(
        pretrain, data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=transfer_scratch", *SMALL_SHAPES, *SHORT, "trainer.max_epochs=5",
            "trainer.limit_train_batches=1", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    config = resolved(run)
    assert (config["data"]["num_classes"], config["data"]["class_offset"]) == (8, 8)
    last = checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["hyper_parameters"]["backbone_weights"] is None
    source = backbone(pretrain / "checkpoints" / "last.ckpt")
    assert not torch.equal(backbone(run / "checkpoints" / "last.ckpt")["conv1.weight"], source["conv1.weight"])
    # check_val_every_n_epoch=5: validation after the 5th epoch only (+ the post-fit one), and the checkpoint
    # evaluated and tested is the last epoch's, not a best one.
    assert [r["epoch"] for r in metric_rows(run) if r.get("val/acc1")] == ["4", "5"]
    assert checkpoint(Path(read_metrics(run)["ckpt_best"]))["epoch"] == 4 == last["epoch"]


def test_transfer_runs_write_last_ckpt_every_epoch_although_they_validate_every_5(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=transfer_scratch", *SMALL_SHAPES, *SHORT, "trainer.max_epochs=2",
            "trainer.limit_train_batches=1", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    assert checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1  # resumable after every epoch


def transfer_from(pretrain: Path, experiment: str, epochs: int, tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    """(run dir, source checkpoint) of ``experiment`` started from the pretrain run, one step per epoch."""
    run, source_ckpt = tmp_path / "run", pretrain / "checkpoints" / "last.ckpt"
    run_cli("train", f"experiment={experiment}", f"source_ckpt={source_ckpt}", *SMALL_SHAPES, *SHORT,
            f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=1", f"hydra.run.dir={run}", cwd=tmp_path,
            data_dir=data_dir)
    return run, source_ckpt


def test_transfer_features_keeps_the_loaded_backbone_frozen_and_trains_a_new_head(pretrain, data_dir, tmp_path):
    run, source_ckpt = transfer_from(pretrain, "transfer_features", 5, tmp_path, data_dir)
    source, final = backbone(source_ckpt), backbone(run / "checkpoints" / "last.ckpt")
    assert checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5
    body = [k for k in final if not k.startswith("fc.")]
    assert len(body) > 50
    # Loaded, and still the source's after 5 steps: weights and BatchNorm statistics alike.
    assert [k for k in body if not torch.equal(final[k], source[k])] == []
    assert not torch.equal(final["fc.weight"], source["fc.weight"])  # a new head, trained
    assert resolved(run)["data"]["class_offset"] == 8


def test_transfer_finetune_loads_the_source_and_unfreezes_layer4_at_epoch_5(pretrain, data_dir, tmp_path):
    run, source_ckpt = transfer_from(pretrain, "transfer_finetune", 10, tmp_path, data_dir)
    rows = metric_rows(run)
    layer4 = [int(r["step"]) for r in rows if r.get("lr/layer4")]
    assert layer4 and min(layer4) == 5  # one step per epoch: epoch 5 is step 5
    assert not [c for c in columns(run) if c.startswith("lr/layer3")]  # the second stage would come at epoch 10
    source, final = backbone(source_ckpt), backbone(run / "checkpoints" / "last.ckpt")
    frozen = [k for k in final if not k.startswith(("fc.", "layer4."))]
    assert [k for k in frozen if not torch.equal(final[k], source[k])] == []  # loaded, then frozen
    assert not torch.equal(final["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])  # unfrozen, trained
    assert "applied_phases" in checkpoint(run / "checkpoints" / "last.ckpt")["callbacks"]["FinetuningSchedule"]


def test_lenet5_digits_trains_the_classic_lenet5_with_sgd_on_digits(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=lenet5_digits", "data.num_workers=0", "logger=csv", *SHORT,
            *record_batches(tmp_path), f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    metrics = read_metrics(run)
    assert (metrics["model"], metrics["data"]) == ("lenet5", "digits")
    last = checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["hyper_parameters"]["backbone"]["variant"] == "classic"
    (group, *_) = last["optimizer_states"][0]["param_groups"]
    assert group["momentum"] == 0.9 and group["initial_lr"] == pytest.approx(0.05)  # SGD (AdamW has betas)
    assert all(len(labels) == 32 for _, _, labels in batches(tmp_path)["train"])  # batch_size 32
    assert max(label for _, _, labels in batches(tmp_path)["train"] for label in labels) <= 9


def test_resnet18_shapes_sgd_uses_nesterov_sgd_without_decay_on_norms_label_smoothing_and_warmup(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=resnet18_shapes_sgd", *SMALL_SHAPES, *SHORT, "trainer.max_epochs=2",
            f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    last = checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["hyper_parameters"]["label_smoothing"] == 0.1
    groups = {g["weight_decay"]: g for g in last["optimizer_states"][0]["param_groups"]}
    assert set(groups) == {1.0e-4, 0.0}  # decay / no_decay (norms and biases)
    assert all(g["nesterov"] and g["momentum"] == 0.9 and g["initial_lr"] == 0.025 for g in groups.values())
    lrs = [float(r["lr/decay"]) for r in metric_rows(run) if r.get("lr/decay")]
    assert len(lrs) == 6 and lrs[0] < lrs[2] and lrs[-1] < max(lrs) <= 0.025  # linear warmup, then cosine decay


def test_resnet_deep_supervision_trains_and_logs_heads_after_layer2_and_layer3(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=resnet_deep_supervision", *SMALL_SHAPES, *SHORT, "data.num_classes=4",
            "callbacks.gradient_flow.every_n_steps=1", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    assert {"train/aux_loss/layer2", "train/aux_loss/layer3"} <= columns(run)
    assert {"val/aux_acc1/layer2", "val/aux_acc1/layer3"} <= read_metrics(run).keys()
    state = checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert state["aux_heads.layer2.2.weight"].shape == (4, 32) and state["aux_heads.layer3.2.weight"].shape == (4, 64)
    assert any(c.startswith("train/grad_norm/") for c in columns(run)) and (run / "gradient_flow.png").is_file()


def test_googlenet_aux_trains_the_papers_heads_on_inception4a_and_4d(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=googlenet_aux", *SMALL_SHAPES, *SHORT, "data.num_classes=4",
            "model.width=0.25", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)  # the heads' sizes are the paper's at any width
    assert {"train/aux_loss/inception4a", "train/aux_loss/inception4d"} <= columns(run)
    assert {"val/aux_acc1/inception4a", "val/aux_acc1/inception4d"} <= read_metrics(run).keys()
    state = checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert state["aux_heads.inception4a.5.weight"].shape == (1024, 128 * 16)  # conv 128 -> fc 1024 -> fc
    assert state["aux_heads.inception4d.8.weight"].shape == (4, 1024)
    assert not [k for k in state if k.startswith("backbone.aux")]  # torchvision's own heads are off


def test_vgg19_plain_aux_trains_a_plain_vgg19_with_heads_after_stages_2_and_3(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=vgg19_plain_aux", *SMALL_SHAPES, *SHORT, "data.num_classes=4",
            f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    assert {"train/aux_loss/features.9", "train/aux_loss/features.18"} <= columns(run)
    state = checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert not [k for k in state if "running_mean" in k]  # no BatchNorm anywhere
    assert state["backbone.features.0.weight"].shape[0] == 16  # width 0.25 of 64
    assert {"aux_heads.features_9.2.weight", "aux_heads.features_18.2.weight"} <= state.keys()
    assert (run / "gradient_flow.png").is_file()
    assert [g["momentum"] for g in checkpoint(run / "checkpoints" / "last.ckpt")["optimizer_states"][0]["param_groups"]
            ][0] == 0.9


def test_mini_ilsvrc_sweeps_the_five_families_into_its_own_multirun_dir(data_dir, tmp_path):
    run_cli("train", "-m", "experiment=mini_ilsvrc", "hydra.sweeper.params.seed=1", "data.per_class_train=4",
            "data.per_class_val=2", "data.per_class_test=2", "data.batch_size=16", "data.num_workers=0",
            "logger=csv", *SHORT, "trainer.limit_train_batches=1", cwd=tmp_path, data_dir=data_dir)
    jobs = sorted(p.parent for p in (tmp_path / "multirun" / "mini_ilsvrc").glob("*/*/*/metrics.json"))
    assert sorted(read_metrics(job)["model"] for job in jobs) == ["alexnet", "googlenet", "lenet5", "resnet18", "vgg11_bn"]
    chosen = sorted(o for job in jobs for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
                    if o.startswith("model="))
    assert chosen == ["model=alexnet_cpu", "model=googlenet_cpu", "model=lenet5", "model=resnet18_cpu",
                      "model=vgg11_bn_cpu"]
    for job in jobs:
        config = resolved(job)
        assert (config["data"]["num_classes"], config["seed"]) == (10, 1)
        assert checkpoint(job / "checkpoints" / "last.ckpt")["lr_schedulers"]  # the cosine schedule


def test_data_check_lists_every_unreadable_image_and_fails(data_dir, tmp_path):
    root = tmp_path / "folder"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            Image.new("RGB", (8, 8), "red").save(root / split / cls / "ok.jpg")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    proc = run_cli("data", "action=check", "data=imagefolder", f"data.root={root}", cwd=tmp_path,
                   data_dir=data_dir, check=False)
    assert proc.returncode == 1
    assert f"{root}/train/dog/broken.jpg" in proc.stdout
    assert "checked 5 images" in proc.stdout and ": 1 unreadable" in proc.stdout
