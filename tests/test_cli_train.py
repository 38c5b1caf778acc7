"""End-to-end: `convnetlab-train` / `convnetlab-eval` as a user runs them (subprocess, tiny data)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_DATA, TINY_MODEL, read_metrics, run_cli
from convnetlab.analysis.complexity import forward_gflops
from convnetlab.lit import ImageClassifier

pytestmark = pytest.mark.slow

CONTRACT_KEYS = {"model", "data", "params", "gflops", "val/acc1", "val/acc5", "test/acc1", "test/acc5",
                 "train_images_per_s", "train_seconds", "ckpt_best", "infer_images_per_s", "peak_memory_mb"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    """One finished 2-epoch run shared by the contract/eval/checkpoint tests."""
    root = tmp_path_factory.mktemp("train")
    run_dir = root / "run"
    proc = run_cli("train", *TINY_DATA, *TINY_MODEL, "trainer.max_epochs=2", "logger=csv",
                   f"hydra.run.dir={run_dir}", cwd=root, data_dir=data_dir)
    return run_dir, proc


def test_finished_run_dir_holds_the_contract_files(trained_run):
    run_dir, proc = trained_run
    metrics = read_metrics(run_dir)
    assert CONTRACT_KEYS <= metrics.keys()
    assert metrics["model"] == "resnet18" and metrics["data"] == "shapes"
    # The numbers are the run's own: the best checkpoint's network, its monitored val/acc1, its FLOPs.
    best = ImageClassifier.load_from_checkpoint(metrics["ckpt_best"], map_location="cpu", weights_only=True)
    assert metrics["params"] == sum(p.numel() for p in best.backbone.parameters())
    assert metrics["gflops"] == pytest.approx(forward_gflops(best.backbone, (3, 32, 32)))
    assert metrics["val/acc1"] == pytest.approx(float(metrics["ckpt_best"].rsplit("acc", 1)[1][:-5]), abs=5e-5)
    assert metrics["val/acc1"] <= metrics["val/acc5"] and metrics["test/acc1"] <= metrics["test/acc5"]
    # Speeds and peak memory depend on the machine and its load: present, measured (benchmarks compare them).
    assert all(isinstance(metrics[k], float) for k in ("train_images_per_s", "infer_images_per_s", "peak_memory_mb"))
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints").joinpath(metrics["ckpt_best"].split("/")[-1]).is_file()
    assert str(run_dir) in proc.stdout  # the run dir is printed for the user


def test_metrics_csv_holds_the_logged_values(trained_run):
    run_dir, _ = trained_run
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    val_rows = [r for r in rows if r.get("val/acc1")]
    assert [int(r["epoch"]) for r in val_rows][:2] == [0, 1]
    assert any(r.get("train/loss") for r in rows) and any(r.get("train/acc1") for r in rows)
    assert any(r.get("train/acc5") for r in rows) and any(r.get("train/loss_epoch") for r in rows)
    best = max(float(r["val/acc1"]) for r in val_rows[:2])
    assert read_metrics(run_dir)["val/acc1"] == pytest.approx(best)


def test_the_default_experiment_checkpoints_the_weight_average(trained_run):
    """experiment=default (what runs without experiment=) adds an EMA of the weights, decay 0.98 per step:
    the checkpoints' weights are the average and the raw weights ride along for an exact resume (that the
    test pass uses the average: test_eval_reproduces_the_train_time_test_metric, and test_ema.py)."""
    run_dir, _ = trained_run
    metrics = read_metrics(run_dir)
    assert metrics["ema/decay_per_update"] == 0.98 and "val/acc1_raw" not in metrics  # log_raw off
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    weights = [k for k in last["state_dict"] if k.endswith("conv1.weight")]
    assert weights and all(not torch.equal(last["state_dict"][k], last["current_model_state"][k]) for k in weights)
    choices = (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert "experiment: default" in choices and "callbacks: default_run" in choices


def test_checkpoints_load_with_weights_only(trained_run):
    run_dir, _ = trained_run
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["hyper_parameters"]["backbone"]["arch"] == "resnet18"


def test_eval_reproduces_the_train_time_test_metric(trained_run, data_dir, tmp_path):
    run_dir, _ = trained_run
    before = read_metrics(run_dir)
    run_cli("evaluate", f"ckpt_path={before['ckpt_best']}", f"hydra.run.dir={tmp_path / 'eval'}",
            cwd=tmp_path, data_dir=data_dir)
    evaluated = read_metrics(tmp_path / "eval")
    assert evaluated["test/acc1"] == pytest.approx(before["test/acc1"], abs=1e-6)
    assert evaluated["test/acc5"] == pytest.approx(before["test/acc5"], abs=1e-6)
    assert read_metrics(run_dir)["test/acc1"] == pytest.approx(before["test/acc1"], abs=1e-6)


def test_eval_of_a_missing_checkpoint_names_the_file(data_dir, tmp_path):
    proc = run_cli("evaluate", f"ckpt_path={tmp_path}/nope.ckpt", cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode != 0 and "nope.ckpt does not exist" in proc.stderr


def test_resume_continues_from_the_saved_epoch_and_step(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_cli("train", *TINY_DATA, *TINY_MODEL, "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={run_dir}",
            cwd=tmp_path, data_dir=data_dir)
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    run_cli("train", f"ckpt_path={run_dir}/checkpoints/last.ckpt", "trainer.max_epochs=2", cwd=tmp_path,
            data_dir=data_dir)
    second = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert second["global_step"] == 2 * first["global_step"]  # one more epoch of steps, not two
    assert second["epoch"] == 1  # written at the end of the second epoch
    epochs = [int(r["epoch"]) for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get("train/loss_epoch")]
    assert epochs == [0, 1]  # the first run's epoch kept, the resumed epoch appended to the same metrics.csv
    assert not (tmp_path / "outputs").exists()  # continued in place, no second run dir


def test_wandb_runs_offline_and_holds_metrics_and_nested_config(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train", *TINY_DATA, "model=lenet5", "trainer.max_epochs=1", "logger=[csv,wandb]",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path, data_dir=data_dir)
    assert "wandb sync" in proc.stdout + proc.stderr
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json", str(wandb_run)],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    run = json.loads(out)
    metrics = read_metrics(run_dir)
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert run["summary"]["test/acc1"] == pytest.approx(metrics["test/acc1"])
    assert run["summary"]["val/acc1"] == pytest.approx(metrics["val/acc1"])
    assert run["config"]["model"]["arch"] == "lenet5"  # nested, resolved run config
    assert run["config"]["module"]["backbone"]["num_classes"] == 4  # interpolations resolved


def test_a_resumed_run_continues_the_same_wandb_run_id(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_cli("train", *TINY_DATA, "model=lenet5", "trainer.max_epochs=1", "logger=[csv,wandb]",
            f"hydra.run.dir={run_dir}", cwd=tmp_path, data_dir=data_dir)
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    (first,) = [p.name for p in (run_dir / "wandb").glob("offline-run-*")]
    assert run_id and first.endswith(f"-{run_id}")
    run_cli("train", f"ckpt_path={run_dir}/checkpoints/last.ckpt", "trainer.max_epochs=2", cwd=tmp_path,
            data_dir=data_dir)
    assert (run_dir / "wandb_run_id.txt").read_text().strip() == run_id
    folders = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and first in folders  # one offline folder per process ...
    assert all(name.endswith(f"-{run_id}") for name in folders)  # ... both of the same W&B run
    assert not (tmp_path / "outputs").exists()


def test_last_checkpoint_is_the_last_epoch_even_when_val_did_not_improve(data_dir, tmp_path):
    # lr 0: val/acc1 never improves after epoch 0, so the best checkpoint stays at epoch 0.
    run_dir = tmp_path / "run"
    run_cli("train", *TINY_DATA, "model=lenet5", "optimizer.lr=0.0", "trainer.max_epochs=2", "logger=csv",
            f"hydra.run.dir={run_dir}", cwd=tmp_path, data_dir=data_dir)
    metrics = read_metrics(run_dir)
    assert "epoch000" in metrics["ckpt_best"] and metrics["ckpt_last"].endswith("checkpoints/last.ckpt")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 12  # 2 epochs x 6 batches of 16

