"""Every experiment and debug config composes and runs end to end (fast_dev_run: one batch each)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from conftest import TINY_DATA, read_metrics, run_cli

pytestmark = pytest.mark.slow

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_runs_with_fast_dev_run(experiment, data_dir, tmp_path):
    run_cli("train", f"experiment={experiment}", "trainer.fast_dev_run=true", "data.num_workers=0", "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, data_dir=data_dir)
    assert read_metrics(tmp_path / "run")["test/acc1"] is not None


@pytest.mark.parametrize("debug", sorted(p.stem for p in (CONF / "debug").glob("*.yaml")))
def test_every_debug_mode_runs_with_fast_dev_run(debug, data_dir, tmp_path):
    run_cli("train", f"debug={debug}", "trainer.fast_dev_run=true", *TINY_DATA, "model=lenet5", "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, data_dir=data_dir)
    assert read_metrics(tmp_path / "run")["model"] == "lenet5"


def test_profiler_debug_writes_its_report(data_dir, tmp_path):
    run_cli("train", "debug=profiler", "trainer.limit_train_batches=3", *TINY_DATA, "model=lenet5", "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, data_dir=data_dir)
    reports = list((tmp_path / "run").glob("*profile*.txt"))
    assert reports and "run_training_epoch" in reports[0].read_text()


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


def test_overfit_debug_mode_drives_the_training_loss_near_zero(data_dir, tmp_path):
    run_cli("train", "debug=overfit", "trainer.max_epochs=30", *TINY_DATA, "model=lenet5", "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, data_dir=data_dir)
    rows = [r for r in csv.DictReader((tmp_path / "run" / "metrics.csv").open()) if r.get("train/loss_epoch")]
    assert float(rows[0]["train/loss_epoch"]) > 1.0 and float(rows[-1]["train/loss_epoch"]) < 0.05
