"""The benchmarks compare like with like: framework and plain loop train the same images and steps."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts" / "bench"))
import overhead  # noqa: E402
import time_to_accuracy  # noqa: E402


@pytest.mark.slow
def test_framework_and_plain_loop_train_the_same_images(tmp_path, data_dir):
    workload = ["model=lenet5", "data=digits", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
                "data.batch_size=32", f"paths.data_dir={data_dir}"]
    started = time.perf_counter()
    framework = overhead.run_framework(workload, tmp_path, "framework")
    between = time.perf_counter()
    plain = overhead.run_plain(workload, tmp_path, "plain")
    ended = time.perf_counter()
    assert framework["steps"] == plain["steps"] == 6
    assert framework["images"] == plain["images"] == 6 * 32
    # Each timed loop lies inside its process's wall time (which adds interpreter start-up and imports).
    assert 0 < framework["seconds"] < between - started and 0 < plain["seconds"] < ended - between
    baseline = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)  # the baseline checkpoints too
    lightning = torch.load(tmp_path / "framework" / "checkpoints" / "last.ckpt", weights_only=True)
    assert baseline["epoch"] == lightning["epoch"] == 1 and lightning["global_step"] == 6
    shapes = {k: tuple(v.shape) for k, v in baseline["model"].items()}
    assert shapes == {k.removeprefix("backbone."): tuple(v.shape) for k, v in lightning["state_dict"].items()
                      if k.startswith("backbone.")}  # the same network in both loops


def test_time_to_accuracy_is_the_first_validation_at_the_target():
    points = [{"epoch": 1, "seconds": 10.0, "val/acc1": 0.5}, {"epoch": 2, "seconds": 20.0, "val/acc1": 0.91},
              {"epoch": 3, "seconds": 30.0, "val/acc1": 0.89}, {"epoch": 4, "seconds": 40.0, "val/acc1": 0.95}]
    assert time_to_accuracy.first_at(points, 0.9)["seconds"] == 20.0
    assert time_to_accuracy.first_at(points, 0.99) is None


def test_the_median_time_to_accuracy_needs_every_run_to_reach_the_target():
    assert time_to_accuracy.median_seconds([{"seconds": 30.0}, {"seconds": 20.0}, {"seconds": 25.0}]) == 25.0
    assert time_to_accuracy.median_seconds([{"seconds": 30.0}, {"seconds": None}]) is None
    assert time_to_accuracy.median_seconds([]) is None
