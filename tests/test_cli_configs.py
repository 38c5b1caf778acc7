"""Every experiment and debug config composes and runs end to end (fast_dev_run: one batch each)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
