"""train() reports the whole fit in metrics.json even when the best checkpoint is an early one: Lightning
restores every callback's state when train() validates and tests that checkpoint, and the fit's own
numbers (FitState: training time, images/s) must not be replaced by those of the epochs before it."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import TINY_DATA, TINY_MODEL
from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.cli.train import train


def throughput_state(path) -> dict:
    callbacks = torch.load(path, map_location="cpu", weights_only=True)["callbacks"]
    return next(state for name, state in callbacks.items() if name.startswith("TrainThroughput"))


def test_metrics_report_the_whole_fit_when_the_best_checkpoint_is_the_first_epoch(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            *TINY_DATA, *TINY_MODEL, "trainer.max_epochs=3", "logger=[csv]", "callbacks.progress=null",
            "callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min",  # best: epoch 0
            f"paths.root_dir={tmp_path}", f"paths.output_dir={run_dir}", f"paths.data_dir={data_dir}"])
    train(cfg, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "epoch000" in metrics["ckpt_best"]
    best, last = throughput_state(metrics["ckpt_best"]), throughput_state(run_dir / "checkpoints" / "last.ckpt")
    assert best["train_seconds"] < last["train_seconds"] <= metrics["train_seconds"]
    assert metrics["train_images_per_s"] == pytest.approx(last["images"] / last["seconds"])  # all 3 epochs' batches
    assert last["images"] > best["images"]
